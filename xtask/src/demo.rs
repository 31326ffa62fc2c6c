//! `cargo xtask demo`: the README's "main job" in one command.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use session_archiver::demo::{create_demo, DemoOptions};
use session_archiver::store::sqlite_files::SqliteFiles;
use session_archiver::store::sqlite_objects::SqliteObjects;
use session_archiver::store::{Clock, SystemClock};

use crate::cmd;
use crate::policies::{self, Route};

/// Builds the policies and the host, creates demo data, then plans, sweeps and reports on it.
pub fn run(
    root: &Path,
    data_dir: Option<PathBuf>,
    sessions: usize,
    scale: f64,
    route: Option<Route>,
) -> Result<()> {
    cmd::section("1/4 build policies");
    policies::build_policies(root, route)?;

    cmd::section("2/4 build the archiver");
    cmd::run(cmd::cargo().current_dir(root).args([
        "build",
        "-p",
        "session-archiver",
        "--bin",
        "archiver",
    ]))?;
    let archiver = root.join("target/debug/archiver");

    let data_dir = prepare_data_dir(root, data_dir)?;
    let policy = root.join("target/policies/inactivity.wasm");

    if cli_is_ready(&archiver) {
        cmd::section("3/4 create demo data");
        let base = || {
            let mut c = Command::new(&archiver);
            c.arg("--data-dir").arg(&data_dir);
            if policy.exists() {
                c.arg("--policy").arg(&policy);
            }
            c
        };
        cmd::run(
            base()
                .args(["demo", "--sessions", &sessions.to_string()])
                .args(["--scale", &scale.to_string()]),
        )?;
        cmd::section("4/4 plan, sweep, status");
        cmd::run(base().arg("plan"))?;
        cmd::run(base().arg("sweep"))?;
        cmd::run(base().arg("status"))?;
    } else {
        // TODO(issue 4): remove this branch once `archiver demo|plan|sweep|status` exist; the
        // branch above switches over on its own as soon as `archiver --help` lists them.
        cmd::section("3/4 create demo data (in-process: the archiver CLI is not built yet)");
        create_in_process(&data_dir, sessions, scale)?;
        cmd::section("4/4 plan, sweep, status");
        println!("skipped: the `archiver` CLI does not have plan/sweep/status yet (issue 4)");
    }
    println!("\ndemo data: {}", data_dir.display());
    Ok(())
}

/// The default directory is recreated each run; a directory the user names must be new or
/// empty, so the demo never overwrites real data.
fn prepare_data_dir(root: &Path, data_dir: Option<PathBuf>) -> Result<PathBuf> {
    match data_dir {
        None => {
            let dir = root.join("target/demo-data");
            if dir.exists() {
                fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing the old demo data {}", dir.display()))?;
            }
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(dir)
        }
        Some(dir) => {
            if dir.exists()
                && fs::read_dir(&dir)
                    .with_context(|| format!("reading {}", dir.display()))?
                    .next()
                    .is_some()
            {
                bail!(
                    "--data-dir {} is not empty; the demo only writes into a new or empty directory",
                    dir.display()
                );
            }
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(fs::canonicalize(&dir)?)
        }
    }
}

/// Whether the built `archiver` has the subcommands the demo drives.
fn cli_is_ready(archiver: &Path) -> bool {
    let Some(help) = cmd::probe(Command::new(archiver).arg("--help")) else {
        return false;
    };
    ["demo", "plan", "sweep", "status"].iter().all(|sub| {
        help.lines()
            .any(|l| l.split_whitespace().next() == Some(sub))
    })
}

/// Creates the demo data through the library, in the app's SQLite layout.
fn create_in_process(data_dir: &Path, sessions: usize, scale: f64) -> Result<()> {
    let objects = SqliteObjects::open(data_dir.join("objects.db"))?;
    let files = SqliteFiles::open(data_dir.join("filestore.db"))?;
    fs::create_dir_all(data_dir.join("archives"))?;
    let opts = DemoOptions {
        scale,
        ..DemoOptions::with_agent_sessions(sessions)
    };
    let started = Instant::now();
    let mut shown = 0;
    let summary = create_demo(
        &objects,
        &files,
        &opts,
        SystemClock.now_ms(),
        |done, total| {
            let tenth = done * 10 / total.max(1);
            if tenth > shown {
                shown = tenth;
                println!("  {done}/{total} sessions");
            }
        },
    )?;
    println!("{summary}");
    println!("created in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
