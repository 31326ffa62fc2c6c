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
pub mod objects;

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{ResourceTable, ResourceTableError};
use wasmtime::{ResourceLimiter, StoreLimits};

use crate::archive_dir::ArchiveDir;
use crate::store::{Clock, FileStore, ObjectStore, StoreError, MAX_CHUNK};

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
    /// The guest misused an import (a bad resource handle).
    #[error("the policy misused a host import: {0}")]
    Misuse(String),
    /// The operation ran past its deadline.
    #[error("the operation ran longer than its deadline of {0:?}")]
    Deadline(std::time::Duration),
    /// The guest ran without calling any import for longer than the stall limit.
    #[error("the policy made no host call for {0:?} (stall limit)")]
    Stall(std::time::Duration),
    /// The guest tried to grow its memory past the cap.
    #[error("the policy tried to grow its memory to {desired} bytes, over the cap of {cap} bytes")]
    Memory {
        /// Bytes requested.
        desired: usize,
        /// The configured cap.
        cap: usize,
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
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        if !ok {
            let trap = HostTrap::Memory {
                desired,
                cap: self.cap,
            };
            self.hit = Some(trap.clone());
            // Trap at once rather than let the guest see a failed `memory.grow`: the message then
            // names the limit instead of an allocator abort.
            return Err(wasmtime::Error::new(trap));
        }
        self.total = self.total.saturating_add(desired.saturating_sub(current));
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
        }
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
