//! The command line, as clap derive types. Every option that makes sense from a service manager
//! also reads an `ARCHIVER_*` environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  success (a sweep or recovery that skipped or failed some sessions still exits 0 unless --strict)
  1  the operation failed (policy error, store error, I/O error); `run` stopped on a fatal
     error (its archive directory was moved or replaced)
  2  usage error (bad option or argument; several object stores in --data-dir: pick one with
     --objects-db)
  3  not found (no such session, no data directory, no object store in it)
  4  the policy or its config cannot be used (missing, not a component, wrong world or WIT
     version, config rejected)
  5  --strict: the sweep or recovery ran but some sessions failed, or the sweep's prune could
     not remove some archives
  6  a command that writes was refused: another process (the app) has the databases open";

const EXAMPLES: &str = "\
Examples:
  archiver --data-dir /tmp/d demo --sessions 50 --scale 0.05   # make demo data (AgentMux layout)
  archiver --data-dir /tmp/d plan                              # what a sweep would do, and why
  archiver --data-dir /tmp/d sweep                             # archive idle sessions, then prune
  archiver --data-dir /tmp/d status --json
  archiver --data-dir /tmp/d restore 0d5c6a4e-...
  archiver --data-dir /tmp/d export 0d5c6a4e-... | wc -l
  archiver --data-dir ~/.local/share/waveterm/db status        # Wave's own db/ directory (Linux)
  archiver --data-dir ~/.agentmux/db --config '{\"inactive_days\":3}' run --every 10m
                       # AgentMux's default db/; sweeps only while the app is not running

Commands that write (sweep, archive, restore, recover, run's sweeps) refuse while another process
has the databases open: stop the app first, or embed the archiver in the app (the library).";

/// Archives idle terminal and agent sessions to gzip files, restores and exports them, and sweeps
/// (archive idle sessions, then prune the oldest archives under a byte cap), with the decisions
/// made by a sandboxed WebAssembly policy.
#[derive(Debug, Parser)]
#[command(name = "archiver", version, after_help = format!("{EXIT_CODES}\n\n{EXAMPLES}"))]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes (before or after the subcommand name).
#[derive(Debug, Args)]
pub struct Global {
    /// Data directory in the app's layout, e.g. the app's own db/ directory: the object store
    /// DIR/wave.db (AgentMux), DIR/waveterm.db (Wave) or DIR/objects.db, else the one .db file
    /// with a db_block table; DIR/filestore.db; DIR/archives/.
    #[arg(
        long,
        global = true,
        env = "ARCHIVER_DATA_DIR",
        value_name = "DIR",
        default_value = "archiver-data"
    )]
    pub data_dir: PathBuf,

    /// The object store (default: looked for in DATA_DIR, see --data-dir; `demo` creates
    /// DATA_DIR/wave.db).
    #[arg(long, global = true, env = "ARCHIVER_OBJECTS_DB", value_name = "FILE")]
    pub objects_db: Option<PathBuf>,

    /// The file store (default: DATA_DIR/filestore.db).
    #[arg(
        long,
        global = true,
        env = "ARCHIVER_FILESTORE_DB",
        value_name = "FILE"
    )]
    pub filestore_db: Option<PathBuf>,

    /// Where archives are written (default: DATA_DIR/archives); session locks live in its
    /// hidden .locks/ subdirectory. `s3://BUCKET/PREFIX` puts them in an S3 bucket instead
    /// (credentials and region from the usual AWS_* variables; session locks then live in
    /// DATA_DIR/.archiver-locks, local to this machine).
    #[arg(
        long,
        global = true,
        env = "ARCHIVER_ARCHIVE_DIR",
        value_name = "DIR|s3://BUCKET/PREFIX"
    )]
    pub archive_dir: Option<PathBuf>,

    /// The S3-compatible server for an s3:// --archive-dir, e.g. http://127.0.0.1:9000
    /// (default: AWS_ENDPOINT_URL, else AWS itself).
    #[arg(long, global = true, env = "ARCHIVER_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// The bucket's region for an s3:// --archive-dir (default: AWS_REGION, else us-east-1).
    #[arg(long, global = true, env = "ARCHIVER_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,

    /// The policy component. Default: inactivity.wasm from $ARCHIVER_POLICY_DIR, else from
    /// policies/ next to this executable, else from ../policies/ (target/policies/ when run from
    /// target/debug/). Build it with `cargo xtask build-policies`.
    #[arg(long, global = true, env = "ARCHIVER_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Policy configuration: JSON text, or @FILE to read it from a file (default: {}, the
    /// policy's defaults), e.g. '{"inactive_days":3,"max_total_bytes":1000000000}'.
    #[arg(
        long,
        global = true,
        env = "ARCHIVER_CONFIG",
        value_name = "JSON|@FILE"
    )]
    pub config: Option<String>,

    /// Parallel archive workers in a sweep (default: the number of CPUs).
    #[arg(long, global = true, env = "ARCHIVER_WORKERS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,

    /// Where compiled policies are cached (default: $XDG_CACHE_HOME/session-archiver or
    /// ~/.cache/session-archiver).
    #[arg(long, global = true, env = "ARCHIVER_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the policy every time instead of using the cache.
    #[arg(long, global = true, conflicts_with = "cache_dir")]
    pub no_cache: bool,

    /// Cap on a policy instance's memory, in MiB (default 256).
    #[arg(long, global = true, env = "ARCHIVER_MEMORY_LIMIT", value_name = "MIB",
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub memory_limit: Option<u64>,

    /// Wall-clock budget of one policy operation, e.g. 30s, 10m (default 10m).
    #[arg(
        long,
        global = true,
        env = "ARCHIVER_DEADLINE",
        value_name = "DURATION"
    )]
    pub deadline: Option<humantime::Duration>,

    /// Write even while another process has the databases open. Only for a writer known to be
    /// safe: it makes every append (its parts and the new size) one SQLite transaction, and it
    /// keeps no cache of file sizes or parts between transactions, so a change made by another
    /// process is what it sees next. AgentMux and Wave are not such writers (they cache, and
    /// AgentMux appends in several statements): never use this next to them.
    #[arg(long, global = true)]
    pub allow_live_writer: bool,

    /// More log output on stderr (-v: info, -vv: debug, -vvv: trace). RUST_LOG, when set, wins.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Errors only: no progress bars, no informational lines on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dry run of a sweep: what would be archived, skipped and pruned, and why.
    #[command(after_long_help = PLAN_JSON)]
    Plan {
        /// Print the plan as JSON (fields below, with --help); always every decision.
        #[arg(long)]
        json: bool,
        /// List skipped candidates too (by default the table shows only what would be done,
        /// and skips are counted by reason).
        #[arg(long)]
        all: bool,
    },

    /// Archive every idle session the policy picks, then prune archives over the cap.
    #[command(after_long_help = SWEEP_JSON)]
    Sweep {
        /// Print the summary as JSON (fields below, with --help); no progress bar.
        #[arg(long)]
        json: bool,
        /// Exit with 5 when any session or step failed, or the prune could not remove an archive
        /// (the sweep still goes on with the others).
        #[arg(long)]
        strict: bool,
    },

    /// Archive one session now (whatever its idle time).
    Archive {
        /// The session (block) id.
        id: String,
        /// Print the outcome as JSON: policy, id, raw_bytes, archive_bytes, archive_name,
        /// archive_path, archived_at_ms, crc32.
        #[arg(long)]
        json: bool,
    },

    /// Restore an archived session into the live store (output written since is kept after it).
    Restore {
        /// The session (block) id.
        id: String,
        /// Print the outcome as JSON: policy, id, archived_bytes, newer_bytes.
        #[arg(long)]
        json: bool,
    },

    /// Write a session's output (archived, live, or both in order) to stdout or a file.
    Export {
        /// The session (block) id.
        id: String,
        /// Write to FILE instead of stdout: a temp file next to it is renamed into place on
        /// success, so a failed export leaves no partial file.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },

    /// Counts of sessions (live, archived, pruned, pinned), live bytes, archive bytes vs cap.
    #[command(after_long_help = STATUS_JSON)]
    Status {
        /// Print as JSON (fields below, with --help).
        #[arg(long)]
        json: bool,
    },

    /// Finish or roll back operations interrupted by a crash (all sessions, or one).
    Recover {
        /// Only this session (waits for its lock).
        id: Option<String>,
        /// Print the report as JSON: policy, examined, finished, rolled_back, failed[{target,
        /// message}].
        #[arg(long)]
        json: bool,
        /// Exit with 5 when any recovery failed.
        #[arg(long)]
        strict: bool,
    },

    /// Inspect policy components.
    #[command(subcommand)]
    Policy(PolicyCommand),

    /// Sweep periodically; swap the policy live when its file changes or on SIGHUP.
    ///
    /// The first sweep starts at once. The policy file is checked every --watch-interval (size,
    /// mtime and content hash); a changed file is loaded and swapped in for the next operations,
    /// and the log says `policy swapped: old -> new`. A file that fails to load is logged as
    /// rejected and the old policy keeps serving. SIGINT/SIGTERM stop after the sweep in flight
    /// (a second SIGINT exits at once).
    Run {
        /// Time between the start of one sweep and the next, e.g. 30s, 10m, 1h.
        #[arg(long, value_name = "DURATION")]
        every: humantime::Duration,
        /// Stop after this many sweeps (default: run until stopped).
        #[arg(long, value_name = "N")]
        max_sweeps: Option<u64>,
        /// How often to check the policy file for changes.
        #[arg(long, value_name = "DURATION", default_value = "1s")]
        watch_interval: humantime::Duration,
        /// Load the policy file even when group or others can write it (or its directory). By
        /// default such a file is refused, at start and at every swap: whoever can write it can
        /// change the code that runs on every session.
        #[arg(long)]
        allow_insecure_policy_file: bool,
    },

    /// Create a realistic demo data directory: agent sessions of JSONL with mixed idle times and
    /// sizes, plus pinned, empty, circular and non-agent ones.
    Demo {
        /// Agent sessions to create (the special kinds scale along).
        #[arg(long, default_value_t = 300, value_name = "N")]
        sessions: usize,
        /// Size multiplier: 1.0 gives a few KB to several MB per session, a few of 20-50 MB.
        #[arg(long, default_value_t = 1.0, value_name = "F")]
        scale: f64,
        /// Seed: the same seed makes the same data.
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// Oldest last activity, in days before now.
        #[arg(long, default_value_t = 60, value_name = "DAYS")]
        max_age_days: u32,
        /// Replace existing data: deletes the object store, filestore.db and the archives first.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load a policy component and print who it is (name, version, description, sha256).
    Info {
        /// The component file.
        file: PathBuf,
        /// Print as JSON: name, version, description, sha256, path, wit, from_cache.
        #[arg(long)]
        json: bool,
    },
}

const PLAN_JSON: &str = "\
JSON (--json), stable for scripts:
  policy        {name, version, sha256} of the policy that planned
  scanned       objects looked at
  decisions     [{target, action: archive|skip|prune|recover, reason, bytes}]
                (target: session id, or archive name for prune; bytes: raw bytes to archive or
                archive bytes to free)
  skipped       {reason: count} for every session not archived
  archive_bytes size of the archive directory now
  archive_cap   the policy's cap on it
  cap_unreachable  {pinned_bytes, cap} when pinned archives alone exceed the cap (then no
                session's only archive is pruned to chase it), else null";

const SWEEP_JSON: &str = "\
JSON (--json), stable for scripts:
  policy          {name, version, sha256} of the policy that served the whole sweep
  scanned         objects looked at
  archived        sessions archived
  recovered       interrupted operations finished or rolled back first
  skipped         {reason: count} (the plan's reasons plus locked and nothing-to-archive)
  failed          [{target, op, code, message}] sessions or steps that failed; the sweep went on
  bytes_archived  raw bytes moved out of the live store
  bytes_written   compressed bytes written
  prune           {pruned, tombstoned, bytes_freed, failed: [{target, message}]}, or null if
                  the prune step failed (see failed)
  workers         archive threads used
  elapsed_ms      wall-clock time of the sweep
  cap_unreachable {pinned_bytes, cap} when pinned archives alone exceed the cap (then no
                  session's only archive is pruned to chase it), else null";

const STATUS_JSON: &str = "\
JSON (--json), stable for scripts:
  policy          {name, version, sha256} of the policy asked for the cap
  objects         objects in the object store
  agent_sessions  {total, live, archived, pruned, pinned}: archived = archived_at set; pruned =
                  the only archive was pruned (tombstone); live = the rest; pinned overlaps
  pending_intents sessions with an interrupted operation (run `archiver recover`)
  live_files      files in the file store
  live_bytes      bytes held by them (a circular file counts only what it keeps)
  archive_files   archives in the archive directory
  archive_bytes   their total size
  archive_cap     the policy's max_total_bytes (null if its config has none)
  foreign_files_ignored  other entries in the archive directory (not <session id>.jsonl.gz
                  regular files); never listed to a policy, never pruned
  layout          {kind: agentmux|wave|archiver|custom|given, description, objects_db,
                  filestore_db, archive_dir}: the layout found in --data-dir
  cap_unreachable {pinned_bytes, cap} when pinned archives alone exceed the cap, else null";
