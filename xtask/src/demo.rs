//! `cargo xtask demo`: the README's "main job" in one command.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

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
    cmd::section("1/5 build policies");
    policies::build_policies(root, route)?;

    cmd::section("2/5 build the archiver");
    cmd::run(cmd::cargo().current_dir(root).args([
        "build",
        "-p",
        "session-archiver-cli",
        "--bin",
        "archiver",
    ]))?;
    let archiver = root.join("target/debug/archiver");

    let data_dir = prepare_data_dir(root, data_dir)?;
    let policy = root.join("target/policies/inactivity.wasm");

    let base = || {
        let mut c = Command::new(&archiver);
        c.arg("--data-dir")
            .arg(&data_dir)
            .arg("--policy")
            .arg(&policy);
        c
    };
    cmd::section("3/5 create demo data");
    cmd::run(
        base()
            .args(["demo", "--sessions", &sessions.to_string()])
            .args(["--scale", &scale.to_string()]),
    )?;
    cmd::section("4/5 plan, sweep, status");
    cmd::run(base().arg("plan"))?;
    let first_archived = first_archive_target(base().args(["plan", "--json"]))?;
    cmd::run(base().arg("sweep"))?;
    cmd::run(base().arg("status"))?;
    cmd::section("5/5 restore and export one archived session");
    match first_archived {
        Some(id) => {
            cmd::run(
                base()
                    .args(["export", &id, "-o"])
                    .arg(data_dir.join("export.jsonl")),
            )?;
            cmd::run(base().args(["restore", &id]))?;
            cmd::run(base().arg("status"))?;
        }
        None => println!("nothing was archived, so nothing to restore"),
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

/// The first session a plan (`archiver plan --json`) would archive.
fn first_archive_target(plan: &mut Command) -> Result<Option<String>> {
    let out = plan.output().context("running `archiver plan --json`")?;
    if !out.status.success() {
        bail!(
            "`archiver plan --json` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let plan: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing `archiver plan --json`")?;
    Ok(plan["decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["action"] == "archive")
        .and_then(|d| d["target"].as_str())
        .map(str::to_string))
}
