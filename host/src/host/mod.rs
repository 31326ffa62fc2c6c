//! The host side of the WIT imports: one module per interface, all implemented on [`HostState`].
//!
//! Each impl is thin on purpose: check the guest's arguments (the guest is untrusted), delegate
//! to the backend trait object, map [`StoreError`] to the interface's WIT `error` variant. Misuse
//! (a bad resource handle) and [`StoreError::Halt`] become traps, so the guest cannot go on.

pub mod archive_dir;
pub mod clock;
pub mod export_sink;
pub mod files;
pub mod log;
pub mod members;
pub mod objects;
pub mod scope;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{ResourceTable, ResourceTableError};
use wasmtime::{ResourceLimiter, StoreLimits};

use crate::archive_dir::ArchiveDir;
use crate::error::Op;
use crate::locks::SessionHold;
use crate::store::{Clock, FileStore, ObjectStore, StoreError, MAX_CHUNK};
pub use scope::{Access, OpScope, Scope};

/// The largest byte list a guest may pass to or ask from one import call (4 MiB).
pub const MAX_CHUNK_BYTES: usize = MAX_CHUNK;

/// The error type every trappable import returns: either an expected store failure (handed to
/// the guest as its interface's WIT `error`) or a trap that ends the guest's call.
#[derive(Debug)]
pub enum HostError {
    /// An expected failure; becomes the interface's WIT error variant.
    Store(StoreError),
    /// Misuse or a halting backend; aborts the guest call.
    Trap(wasmtime::Error),
}

impl From<StoreError> for HostError {
    fn from(e: StoreError) -> Self {
        HostError::Store(e)
    }
}

impl From<ResourceTableError> for HostError {
    fn from(e: ResourceTableError) -> Self {
        HostError::Trap(wasmtime::Error::new(HostTrap::Misuse(format!(
            "bad resource handle: {e}"
        ))))
    }
}

impl HostError {
    /// An argument the host refuses; returned to the guest as the interface's `invalid` case.
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        HostError::Store(StoreError::Invalid(msg.into()))
    }

    /// Splits into the store error to hand to the guest, or the trap to raise
    /// (`StoreError::Halt` always traps).
    pub(crate) fn into_store_error(self) -> wasmtime::Result<StoreError> {
        match self {
            HostError::Store(StoreError::Halt(msg)) => {
                Err(wasmtime::Error::new(HostTrap::Halt(msg)))
            }
            HostError::Store(e) => Ok(e),
            HostError::Trap(t) => Err(t),
        }
    }
}

/// Why the host ended a guest call. Carried inside the `wasmtime::Error` of the trap so the
/// archiver can tell a limit from a halt from a guest bug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostTrap {
    /// The backend asked to stop at once (crash simulation in tests).
    #[error("the host halted the policy: {0}")]
    Halt(String),
    /// A helper instance compressing, verifying or inflating one of the operation's members
    /// failed (trapped, hit a limit, was halted): the operation cannot go on either.
    #[error("{0}")]
    Helper(String),
    /// The guest misused an import (a bad resource handle).
    #[error("the policy misused a host import: {0}")]
    Misuse(String),
    /// The operation ran past its deadline.
    #[error("the operation ran longer than its deadline of {0:?}")]
    Deadline(std::time::Duration),
    /// The guest ran without calling any import for longer than the stall limit.
    #[error("the policy made no host call for {0:?} (stall limit)")]
    Stall(std::time::Duration),
    /// The guest tried to grow its memories past the cap (all of its memories together).
    #[error(
        "the policy tried to grow its memories to {desired} bytes in all, over the cap of {cap} bytes"
    )]
    Memory {
        /// Bytes all memories would hold after the growth.
        desired: usize,
        /// The configured cap.
        cap: usize,
    },
    /// The guest tried to hold more archive readers and writers open at once than the cap.
    #[error(
        "the policy tried to open more than {cap} archive readers and writers at once ({import})"
    )]
    Handles {
        /// The configured cap.
        cap: usize,
        /// The import that would have opened one more.
        import: &'static str,
    },
    /// The guest tried to write more than the operation's write allowance.
    #[error(
        "the policy tried to write {wanted} bytes in all ({import} on {target}), over its allowance \
         of {allowed} bytes for {file_read} bytes of files and {archive_read} bytes of archives read"
    )]
    Writes {
        /// Bytes written so far plus this call's.
        wanted: u64,
        /// The allowance at this point.
        allowed: u64,
        /// File-store bytes read so far.
        file_read: u64,
        /// Archive bytes read so far.
        archive_read: u64,
        /// The import.
        import: &'static str,
        /// What it wrote to.
        target: String,
    },
    /// The guest called an import on something outside its operation's scope.
    #[error("{op}{} may not call {import} on {target}: {why}", match session { Some(s) => format!(" of session {s}"), None => String::new() })]
    Refused {
        /// The operation being served.
        op: Op,
        /// Its session, if any.
        session: Option<String>,
        /// The import called.
        import: &'static str,
        /// What it was called on.
        target: String,
        /// Why it is outside the scope.
        why: String,
    },
}

/// Enforces the memory cap through wasmtime's [`StoreLimits`] and remembers that it was hit, so
/// a trap that follows (a Rust guest aborts when allocation fails) is reported as a limit.
pub struct Limiter {
    inner: StoreLimits,
    cap: usize,
    /// Set when a growth was refused.
    pub(crate) hit: Option<HostTrap>,
    /// Linear memory of every memory in the store now, and the most it has been: wasm memory
    /// never shrinks, so the peak is what an operation really cost (the benchmark reports it).
    total: usize,
    peak: usize,
}

impl Limiter {
    /// A limiter capping linear memory at `memory_bytes`.
    pub fn new(memory_bytes: usize) -> Self {
        let inner = wasmtime::StoreLimitsBuilder::new()
            .memory_size(memory_bytes)
            .instances(64)
            .tables(64)
            .memories(16)
            .build();
        Limiter {
            inner,
            cap: memory_bytes,
            hit: None,
            total: 0,
            peak: 0,
        }
    }

    /// The most linear memory (all memories of the store together) the guest has had, in bytes.
    /// Initial memories count: wasmtime asks the limiter when it creates them too.
    pub fn peak_memory(&self) -> usize {
        self.peak
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // wasmtime's `StoreLimits` caps each memory on its own, so a component with 16 memories
        // could use 16 times the cap: the cap is checked here on all memories together.
        let after = self.total.saturating_add(desired.saturating_sub(current));
        let ok = after <= self.cap && self.inner.memory_growing(current, desired, maximum)?;
        if !ok {
            let trap = HostTrap::Memory {
                desired: after,
                cap: self.cap,
            };
            self.hit = Some(trap.clone());
            // Trap at once rather than let the guest see a failed `memory.grow`: the message then
            // names the limit instead of an allocator abort.
            return Err(wasmtime::Error::new(trap));
        }
        self.total = after;
        self.peak = self.peak.max(self.total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The backends a policy works on, shared by every operation.
#[derive(Clone)]
pub struct Stores {
    /// Sessions and their meta (`objects.db`).
    pub objects: Arc<dyn ObjectStore>,
    /// Session output files (`filestore.db`).
    pub files: Arc<dyn FileStore>,
    /// Where archives live.
    pub archive_dir: Arc<dyn ArchiveDir>,
    /// Wall-clock time.
    pub clock: Arc<dyn Clock>,
}

/// The most bytes DEFLATE can inflate one compressed byte into (a run of 258-byte matches costs
/// about 2 bits each, so ~1032:1). A restore that reads `n` archive bytes can legitimately
/// write up to this times `n`, never more.
pub const INFLATE_RATIO_MAX: u64 = 1032;

/// Per-operation quotas on what a policy may open and write (see `Limits` in the runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Archive readers and writers open at once.
    pub max_open_archives: usize,
    /// Bytes an operation may write (file appends + archive writes) before reading anything.
    pub write_floor_bytes: u64,
    /// Bytes it may write per file-store byte it read.
    pub write_ratio: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_open_archives: 16,
            write_floor_bytes: 64 << 20,
            write_ratio: 4,
        }
    }
}

/// What the operation has used of its quotas so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Archive readers and writers open now.
    pub open_archives: usize,
    /// File-store bytes read.
    pub file_read: u64,
    /// Archive bytes read.
    pub archive_read: u64,
    /// File-store and archive bytes written.
    pub written: u64,
}

/// Per-operation state of one wasmtime `Store`: built fresh for every guest call.
pub struct HostState {
    pub(crate) stores: Stores,
    /// Live `writer`/`reader` resources the guest holds.
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    /// Where `export-sink.write` goes; `None` outside `export`.
    pub(crate) sink: Option<Box<dyn Write + Send>>,
    /// The policy's name, for logs and errors.
    pub(crate) policy: Arc<str>,
    /// Bytes written to the sink so far.
    pub(crate) sink_bytes: u64,
    /// When the operation started (deadline) and when the guest last called an import (stall).
    pub(crate) started: Instant,
    pub(crate) last_progress: Instant,
    /// What this operation may touch; every import checks it.
    pub(crate) scope: OpScope,
    /// What it may open and write, and what it has used.
    pub(crate) quotas: Quotas,
    pub(crate) usage: Usage,
    /// A prune's session lock ([`HostState::hold_session`]); `None` for other operations.
    pub(crate) hold: Option<SessionHold>,
    /// The identity of each archive `archive-dir.list` showed in this operation: what
    /// `remove-if-unchanged` compares, so a file replaced since (same size, same millisecond)
    /// is never taken for the one the policy classified.
    pub(crate) listed: HashMap<String, Option<String>>,
    /// How `members.write-members` and `members.inflater` start helpers; `None` for operations
    /// that run none.
    pub(crate) members: Option<members::MemberCtx>,
    /// `members.inflater`s the guest holds (at most one).
    pub(crate) inflaters: usize,
    /// What `members.write-members` appended, by archive name (see
    /// [`members::WrittenMember`]).
    pub(crate) written: HashMap<String, Vec<members::WrittenMember>>,
}

impl HostState {
    /// Fresh state for one operation.
    pub fn new(stores: Stores, policy: Arc<str>, memory_bytes: usize) -> Self {
        let now = Instant::now();
        HostState {
            stores,
            table: ResourceTable::new(),
            limiter: Limiter::new(memory_bytes),
            sink: None,
            policy,
            sink_bytes: 0,
            started: now,
            last_progress: now,
            scope: OpScope::unrestricted(Op::Info),
            quotas: Quotas::default(),
            usage: Usage::default(),
            hold: None,
            listed: HashMap::new(),
            members: None,
            inflaters: 0,
            written: HashMap::new(),
        }
    }

    /// Makes a prune take each session's lock before it acts on it (see [`SessionHold`]).
    pub fn with_session_hold(mut self, hold: SessionHold) -> Self {
        self.hold = Some(hold);
        self
    }

    /// In a prune, holds session `id`'s lock for the calls that judge or change it; a session
    /// another operation keeps busy is a `conflict` (left for the next prune). Other operations
    /// already hold their session's lock: nothing to do.
    pub(crate) fn hold_session(&mut self, import: &str, id: &str) -> Result<(), HostError> {
        let Some(hold) = self.hold.as_mut() else {
            return Ok(());
        };
        match hold.hold(id) {
            Ok(true) => Ok(()),
            Ok(false) => Err(HostError::Store(StoreError::Conflict(format!(
                "{import}: session {id} is busy (another operation holds its lock); left for \
                 the next prune"
            )))),
            Err(e) => Err(HostError::Store(StoreError::Io(format!("{import}: {e}")))),
        }
    }

    /// Sets the operation's scope and quotas.
    pub fn for_op(mut self, scope: OpScope, quotas: Quotas) -> Self {
        self.scope = scope;
        self.quotas = quotas;
        self
    }

    /// What the operation has used of its quotas.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Refuses one more open archive reader or writer over the cap (a trap).
    pub(crate) fn check_open(&self, import: &'static str) -> Result<(), HostError> {
        if self.usage.open_archives >= self.quotas.max_open_archives {
            return Err(HostError::Trap(wasmtime::Error::new(HostTrap::Handles {
                cap: self.quotas.max_open_archives,
                import,
            })));
        }
        Ok(())
    }

    /// Counts `len` bytes about to be written, or refuses them (a trap, before anything is
    /// written) when they take the operation past its allowance: the floor, plus `write_ratio`
    /// per file byte read, plus [`INFLATE_RATIO_MAX`] per archive byte read. So an archive (reads
    /// `n` file bytes, writes a gzip of about `n` or less) and a restore (reads a gzip, writes
    /// what it inflates) both fit, and a policy cannot fill the disk from nothing.
    pub(crate) fn charge_write(
        &mut self,
        import: &'static str,
        target: impl FnOnce() -> String,
        len: usize,
    ) -> Result<(), HostError> {
        let q = &self.quotas;
        let u = &self.usage;
        let allowed = q
            .write_floor_bytes
            .saturating_add(q.write_ratio.saturating_mul(u.file_read))
            .saturating_add(INFLATE_RATIO_MAX.saturating_mul(u.archive_read));
        let wanted = u.written.saturating_add(len as u64);
        if wanted > allowed {
            return Err(HostError::Trap(wasmtime::Error::new(HostTrap::Writes {
                wanted,
                allowed,
                file_read: u.file_read,
                archive_read: u.archive_read,
                import,
                target: target(),
            })));
        }
        self.usage.written = wanted;
        Ok(())
    }

    /// Lets the operation compress parallel members on helper instances.
    pub fn with_members(mut self, ctx: members::MemberCtx) -> Self {
        self.members = Some(ctx);
        self
    }

    /// Attaches the export sink.
    pub fn with_sink(mut self, sink: Box<dyn Write + Send>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Bytes the guest wrote to the export sink.
    pub fn sink_bytes(&self) -> u64 {
        self.sink_bytes
    }

    /// Records that the guest made progress (called at the start and end of every import, so a
    /// slow store call does not count as a stalled guest).
    pub(crate) fn progress(&mut self) {
        self.last_progress = Instant::now();
    }

    /// Runs one import body between two progress marks.
    pub(crate) fn call<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        self.progress();
        let r = f(self);
        self.progress();
        r
    }
}

/// Refuses a chunk over [`MAX_CHUNK_BYTES`].
pub(crate) fn check_chunk(len: usize, what: &str) -> Result<(), HostError> {
    if len > MAX_CHUNK_BYTES {
        return Err(HostError::invalid(format!(
            "{what}: {len} bytes is over the {MAX_CHUNK_BYTES}-byte chunk limit"
        )));
    }
    Ok(())
}
