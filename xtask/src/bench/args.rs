//! The command line of `cargo xtask bench` and its hidden probe, and the sizes they imply.

use std::path::PathBuf;

use super::MIB;

/// `cargo xtask bench` options.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A one-minute smoke run: small sessions, 3 rounds, README left alone.
    #[arg(long)]
    pub quick: bool,
    /// Add the 1 GiB session (memory rows; a few minutes more and ~3 GB of disk).
    #[arg(long)]
    pub big: bool,
    /// Rounds per group (default 5; 3 with --quick).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Print the table only; do not write it into README.md's performance section.
    #[arg(long)]
    pub no_readme: bool,
    /// Keep the corpus directory instead of deleting it.
    #[arg(long)]
    pub keep: bool,
    /// Run only these groups (comma-separated: policy, noop, single, sweep, memory, s3); implies
    /// --no-readme.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

impl BenchArgs {
    pub(crate) fn argv(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (on, flag) in [
            (self.quick, "--quick"),
            (self.big, "--big"),
            (self.no_readme, "--no-readme"),
            (self.keep, "--keep"),
        ] {
            if on {
                v.push(flag.to_string());
            }
        }
        if let Some(r) = self.rounds {
            v.push(format!("--rounds={r}"));
        }
        if !self.only.is_empty() {
            v.push(format!("--only={}", self.only.join(",")));
        }
        v
    }
}

/// The hidden child-process command: one operation on one session, then its peaks as JSON.
#[derive(clap::Args, Debug, Clone)]
pub struct ProbeArgs {
    /// Data directory (objects.db, filestore.db, archives/).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Policy component.
    #[arg(long)]
    pub policy: PathBuf,
    /// Compiled-component cache directory.
    #[arg(long)]
    pub cache: PathBuf,
    /// archive | archive-parallel (workers = 2) | restore | export | seed-archive
    #[arg(long)]
    pub op: String,
    /// Session id.
    #[arg(long)]
    pub id: String,
}

/// Sizes and counts of one run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) rounds: usize,
    /// The one-session throughput rows.
    pub(crate) single_bytes: u64,
    /// The memory rows' session.
    pub(crate) big_bytes: u64,
    /// Sessions in the no-op sweep.
    pub(crate) noop_sessions: usize,
    /// Total bytes of the whole-sweep corpus.
    pub(crate) sweep_bytes: u64,
    pub(crate) workers: usize,
}

impl Plan {
    pub(crate) fn new(args: &BenchArgs) -> Self {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let quick = args.quick;
        Plan {
            rounds: args.rounds.unwrap_or(if quick { 3 } else { 5 }).max(1),
            single_bytes: if quick { 8 * MIB } else { 32 * MIB },
            big_bytes: if args.big {
                1 << 30
            } else if quick {
                32 * MIB
            } else {
                256 * MIB
            },
            noop_sessions: 100_000,
            sweep_bytes: if quick { 24 * MIB } else { 128 * MIB },
            workers,
        }
    }
}
