//! The decision vocabulary: what a policy implements ([`Decisions`]) and the types it decides
//! with. Nothing here does I/O; the operations in [`crate::ops`] call a policy's decisions and
//! carry them out through the host's imports.

use crate::decide::prune_to_cap;
use crate::host::Entry;
use crate::meta::Meta;

/// What a policy decides about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Archive it.
    Archive {
        /// For people: "idle 12 d >= 7 d".
        reason: String,
    },
    /// Leave it alone.
    Skip {
        /// Short reason code for the skip counts (`not-agent`, `pinned`, ...).
        code: String,
        /// For people.
        reason: String,
        /// Whether it is worth a line in a plan (an agent session), or only a count.
        candidate: bool,
    },
    /// An operation was interrupted; recover it.
    Recover {
        /// For people.
        reason: String,
    },
}

/// What an archive file in the directory is, for prune decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveClass {
    /// A restored or never-deleted session's old archive: its data is live.
    Backup,
    /// No session has it (no object, or a name that is not `<id>.jsonl.gz`).
    Orphan,
    /// The only copy of an archived session's output.
    OnlyCopy,
    /// Its session is pinned: never pruned.
    Pinned,
    /// Its session has an operation in progress: never pruned now.
    InProgress,
    /// Its session could not be read: never pruned now.
    Unknown,
}

/// One archive file and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveInfo {
    /// The directory entry.
    pub entry: Entry,
    /// Its class.
    pub class: ArchiveClass,
}

/// One archive a policy chose to prune.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePick {
    /// Index into the list given to [`Decisions::prune_plan`].
    pub index: usize,
    /// For people: "cap exceeded: oldest".
    pub reason: String,
}

/// One session as [`Decisions::select_all`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The session id.
    pub id: String,
    /// Its parsed meta (sessions whose meta does not parse never reach a policy: they are
    /// skipped as `invalid-meta`).
    pub meta: Meta,
    /// Readable bytes of its live `output` (0 when there is none). Measured (one `files.stat`
    /// per session) only when [`Decisions::needs_live_bytes`] says so; 0 otherwise.
    pub live_bytes: u64,
}

/// When an archive is compressed as several gzip members on the host's workers at once (the
/// WIT `members` interface) instead of one member in this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallel {
    /// Sessions with at least this many bytes to archive take the parallel path
    /// (`parallel_min_bytes`, default 8 MiB).
    pub min_bytes: u64,
    /// Uncompressed bytes per member (`member_bytes`, default 4 MiB, at most 64 MiB): at 4 MiB
    /// independent members cost ~0.1 % in size against one.
    pub member_bytes: u64,
}

/// Largest `member_bytes`: a member is returned to the host in one list, so it stays small.
pub const MAX_MEMBER_BYTES: u64 = 64 << 20;

impl Default for Parallel {
    fn default() -> Self {
        Parallel {
            min_bytes: 8 << 20,
            member_bytes: 4 << 20,
        }
    }
}

/// A policy's decisions; everything else (the operations, their safety rules, the exports) is
/// shared.
pub trait Decisions {
    /// What to do with every session now: one selection per candidate, in the order given.
    /// `plan` calls this, and the host's sweep archives what the plan selects, so a plan is
    /// exactly what a sweep does. A policy that judges each session on its own maps over
    /// `sessions`; one that decides over all of them at once (a byte budget) sees them together.
    fn select_all(&self, sessions: &[Candidate], now_ms: i64) -> Vec<Selection>;
    /// Whether [`Candidate::live_bytes`] must be measured (costs a `files.stat` per session).
    fn needs_live_bytes(&self) -> bool {
        false
    }
    /// Which archives to delete, in order, so the directory fits under `cap`, given the time now
    /// (for policies with age rules). The default is the kit's [`prune_to_cap`] order: backups
    /// and orphans first, a session's only copy last, pinned or busy sessions' archives never.
    fn prune_plan(&self, archives: &[ArchiveInfo], cap: u64, now_ms: i64) -> Vec<PrunePick> {
        let _ = now_ms;
        prune_to_cap(archives, cap, &[])
    }
    /// Compression level 0..=9.
    fn level(&self) -> u8;
    /// Cap on the archive directory's total size.
    fn cap(&self) -> u64;
    /// Most bytes a restore or export may decompress.
    fn max_restore_bytes(&self) -> u64;
    /// When and how to split a large archive into parallel members.
    fn parallel(&self) -> Parallel {
        Parallel::default()
    }
}

/// The skip codes the kit gives, so policies and operations spell them one way. The whole list,
/// with each code's meaning and the host sweep's own codes (`locked`), is documented once: on
/// the WIT `skip-count` record.
pub mod skip_code {
    /// Not an agent session.
    pub const NOT_AGENT: &str = "not-agent";
    /// `session:archive_pinned` is true.
    pub const PINNED: &str = "pinned";
    /// Already archived.
    pub const ARCHIVED: &str = "archived";
    /// Meta that does not parse, or a key of the wrong JSON type.
    pub const INVALID_META: &str = "invalid-meta";
    /// No last activity recorded.
    pub const NO_ACTIVITY: &str = "no-activity";
    /// No lines recorded.
    pub const NO_LINES: &str = "no-lines";
    /// The policy returned no decision for the session.
    pub const POLICY_ERROR: &str = "policy-error";
    /// No live output to archive.
    pub const NOTHING_TO_ARCHIVE: &str = "nothing-to-archive";
}
