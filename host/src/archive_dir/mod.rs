//! The archive directory as a capability: the guest names files, the host owns the paths.
//!
//! `validate_name` is the single gate every name passes through, for the real directory
//! (`fs.rs`, opened relative to a `cap-std` directory handle) and the in-memory one (`memory.rs`).

pub mod fs;
pub mod memory;

use crate::store::StoreError;

/// Longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// One archive file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub modified_ms: i64,
}

/// Checks that `name` is one safe path component: `[A-Za-z0-9._-]`, not starting with `.`
/// (which also rules out `.`/`..` and hides the host's temp files), 1..=255 bytes.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let bad = |why: &str| Err(StoreError::InvalidName(format!("{name:?}: {why}")));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 255 bytes");
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(&format!(
            "character {c:?} not allowed (one path component of [A-Za-z0-9._-])"
        ));
    }
    Ok(())
}

/// A capability-scoped directory of archives.
pub trait ArchiveDir: Send + Sync {
    /// Archive files in name order; hidden (`.`-prefixed) temp and lock files excluded.
    fn list(&self) -> Result<Vec<Entry>, StoreError>;
    fn stat(&self, name: &str) -> Result<Option<Entry>, StoreError>;
    /// A writer to a hidden temp file; nothing appears under `name` until `commit`.
    fn create(&self, name: &str) -> Result<Box<dyn ArchiveWriter>, StoreError>;
    fn open(&self, name: &str) -> Result<Box<dyn ArchiveReader>, StoreError>;
    fn remove(&self, name: &str) -> Result<(), StoreError>;
    /// The absolute path of `name` (for meta and for people; never used to open anything).
    fn path(&self, name: &str) -> Result<String, StoreError>;
    /// Removes temp files left by writers that died, older than `min_age_ms`. Returns how many.
    fn clean_temps(&self, min_age_ms: i64) -> Result<u32, StoreError>;
}

/// An archive being written. Dropping it without `commit` discards it.
pub trait ArchiveWriter: Send {
    fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError>;
    /// flush, fsync file, rename into place, fsync directory.
    fn commit(self: Box<Self>) -> Result<Entry, StoreError>;
    fn abort(self: Box<Self>);
}

/// An archive being read from its start.
pub trait ArchiveReader: Send {
    /// Up to `max` bytes; empty at end of file.
    fn read(&mut self, max: usize) -> Result<Vec<u8>, StoreError>;
    fn size(&self) -> u64;
}
