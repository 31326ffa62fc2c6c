//! Running child processes with a visible command line and a clear failure message.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The workspace root: xtask lives one level below it.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// The cargo that runs us (`cargo xtask` sets `CARGO`), so nested builds use the same toolchain.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Prints a section header so long runs (`xtask test`, CI) are easy to scan.
pub fn section(title: &str) {
    println!("\n==> {title}");
}

/// Runs `cmd` to completion with inherited stdio; fails naming the command if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = show(cmd);
    println!("$ {shown}");
    let started = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    println!("   ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs `cmd` and returns its stdout, or `None` if it could not start or failed. For probes
/// (is rustup there? which targets?) where failure is an answer, not an error.
pub fn probe(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The command line as a user would type it (env overrides first).
pub fn show(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())))
        .collect();
    parts.push(cmd.get_program().to_string_lossy().into_owned());
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs `cmd` with inherited stdio and reports whether it succeeded within `limit`; kills it
/// otherwise. For network steps (`rustup target add`) that may hang on a closed network.
pub fn succeeds_within(cmd: &mut Command, limit: Duration) -> bool {
    println!("$ {}", show(cmd));
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                println!("   (gave up after {} s)", limit.as_secs());
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}
