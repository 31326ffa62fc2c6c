//! The stores a policy works on, as traits with a real (SQLite) and an in-memory implementation.
//!
//! The wasm host (`crate::host`) only checks the guest's arguments and delegates here, so the same
//! policy runs unchanged against `objects.db`/`filestore.db` and against the mock host in tests.

pub mod block_json;
pub mod memory;
pub mod sqlite_files;
pub mod sqlite_objects;
mod wal_checkpointer;

use serde_json::{Map, Value};

/// A session's meta map.
pub type Meta = Map<String, Value>;

/// The name of the file that holds a session's JSONL output (the seed's `OUTPUT_FILENAME`).
pub const OUTPUT_FILE: &str = "output";

/// The archiver's restore scratch file (the guest kit's `SCRATCH`): built by appends, then
/// renamed over [`OUTPUT_FILE`]. Only that rename has to be durable on return (see
/// [`FileStore`]'s "Durable append").
pub const SCRATCH_FILE: &str = "outnew";

/// Why a store call failed. Mirrors the WIT error variants; `Halt` is for test doubles only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such object, file or archive.
    #[error("not found: {0}")]
    NotFound(String),
    /// An argument the store refuses (bad id, patch not an object, range too long).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// An archive name that is not one safe path component.
    #[error("invalid archive name: {0}")]
    InvalidName(String),
    /// A conditional operation found the file changed since the caller's stat.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Create of something that exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The database or filesystem failed.
    #[error("i/o error: {0}")]
    Io(String),
    /// The backend demands the guest stop at once: the host turns this into a trap, so no later
    /// call happens. Used by the mock host to simulate a crash.
    #[error("halted: {0}")]
    Halt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(e.to_string()),
            _ => StoreError::Io(e.to_string()),
        }
    }
}

/// One session object (a Wave block).
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The block's id (the session id).
    pub id: String,
    /// The block's meta map, where the archiver keeps its `archive:*` keys.
    pub meta: Meta,
    /// Bumped by every meta update, so a reader can tell the block changed.
    pub version: u64,
}

/// A page of objects in ascending id order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// At most the requested number of objects, ascending by id.
    pub objects: Vec<Object>,
    /// The id to pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// The object store: sessions and their meta (the app's `db_block` table, in `wave.db`,
/// `waveterm.db` or `objects.db`).
///
/// # What an app's implementation must guarantee (the embedding contract)
///
/// - **Merge rule.** `update_meta` merges `patch` into the stored meta key by key at the top
///   level: a key in the patch replaces the stored value, a JSON `null` removes the key, keys not
///   in the patch are kept as they are. Read, merge and write happen as one atomic step against
///   every other writer of that block (the app included), so an app that sets its own keys at
///   the same time loses nothing and neither does the archiver. Only meta changes: the block's
///   other fields stay as stored, and the stored value keeps its type (an app that reads the
///   block back as bytes must still be able to).
/// - **Version bump.** Every successful `update_meta` stores and returns a version greater than
///   the one before, so a reader can tell that the block changed.
/// - **Paging.** `list` returns ids in ascending byte order, strictly after `after`, and `next`
///   is `None` only on the last page; ids added or removed during a listing may or may not appear
///   but no other id is skipped or repeated.
/// - **Errors.** A missing id is [`StoreError::NotFound`]; a database failure is
///   [`StoreError::Io`] with a message naming the id. Never panic.
/// - **Threads.** Calls come from several threads at once (sweep workers, the app's own
///   threads): the store must be `Send + Sync` and each call atomic on its own. Calls block;
///   from async code run them on a blocking thread (`tokio::task::spawn_blocking`).
pub trait ObjectStore: Send + Sync {
    /// Objects with id > `after`, ascending, at most `limit` (1..=1000).
    fn list(&self, after: Option<&str>, limit: u32) -> Result<Page, StoreError>;
    /// One object; [`StoreError::NotFound`] if there is none.
    fn get(&self, id: &str) -> Result<Object, StoreError>;
    /// Merge `patch` into meta in one transaction (null removes a key) and bump the version.
    fn update_meta(&self, id: &str, patch: &Meta) -> Result<Object, StoreError>;
    /// [`ObjectStore::update_meta`] only if the object is still at `version`, checked in the same
    /// transaction as the write; else [`StoreError::Conflict`] and nothing changed.
    fn update_meta_if(&self, id: &str, patch: &Meta, version: u64) -> Result<Object, StoreError>;
    /// Insert a new object (demo data, tests). `AlreadyExists` if the id is taken.
    fn insert(&self, id: &str, meta: &Meta) -> Result<Object, StoreError>;
}

/// What is known about a file; equality of two stats means "unchanged".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Logical size: every byte ever appended (for circular files, more than is held).
    pub size: u64,
    /// When the file was created, in ms since the Unix epoch (the store's clock).
    pub created_ms: i64,
    /// When the file was last written, in ms since the Unix epoch; moves forward on every write.
    pub modified_ms: i64,
    /// `Some(max)` for a circular file that keeps only its last `max` bytes.
    pub circular_max_size: Option<u64>,
}

/// How to create a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileOpts {
    /// `Some(max)`: a circular file keeping only the last `max` bytes.
    pub circular_max_size: Option<u64>,
}

/// Largest chunk any single read, append or archive write moves (4 MiB).
pub const MAX_CHUNK: usize = 4 << 20;

/// The file store: session output (the app's `filestore.db`, tables `db_wave_file` +
/// `db_file_data`). The archiver reads a session's `output`, deletes it once archived, and on
/// restore builds `outnew` and renames it over `output`.
///
/// # What an app's implementation must guarantee (the embedding contract)
///
/// The app keeps appending to `output` while the archiver works, and may answer from a cache.
/// The archiver stays correct only if the store it is given is *the app's view* of the files:
///
/// - **Stat is the truth the app appends against.** `stat` returns the size and times the app's
///   next append will start from (cached, unflushed appends included). Two stats are equal only
///   if no byte was appended in between: every append that adds bytes changes `size`, and sets
///   `modified_ms` to a value strictly greater than before (needed for circular files, whose
///   size alone could come back round).
/// - **Atomic conditional delete and rename against the app's own appends.**
///   `delete_if_unchanged` and `rename_if_unchanged` compare the current stat with `expected`
///   and act in one step that no append of the app can interleave with: an app append either
///   happens before (then the stats differ and the call returns [`StoreError::Conflict`],
///   changing nothing) or after (then it sees the file gone, or sees the renamed file with the
///   source's size and appends after its last byte). An app with an in-process cache must take
///   its own append lock for these calls and update the cache in the same step; a store that
///   only checks the database while the app appends from a stale cache loses data.
/// - **A file that is gone stays gone for the app.** After a delete the app's next append must
///   not land at the old offset (orphan parts): it finds the file missing (and creates it, if
///   that is what the app does), exactly as if another of its own threads had deleted it.
/// - **Durable append.** `append` returns only once the bytes are committed (a crash after it
///   returns keeps them) and visible to `stat` and `read`. The archiver appends only to its
///   scratch file `outnew` and renames it over `output`; the app's own appends may stay in a
///   write-back cache, as long as `stat` and `read` already include them. Appends to
///   [`SCRATCH_FILE`] may be committed at a cheaper durability (a crash may drop the last of
///   them) provided the `rename_if_unchanged` that publishes it is durable *and* persists every
///   scratch append committed before it: a restore recovers from a crash before the rename by
///   deleting the scratch file, so only the published file must be whole.
/// - **Reads.** `read` returns the bytes at logical `offset`, at most `len`, as the app would
///   read them (cached bytes included); empty at or after the end. For a circular file
///   (`circular_max_size = Some(max)`), which keeps only its last `max` bytes, an offset before
///   the oldest byte held starts at that byte; `size` still counts every byte ever appended.
/// - **Rename keeps the source's stat** (size, times, circular limit) under the target's name;
///   the source name no longer exists afterwards.
/// - **Errors.** A missing file is [`StoreError::NotFound`], a failed condition
///   [`StoreError::Conflict`], `create` of an existing file [`StoreError::AlreadyExists`];
///   failures are [`StoreError::Io`] naming the zone and file. Never panic.
/// - **Threads.** Calls come from several threads at once (sweep workers and the app): the
///   store must be `Send + Sync` and each call atomic on its own. Calls block; from async code
///   run them on a blocking thread (`tokio::task::spawn_blocking`).
///
/// `examples/embedded-app` implements all of this over a cache like AgentMux's.
pub trait FileStore: Send + Sync {
    /// The file's stat as the app sees it; `None` if it does not exist.
    fn stat(&self, zone: &str, name: &str) -> Result<Option<FileStat>, StoreError>;
    /// Up to `len` (<= `MAX_CHUNK`) bytes at logical `offset`; empty at/after EOF. For circular
    /// files, an offset before the oldest byte still held is [`StoreError::Conflict`] (the
    /// caller re-stats and decides; see [`check_held`]).
    fn read(&self, zone: &str, name: &str, offset: u64, len: u32) -> Result<Vec<u8>, StoreError>;
    /// Creates an empty file; `AlreadyExists` if there is one.
    fn create(&self, zone: &str, name: &str, opts: FileOpts) -> Result<FileStat, StoreError>;
    /// Append `data` (<= `MAX_CHUNK`), durable on return.
    fn append(&self, zone: &str, name: &str, data: &[u8]) -> Result<FileStat, StoreError>;
    /// Delete only if the current stat equals `expected`, atomically; else `Conflict`.
    fn delete_if_unchanged(
        &self,
        zone: &str,
        name: &str,
        expected: &FileStat,
    ) -> Result<(), StoreError>;
    /// Unconditional delete (the archiver's own scratch file); `NotFound` if there is none.
    fn delete(&self, zone: &str, name: &str) -> Result<(), StoreError>;
    /// Rename `source` over `target` atomically if `target`'s stat equals `expected` (`None`:
    /// target must not exist); else `Conflict`.
    fn rename_if_unchanged(
        &self,
        zone: &str,
        source: &str,
        target: &str,
        expected: Option<&FileStat>,
    ) -> Result<(), StoreError>;
    /// Every (zone, name, stat) in the store, for `status` and the demo. Not exposed to policies.
    fn list_files(&self) -> Result<Vec<(String, String, FileStat)>, StoreError>;
    /// The file's own meta (Wave's `WaveFile.Meta`, `{}` when empty); `NotFound` if no file.
    fn meta(&self, zone: &str, name: &str) -> Result<Meta, StoreError>;
    /// Replaces the file's own meta; `NotFound` if no file. A rename carries the meta along.
    fn set_meta(&self, zone: &str, name: &str, meta: &Meta) -> Result<(), StoreError>;
}

/// One day in ms: the seed's unit of inactivity, used by demo data, benchmarks and tests (the
/// guest kit has its own, `archiver_kit::decide::DAY_MS`).
pub const DAY_MS: i64 = 86_400_000;

/// Wall-clock source, replaceable in tests (and by an app that wants its own notion of "now").
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A read before the first byte a circular file still holds is a conflict, never a silent
/// later start: a caller that stat-ed, then read while the app appended, would otherwise take
/// the bytes at another offset for the ones it asked for (duplicating or skipping some). Every
/// [`FileStore`] implementation calls it.
pub fn check_held(zone: &str, name: &str, offset: u64, first_held: u64) -> Result<(), StoreError> {
    if offset < first_held {
        return Err(StoreError::Conflict(format!(
            "file {zone}/{name}: offset {offset} has fallen out of the circular file (first byte held: \
             {first_held})",
        )));
    }
    Ok(())
}

/// The conflict of an [`ObjectStore::update_meta_if`] whose object moved on.
pub fn version_conflict(id: &str, expected: u64, now: u64) -> StoreError {
    StoreError::Conflict(format!(
        "object {id} is at version {now}, not {expected}: changed by someone else; meta not updated"
    ))
}
