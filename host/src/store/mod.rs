//! The stores a policy works on, as traits with a real (SQLite) and an in-memory implementation.
//!
//! The wasm host (`crate::host`) only checks the guest's arguments and delegates here, so the same
//! policy runs unchanged against `objects.db`/`filestore.db` and against the mock host in tests.

pub mod memory;
pub mod sqlite_files;
pub mod sqlite_objects;

use serde_json::{Map, Value};

/// A session's meta map.
pub type Meta = Map<String, Value>;

/// The name of the file that holds a session's JSONL output (the seed's `OUTPUT_FILENAME`).
pub const OUTPUT_FILE: &str = "output";

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
    pub id: String,
    pub meta: Meta,
    pub version: u64,
}

/// A page of objects in ascending id order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub objects: Vec<Object>,
    /// The id to pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// The object store (`objects.db`, table `db_block`).
pub trait ObjectStore: Send + Sync {
    /// Objects with id > `after`, ascending, at most `limit` (1..=1000).
    fn list(&self, after: Option<&str>, limit: u32) -> Result<Page, StoreError>;
    fn get(&self, id: &str) -> Result<Object, StoreError>;
    /// Merge `patch` into meta in one transaction (null removes a key) and bump the version.
    fn update_meta(&self, id: &str, patch: &Meta) -> Result<Object, StoreError>;
    /// Insert a new object (demo data, tests). `AlreadyExists` if the id is taken.
    fn insert(&self, id: &str, meta: &Meta) -> Result<Object, StoreError>;
}

/// What is known about a file; equality of two stats means "unchanged".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Logical size: every byte ever appended (for circular files, more than is held).
    pub size: u64,
    pub created_ms: i64,
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

/// The file store (`filestore.db`, tables `db_wave_file` + `db_file_data`).
pub trait FileStore: Send + Sync {
    fn stat(&self, zone: &str, name: &str) -> Result<Option<FileStat>, StoreError>;
    /// Up to `len` (<= `MAX_CHUNK`) bytes at logical `offset`; empty at/after EOF. For circular
    /// files, an offset before the oldest byte still held starts at that byte.
    fn read(&self, zone: &str, name: &str, offset: u64, len: u32) -> Result<Vec<u8>, StoreError>;
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
}

/// One day in ms: the seed's unit of inactivity, used by demo data, benchmarks and tests (the
/// guest kit has its own, `archiver_kit::decide::DAY_MS`).
pub const DAY_MS: i64 = 86_400_000;

/// Wall-clock source, replaceable in tests.
pub trait Clock: Send + Sync {
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
