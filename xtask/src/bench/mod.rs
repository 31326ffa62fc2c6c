//! `cargo xtask bench`: one table, every row measured side by side in the same run.
//!
//! The corpus is deterministic agent JSONL ([`session_archiver_demo::session_jsonl`]) in real
//! SQLite stores in a temp directory under `target/`. Rows of a group are interleaved (each round runs every case once,
//! starting at a different case each round, so drift in machine load hits every row alike) and
//! reported as median and best of the rounds, as a ratio to the group's baseline: the seed's way
//! of doing the job natively (whole file read into memory, `flate2` level 6, file written).
//!
//! Memory is measured in a fresh child process (this binary's hidden `bench-probe` command), so
//! the peak RSS is that of one operation on the largest session and nothing else. The child
//! reads its own `VmHWM` (peak resident set) from `/proc/self/status` when the operation is done.
//!
//! Everything measured is built in release: run from a debug `cargo xtask`, the command builds
//! the policies and re-runs itself with `cargo run --release`.
//!
//! One file per job: `args` (command line and sizes), `harness` (rows, groups, interleaved
//! timing), `corpus` (the sessions), `baselines` (the seed's way, gzip, pigz), `ceiling` (deflate
//! alone in the sandbox and natively, from `guest/deflate-probe`), `groups/` (one file per table
//! section), `probe` (the fresh-process memory probe) and `render` (the table,
//! written between the README's `bench:table` markers; the analysis prose around it is the
//! README's own).

mod args;
mod baselines;
mod ceiling;
mod corpus;
mod groups;
mod harness;
mod probe;
mod render;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Result};
use session_archiver::archiver::{Archiver, ArchiverOptions};
use session_archiver::host::Stores;
use session_archiver::locks::SessionLocks;
use session_archiver::policy::LoadedPolicy;
use session_archiver::runtime::{CacheSetting, Runtime, RuntimeOptions};

pub use args::{BenchArgs, ProbeArgs};
pub use probe::probe;

use args::Plan;
use harness::Group;
use render::{loadavg, render, write_readme, Machine};

use crate::cmd;

const MB: f64 = 1e6;
const MIB: u64 = 1 << 20;
use session_archiver::store::DAY_MS;

/// The policy every row runs.
const POLICY: &str = "inactivity";

/// Config for every archiver: sessions idle a day are archived, nothing is pruned, restores
/// of the 1 GiB session are allowed.
const CONFIG: &str =
    r#"{"inactive_days":1,"max_total_bytes":1000000000000000,"max_restore_bytes":8589934592}"#;

/// [`CONFIG`] with the parallel-member path off: every archive is one member deflated in the
/// policy instance (the single-member rows and the size comparison).
const ONE_MEMBER_CONFIG: &str = r#"{"inactive_days":1,"max_total_bytes":1000000000000000,"max_restore_bytes":8589934592,"parallel_min_bytes":1000000000000000}"#;

/// Entry point of `cargo xtask bench`.
pub fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    if cfg!(debug_assertions) {
        // Measure release code only: build the policies, then run ourselves in release.
        cmd::section("build policies");
        crate::policies::build_policies(root, None)?;
        cmd::section("build and run the benchmark (release)");
        return cmd::run(
            cmd::cargo()
                .current_dir(root)
                .args(["run", "--quiet", "--release", "-p", "xtask", "--", "bench"])
                .args(args.argv()),
        );
    }
    let policy = root.join(format!("target/policies/{POLICY}.wasm"));
    ensure!(
        policy.is_file(),
        "{} is missing: run `cargo xtask build-policies`",
        policy.display()
    );
    let deflate_probe = root
        .join(crate::policies::PROBE_DIR)
        .join("deflate-probe.wasm");
    ensure!(
        deflate_probe.is_file(),
        "{} is missing: run `cargo xtask build-policies`",
        deflate_probe.display()
    );
    let plan = Plan::new(args);
    let base = root.join("target/bench");
    fs::create_dir_all(&base)?;
    let work = tempfile::Builder::new().prefix("run-").tempdir_in(&base)?;
    println!("corpus in {}", work.path().display());
    let started = Instant::now();
    let load_before = loadavg();
    const GROUPS: [&str; 6] = ["policy", "noop", "single", "sweep", "memory", "s3"];
    if let Some(bad) = args.only.iter().find(|g| !GROUPS.contains(&g.as_str())) {
        bail!(
            "--only: unknown group {bad:?} (groups: {})",
            GROUPS.join(", ")
        );
    }
    let wanted = |g: &str| args.only.is_empty() || args.only.iter().any(|o| o == g);
    let mut bench = Bench::new(work.path(), &policy, &deflate_probe, plan.clone())?;
    if wanted("policy") {
        bench.policy_group()?;
    }
    if wanted("noop") {
        bench.noop_sweep_group()?;
    }
    if wanted("single") {
        bench.single_group()?;
    }
    if wanted("sweep") {
        bench.sweep_group()?;
    }
    if wanted("memory") {
        bench.memory_group()?;
    }
    if wanted("s3") {
        bench.s3_group()?;
    }
    let load_after = loadavg();
    let machine = Machine::probe(load_before, load_after, started.elapsed());
    let table = render(&bench.groups, &plan, &machine, args.quick);
    println!("\n{table}");
    if args.quick || args.no_readme || !args.only.is_empty() {
        println!("(README.md not changed: --quick, --no-readme or --only)");
    } else {
        write_readme(&root.join("README.md"), &table)?;
        println!("written into README.md, between the `bench:table` markers");
    }
    if args.keep {
        let kept = work.keep();
        println!("corpus kept in {}", kept.display());
    }
    Ok(())
}

/// One run: its corpus directory, the policy every row runs, and the groups measured so far.
struct Bench {
    dir: PathBuf,
    policy: PathBuf,
    /// The deflate probe core module (the ceiling rows).
    deflate_probe: PathBuf,
    cache: PathBuf,
    runtime: Arc<Runtime>,
    loaded: LoadedPolicy,
    plan: Plan,
    groups: Vec<Group>,
    pigz: bool,
}

impl Bench {
    fn new(dir: &Path, policy: &Path, deflate_probe: &Path, plan: Plan) -> Result<Self> {
        let cache = dir.join("cache");
        let runtime = Arc::new(Runtime::new(RuntimeOptions {
            cache: CacheSetting::Dir(cache.clone()),
            ..RuntimeOptions::default()
        })?);
        let loaded = runtime.load_file(policy)?;
        let pigz = Command::new("pigz")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        Ok(Bench {
            dir: dir.to_path_buf(),
            policy: policy.to_path_buf(),
            deflate_probe: deflate_probe.to_path_buf(),
            cache,
            runtime,
            loaded,
            plan,
            groups: Vec::new(),
            pigz,
        })
    }

    fn archiver(&self, stores: Stores, workers: usize) -> Result<Archiver> {
        self.archiver_with_config(stores, workers, CONFIG)
    }

    fn archiver_with_config(
        &self,
        stores: Stores,
        workers: usize,
        config: &str,
    ) -> Result<Archiver> {
        Ok(Archiver::new(
            stores,
            self.runtime.clone(),
            self.loaded.clone(),
            ArchiverOptions {
                config: config.into(),
                workers: Some(workers),
                locks: SessionLocks::in_process(),
            },
        )?)
    }
}
