//! The fresh-process memory probe: the parent spawns this binary's hidden `bench-probe` command
//! for one operation on one session; the child does it and prints its peaks as JSON, so the
//! peak RSS is that of the operation and nothing else.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use session_archiver::archiver::{Archiver, ArchiverOptions};
use session_archiver::locks::SessionLocks;
use session_archiver::runtime::{CacheSetting, Runtime, RuntimeOptions};

use super::args::ProbeArgs;
use super::baselines::seed_archive;
use super::corpus::open_stores;
use super::{Bench, CONFIG};

impl Bench {
    /// Runs one operation in a fresh child process (this binary's hidden `bench-probe`).
    pub(crate) fn probe(&self, dir: &Path, op: &str, id: &str) -> Result<Probed> {
        let exe = std::env::current_exe()?;
        let out = Command::new(exe)
            .arg("bench-probe")
            .arg("--data-dir")
            .arg(dir)
            .arg("--policy")
            .arg(&self.policy)
            .arg("--cache")
            .arg(&self.cache)
            .args(["--op", op, "--id", id])
            .stderr(Stdio::inherit())
            .output()
            .context("starting the probe")?;
        ensure!(out.status.success(), "probe {op} failed ({})", out.status);
        let v: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("probe output {:?}", String::from_utf8_lossy(&out.stdout)))?;
        let num = |k: &str| {
            v[k].as_f64()
                .with_context(|| format!("probe output lacks {k}"))
        };
        Ok(Probed {
            secs: num("secs")?,
            rss: num("rss_peak")? as u64,
            guest: num("guest_peak")? as u64,
        })
    }
}

/// What the child reported: seconds, peak RSS and peak guest memory (bytes).
pub(crate) struct Probed {
    pub(crate) secs: f64,
    pub(crate) rss: u64,
    pub(crate) guest: u64,
}

/// The child side of the memory rows: one operation, then `{secs, rss_peak, guest_peak}`.
pub fn probe(args: &ProbeArgs) -> Result<()> {
    let stores = open_stores(&args.data_dir)?;
    let started = Instant::now();
    let guest = if args.op == "seed-archive" {
        seed_archive(
            stores.files.as_ref(),
            &args.id,
            &args.data_dir.join("seed-probe.jsonl.gz"),
        )?;
        0
    } else {
        let runtime = Arc::new(Runtime::new(RuntimeOptions {
            cache: CacheSetting::Dir(args.cache.clone()),
            ..RuntimeOptions::default()
        })?);
        let policy = runtime.load_file(&args.policy)?;
        let archiver = Archiver::new(
            stores,
            runtime.clone(),
            policy,
            ArchiverOptions {
                config: CONFIG.into(),
                workers: Some(if args.op == "archive-parallel" { 2 } else { 1 }),
                locks: SessionLocks::in_process(),
            },
        )?;
        runtime.take_peak_guest_memory();
        match args.op.as_str() {
            "archive" | "archive-parallel" => {
                archiver.archive(&args.id)?;
            }
            "restore" => {
                archiver.restore(&args.id)?;
            }
            "export" => {
                let out = File::create(args.data_dir.join("export.jsonl"))?;
                archiver.export(&args.id, std::io::BufWriter::new(out))?;
            }
            other => bail!("unknown probe op {other:?}"),
        }
        runtime.take_peak_guest_memory()
    };
    let secs = started.elapsed().as_secs_f64();
    let rss = peak_rss()?;
    println!(
        "{}",
        json!({"op": args.op, "secs": secs, "rss_peak": rss, "guest_peak": guest})
    );
    Ok(())
}

/// This process's peak resident set (`VmHWM`), in bytes.
fn peak_rss() -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kb * 1024)
}
