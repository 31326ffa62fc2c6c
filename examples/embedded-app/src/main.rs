//! A short demo of the embedded archiver from async (tokio) code: the app starts sessions and
//! writes to them while the archiver, inside the app, sweeps, restores and exports.
//!
//! `cargo run -p embedded-app-example [-- DB_DIR]` (default: a temporary directory). The policy
//! is `target/policies/inactivity.wasm` (`cargo xtask build-policies`) or
//! `$ARCHIVER_POLICY_DIR/inactivity.wasm`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use embedded_app::app::default_policy_path;
use embedded_app::{App, AppClock, AppConfig};

const DAY_MS: i64 = 86_400_000;

#[tokio::main]
async fn main() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let db_dir = std::env::args_os()
        .nth(1)
        .map(Into::into)
        .unwrap_or_else(|| tmp.path().join("db"));
    let clock = Arc::new(AppClock::default());
    let mut config = AppConfig::new(&db_dir, default_policy_path());
    config.flush_every = Duration::from_millis(200);
    config.clock = clock.clone();
    let app = App::open_async(config).await.context("opening the app")?;

    let ids = ["agent-a", "agent-b", "agent-c"];
    for id in ids {
        app.create_session_async(id).await?;
        for n in 0..3 {
            let line = format!("{{\"session\":\"{id}\",\"n\":{n}}}\n");
            app.append_output_async(id, line.into_bytes()).await?;
        }
    }
    // Ten days later, nobody has touched the sessions: the policy archives them.
    clock.advance(10 * DAY_MS);
    let summary = app.sweep().await?;
    println!(
        "sweep: archived {} sessions ({} bytes), skipped {:?}",
        summary.archived, summary.bytes_archived, summary.skipped
    );

    // The app writes to an archived session: it starts a new output; restore puts the archived
    // bytes before it, and the app reads the whole session back through its own cache.
    app.append_output_async("agent-a", b"{\"after\":\"archive\"}\n".to_vec())
        .await?;
    let restored = app.restore("agent-a").await?;
    println!(
        "restore agent-a: {} archived bytes + {} newer bytes",
        restored.archived_bytes, restored.newer_bytes
    );
    let text = app.read_output_async("agent-a").await?;
    print!("agent-a now reads:\n{}", String::from_utf8_lossy(&text));

    let (outcome, bytes) = app.export("agent-b").await?;
    println!(
        "export agent-b (still archived): {} lines, {} bytes",
        outcome.lines,
        bytes.len()
    );
    if std::env::args_os().nth(1).is_some() {
        println!("database and archives in {}", db_dir.display());
    }
    Ok(())
}
