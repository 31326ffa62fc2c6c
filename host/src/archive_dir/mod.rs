//! The archive directory as a capability: the guest names files, the host owns the paths.
//!
//! `validate_name` is the single gate every name passes through, for the real directory
//! (`fs.rs`, opened relative to a `cap-std` directory handle) and the in-memory one (`memory.rs`).
//! On top of it `validate_archive_name` admits only this tool's own archive names
//! (`<session id>.jsonl.gz`): a user's `notes-2026.tar.gz` in the directory is never listed to a
//! policy, so it can never be classed an orphan and pruned.

pub mod fs;
pub mod memory;
pub mod object;

use crate::store::StoreError;

/// Longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// One archive file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The archive's file name (`<session id>.jsonl.gz`).
    pub name: String,
    /// Its size in bytes (what the prune cap counts).
    pub size: u64,
    /// When it was last written, in ms since the Unix epoch.
    pub modified_ms: i64,
    /// Which file this is, opaque to everyone but its backend (device and inode on disk, a
    /// generation in memory, an ETag in a bucket): a file replaced by a new one of the same size
    /// within the same millisecond still differs here. `None` when unknown.
    pub identity: Option<String>,
}

impl Entry {
    /// Whether `now` is still the file this entry describes: same size and modification time,
    /// and the same identity where both know it.
    pub fn same_file(&self, now: &Entry) -> bool {
        self.size == now.size
            && self.modified_ms == now.modified_ms
            && match (&self.identity, &now.identity) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
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

/// The file name suffix of every archive (the seed's `<id>.jsonl.gz`).
pub const ARCHIVE_SUFFIX: &str = ".jsonl.gz";

/// The session id an archive name belongs to, or `None` when `name` is not of the form
/// `<session id>.jsonl.gz` with a non-empty id that is itself a safe name (then the file is not
/// this tool's and is left alone).
pub fn archive_id(name: &str) -> Option<&str> {
    let id = name.strip_suffix(ARCHIVE_SUFFIX)?;
    (validate_name(name).is_ok() && validate_name(id).is_ok()).then_some(id)
}

/// `validate_name`, and the name must be an archive's (`<session id>.jsonl.gz`): the gate of
/// every operation that reads, writes or removes an archive.
pub fn validate_archive_name(name: &str) -> Result<(), StoreError> {
    validate_name(name)?;
    if archive_id(name).is_none() {
        return Err(StoreError::InvalidName(format!(
            "{name:?}: not an archive name (<session id>{ARCHIVE_SUFFIX}); other files in the \
             archive directory are never touched"
        )));
    }
    Ok(())
}

/// A capability-scoped directory of archives.
pub trait ArchiveDir: Send + Sync {
    /// Archive files in name order: regular files with archive names only; hidden
    /// (`.`-prefixed) temp and lock files and foreign files excluded.
    fn list(&self) -> Result<Vec<Entry>, StoreError>;
    /// How many visible entries `list` leaves out because they are not this tool's archives (a
    /// user's own files, subdirectories, a FIFO named like an archive): for `status`.
    fn foreign_count(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    /// Checks that the directory's path still leads to the directory this handle was opened on
    /// (a long-running process must not keep writing into a directory that was moved away while
    /// meta records paths under the old name). Backends without a path have nothing to check.
    fn check_still_at_path(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Archive `name`'s entry, `None` if there is none; an error if `name` is not a regular file.
    fn stat(&self, name: &str) -> Result<Option<Entry>, StoreError>;
    /// A writer to a hidden temp file; nothing appears under `name` until `commit`.
    fn create(&self, name: &str) -> Result<Box<dyn ArchiveWriter>, StoreError>;
    /// A reader from the start of archive `name`; [`StoreError::NotFound`] if there is none.
    fn open(&self, name: &str) -> Result<Box<dyn ArchiveReader>, StoreError>;
    /// Deletes archive `name` durably; [`StoreError::NotFound`] if there is none.
    fn remove(&self, name: &str) -> Result<(), StoreError>;
    /// Removes `name` only if it is still the file `expected` describes ([`Entry::same_file`]),
    /// else [`StoreError::Conflict`] and nothing removed. The default checks then removes (not
    /// atomic); the shipped backends make the check and the removal one step.
    fn remove_if_unchanged(&self, name: &str, expected: &Entry) -> Result<(), StoreError> {
        match self.stat(name)? {
            None => Err(StoreError::NotFound(format!("archive {name}"))),
            Some(now) if expected.same_file(&now) => self.remove(name),
            Some(now) => Err(changed(name, expected, &now)),
        }
    }
    /// The absolute path of `name` (for meta and for people; never used to open anything).
    fn path(&self, name: &str) -> Result<String, StoreError>;
    /// Whether `path` names archive `name` here: file name `name`, parent resolving to this
    /// directory. The default accepts only the exact path `path` reports.
    fn is_path_of(&self, path: &str, name: &str) -> Result<bool, StoreError> {
        Ok(self.path(name)? == path)
    }
    /// Removes temp files left by writers that died, older than `min_age_ms`. Returns how many.
    fn clean_temps(&self, min_age_ms: i64) -> Result<u32, StoreError>;
}

/// An archive being written. Dropping it without `commit` discards it.
pub trait ArchiveWriter: Send {
    /// Appends `chunk` to the temp file.
    fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError>;
    /// flush, fsync file, rename into place, fsync directory.
    fn commit(self: Box<Self>) -> Result<Entry, StoreError>;
    /// Discards the temp file; the name is left as it was.
    fn abort(self: Box<Self>);
}

/// An archive being read from its start.
pub trait ArchiveReader: Send {
    /// Up to `max` bytes; empty at end of file.
    fn read(&mut self, max: usize) -> Result<Vec<u8>, StoreError>;
    /// The archive's size in bytes when it was opened.
    fn size(&self) -> u64;
}

/// The conflict of a [`ArchiveDir::remove_if_unchanged`] whose file changed.
pub fn changed(name: &str, expected: &Entry, now: &Entry) -> StoreError {
    StoreError::Conflict(format!(
        "archive {name} changed since it was listed ({} bytes at {} ms{}, now {} bytes at {} \
         ms{}); not removed",
        expected.size,
        expected.modified_ms,
        shown(&expected.identity),
        now.size,
        now.modified_ms,
        shown(&now.identity),
    ))
}

fn shown(identity: &Option<String>) -> String {
    identity
        .as_deref()
        .map(|i| format!(", file {i}"))
        .unwrap_or_default()
}
