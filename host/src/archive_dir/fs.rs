//! The archive directory on disk, as a `cap-std` directory handle.
//!
//! The path is resolved once, with ambient authority, in `open`; every later operation is relative
//! to that handle. cap-std resolves each name itself and refuses any resolution that would leave
//! the directory (`..`, absolute paths, and symlinks whose target lies outside, however reached),
//! so even a symlink planted in the directory cannot make us read or write outside it. On top of
//! that `validate_archive_name` admits only this tool's archive names (single plain components),
//! and `remove` unlinks the entry itself (never a symlink's target).
//!
//! Agent transcripts hold tokens and keys: the directory is created 0700 and every file written
//! in it 0600, whatever the umask allows beyond that.

use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, File, FileType, Metadata, MetadataExt, OpenOptions, OpenOptionsExt};

use super::{archive_id, validate_archive_name, ArchiveDir, ArchiveReader, ArchiveWriter, Entry};
use crate::store::{StoreError, MAX_CHUNK};

/// Prefix of in-progress writers' files; hidden, so `list` and `validate_name` never see them.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Mode of the archive directory (and of parents `open` creates): owner only.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file written in the archive directory: owner read/write only.
pub const FILE_MODE: u32 = 0o600;

/// How much of the final name a temp name repeats (keeps temp names under the 255-byte limit).
const TEMP_NAME_KEEP: usize = 200;

/// A directory of archives, confined to the directory given to `open`.
#[derive(Debug, Clone)]
pub struct FsArchiveDir {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: Dir,
    /// Canonical absolute path of the directory, for `path` only.
    root: PathBuf,
    /// The path `open` was given (made absolute), to check it still leads here.
    given: PathBuf,
    /// Device and inode of the directory the handle was opened on.
    identity: (u64, u64),
}

fn ms_since_epoch(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn modified_ms(m: &Metadata) -> i64 {
    m.modified()
        .map(|t| ms_since_epoch(t.into_std()))
        .unwrap_or(0)
}

/// A filesystem failure: always `Io` (the WIT errors of create/write/commit have no not-found).
fn io_err(what: &str, name: &str, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what} {name}: {e}"))
}

/// For `open` and `remove`, where a missing name is the caller's `NotFound`.
fn lookup_err(what: &str, name: &str, e: std::io::Error) -> StoreError {
    match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::NotFound(format!("archive {name}")),
        _ => io_err(what, name, e),
    }
}

impl FsArchiveDir {
    /// Opens the directory at `path`, creating it (and its parents) if missing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(path)
            .map_err(|e| io_err("create directory", &shown, e))?;
        let given = std::path::absolute(path).map_err(|e| io_err("resolve", &shown, e))?;
        let root = std::fs::canonicalize(path).map_err(|e| io_err("resolve", &shown, e))?;
        if root.to_str().is_none() {
            return Err(StoreError::Io(format!(
                "archive directory {shown} is not valid UTF-8; its paths could not be recorded"
            )));
        }
        let dir = Dir::open_ambient_dir(&root, ambient_authority())
            .map_err(|e| io_err("open directory", &shown, e))?;
        let meta = dir
            .dir_metadata()
            .map_err(|e| io_err("stat directory", &shown, e))?;
        let identity = (meta.dev(), meta.ino());
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                root,
                given,
                identity,
            }),
        })
    }

    /// The canonical absolute path of the directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }
}

impl Inner {
    /// fsync the directory itself, so a rename or unlink in it survives a crash.
    fn sync_dir(&self) -> Result<(), StoreError> {
        let ctx = |e| io_err("sync directory", &self.root.display().to_string(), e);
        // cap-std holds the directory as an `O_PATH` descriptor, which cannot be fsynced: open
        // it again for reading.
        self.dir.open(".").map_err(ctx)?.sync_all().map_err(ctx)
    }

    /// The archives (regular files with archive names) and how many other visible entries
    /// there are; hidden (`.`-prefixed) temp and lock files are neither.
    fn scan(&self) -> Result<(Vec<Entry>, u64), StoreError> {
        let mut out = Vec::new();
        let mut foreign = 0;
        let entries = self.dir.entries().map_err(|e| io_err("list", ".", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list", ".", e))?;
            let Ok(name) = entry.file_name().into_string() else {
                foreign += 1;
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if archive_id(&name).is_none() {
                foreign += 1;
                continue;
            }
            // No-follow stat: never blocks, and a symlink is not an archive.
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Removed between readdir and stat: it is simply gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("stat", &name, e)),
            };
            if meta.is_file() {
                out.push(self.entry(&name, &meta));
            } else {
                foreign += 1;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((out, foreign))
    }

    fn entry(&self, name: &str, meta: &Metadata) -> Entry {
        Entry {
            name: name.to_owned(),
            size: meta.len(),
            modified_ms: modified_ms(meta),
            identity: Some(format!("{}:{}", meta.dev(), meta.ino())),
        }
    }
}

impl ArchiveDir for FsArchiveDir {
    /// Regular files with archive names only: a symlink, subdirectory or FIFO is not an archive,
    /// and a user's own file is not ours.
    fn list(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self.inner.scan()?.0)
    }

    fn foreign_count(&self) -> Result<u64, StoreError> {
        Ok(self.inner.scan()?.1)
    }

    fn check_still_at_path(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        for path in [&inner.given, &inner.root] {
            let shown = path.display();
            match std::fs::metadata(path) {
                Ok(m) if (m.dev(), m.ino()) == inner.identity => {}
                Ok(_) => {
                    return Err(StoreError::Io(format!(
                        "archive directory {shown} is no longer the directory opened at start \
                         (moved or replaced); archives are not written elsewhere than meta \
                         records, reopen it by starting again"
                    )))
                }
                Err(e) => {
                    return Err(StoreError::Io(format!(
                        "archive directory {shown} no longer leads to the directory opened at \
                         start (moved or removed: {e}); reopen it by starting again"
                    )))
                }
            }
        }
        Ok(())
    }

    fn stat(&self, name: &str) -> Result<Option<Entry>, StoreError> {
        validate_archive_name(name)?;
        match self.inner.dir.symlink_metadata(name) {
            Ok(m) if m.is_file() => Ok(Some(self.inner.entry(name, &m))),
            Ok(_) => Err(StoreError::Io(format!("{name}: not a regular file"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat", name, e)),
        }
    }

    fn create(&self, name: &str) -> Result<Box<dyn ArchiveWriter>, StoreError> {
        validate_archive_name(name)?;
        let keep = name
            .char_indices()
            .nth(TEMP_NAME_KEEP)
            .map_or(name, |(i, _)| &name[..i]);
        let temp = format!("{TEMP_PREFIX}{keep}-{:016x}", rand::random::<u64>());
        let file = self
            .inner
            .dir
            .open_with(
                &temp,
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(FILE_MODE),
            )
            .map_err(|e| io_err("create", &temp, e))?;
        Ok(Box::new(FsWriter {
            inner: Arc::clone(&self.inner),
            name: name.to_owned(),
            temp,
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
        }))
    }

    /// Refuses anything but a regular file without blocking: opened non-blocking (a FIFO would
    /// otherwise wait for a writer forever) and without following a symlink, then checked with
    /// `fstat` on what was actually opened.
    fn open(&self, name: &str) -> Result<Box<dyn ArchiveReader>, StoreError> {
        validate_archive_name(name)?;
        let file = self
            .inner
            .dir
            .open_with(
                name,
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW),
            )
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => {
                    StoreError::Io(format!("{name}: a symlink, not a regular file"))
                }
                _ => lookup_err("open", name, e),
            })?;
        let meta = file.metadata().map_err(|e| io_err("stat", name, e))?;
        if !meta.is_file() {
            return Err(StoreError::Io(format!(
                "{name}: {}, not a regular file",
                kind_of(meta.file_type())
            )));
        }
        Ok(Box::new(FsReader {
            file,
            size: meta.len(),
        }))
    }

    /// Unlinks the entry itself; a symlink's target is never touched.
    fn remove(&self, name: &str) -> Result<(), StoreError> {
        validate_archive_name(name)?;
        self.inner
            .dir
            .remove_file(name)
            .map_err(|e| lookup_err("remove", name, e))?;
        self.inner.sync_dir()
    }

    /// Moves the file aside under a hidden name first, so no archive committed after that
    /// (a rename into place) can be the file checked and removed; the check is on the file
    /// moved aside. A changed file goes back with a hard link, which never replaces an archive
    /// committed meanwhile (that newer one wins, as a commit over the old one would).
    fn remove_if_unchanged(&self, name: &str, expected: &Entry) -> Result<(), StoreError> {
        validate_archive_name(name)?;
        let dir = &self.inner.dir;
        let aside = format!("{TEMP_PREFIX}prune-{:016x}", rand::random::<u64>());
        dir.rename(name, dir, &aside)
            .map_err(|e| lookup_err("remove", name, e))?;
        let m = dir
            .symlink_metadata(&aside)
            .map_err(|e| io_err("remove", name, e))?;
        let now = self.inner.entry(name, &m);
        if m.is_file() && expected.same_file(&now) {
            dir.remove_file(&aside)
                .map_err(|e| io_err("remove", name, e))?;
            return self.inner.sync_dir();
        }
        match dir.hard_link(&aside, dir, name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("put back", name, e)),
        }
        dir.remove_file(&aside)
            .map_err(|e| io_err("remove", name, e))?;
        self.inner.sync_dir()?;
        Err(super::changed(name, expected, &now))
    }

    /// Resolves the parent with the filesystem (symlinks followed) and compares it with this
    /// directory by device and inode, so a symlinked, re-spelled or moved-and-linked data
    /// directory still matches; a parent that does not resolve does not.
    fn is_path_of(&self, path: &str, name: &str) -> Result<bool, StoreError> {
        validate_archive_name(name)?;
        let path = Path::new(path);
        if !path.is_absolute() || path.file_name().and_then(|n| n.to_str()) != Some(name) {
            return Ok(false);
        }
        let Some(parent) = path.parent() else {
            return Ok(false);
        };
        Ok(std::fs::metadata(parent)
            .is_ok_and(|m| m.is_dir() && (m.dev(), m.ino()) == self.inner.identity))
    }

    fn path(&self, name: &str) -> Result<String, StoreError> {
        validate_archive_name(name)?;
        let p = self.inner.root.join(name);
        // `open` checked the root is UTF-8 and `validate_name` allows ASCII only.
        Ok(p.to_string_lossy().into_owned())
    }

    fn clean_temps(&self, min_age_ms: i64) -> Result<u32, StoreError> {
        let now = ms_since_epoch(SystemTime::now());
        let mut removed = 0;
        let entries = self
            .inner
            .dir
            .entries()
            .map_err(|e| io_err("list", ".", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list", ".", e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if !meta.is_file() || now - modified_ms(&meta) < min_age_ms {
                continue;
            }
            match self.inner.dir.remove_file(&name) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &name, e)),
            }
        }
        if removed > 0 {
            self.inner.sync_dir()?;
        }
        Ok(removed)
    }
}

/// What a non-regular file is, for error messages.
fn kind_of(t: FileType) -> &'static str {
    use cap_std::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symlink"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "a special file"
    }
}

/// Writes to a hidden temp file; `commit` renames it into place, anything else removes it.
struct FsWriter {
    inner: Arc<Inner>,
    name: String,
    temp: String,
    /// `None` once committed or aborted.
    file: Option<BufWriter<File>>,
}

impl FsWriter {
    fn discard(&mut self) {
        if self.file.take().is_some() {
            // Best effort: a temp left behind is removed by the next `clean_temps`.
            let _ = self.inner.dir.remove_file(&self.temp);
        }
    }

    fn finish(&mut self) -> Result<Entry, StoreError> {
        let file = self.file.as_mut().ok_or_else(|| {
            StoreError::Invalid(format!("writer for {} already finished", self.name))
        })?;
        file.flush().map_err(|e| io_err("write", &self.temp, e))?;
        file.get_ref()
            .sync_all()
            .map_err(|e| io_err("sync", &self.temp, e))?;
        let meta = file
            .get_ref()
            .metadata()
            .map_err(|e| io_err("stat", &self.temp, e))?;
        self.inner
            .dir
            .rename(&self.temp, &self.inner.dir, &self.name)
            .map_err(|e| io_err("rename into place", &self.name, e))?;
        // The temp name is gone: nothing left for Drop to remove.
        self.file = None;
        self.inner.sync_dir()?;
        Ok(self.inner.entry(&self.name, &meta))
    }
}

impl ArchiveWriter for FsWriter {
    fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        if chunk.len() > MAX_CHUNK {
            return Err(StoreError::Invalid(format!(
                "chunk of {} bytes is over the {MAX_CHUNK}-byte limit",
                chunk.len()
            )));
        }
        let file = self.file.as_mut().ok_or_else(|| {
            StoreError::Invalid(format!("writer for {} already finished", self.name))
        })?;
        file.write_all(chunk)
            .map_err(|e| io_err("write", &self.temp, e))
    }

    fn commit(mut self: Box<Self>) -> Result<Entry, StoreError> {
        let result = self.finish();
        if result.is_err() {
            self.discard();
        }
        result
    }

    fn abort(mut self: Box<Self>) {
        self.discard();
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        self.discard();
    }
}

/// Reads an archive from its start.
struct FsReader {
    file: File,
    size: u64,
}

impl ArchiveReader for FsReader {
    fn read(&mut self, max: usize) -> Result<Vec<u8>, StoreError> {
        if max > MAX_CHUNK {
            return Err(StoreError::Invalid(format!(
                "read of {max} bytes is over the {MAX_CHUNK}-byte limit"
            )));
        }
        let mut buf = Vec::with_capacity(max.min(self.size as usize));
        (&mut self.file)
            .take(max as u64)
            .read_to_end(&mut buf)
            .map_err(|e| StoreError::Io(format!("read archive: {e}")))?;
        Ok(buf)
    }

    fn size(&self) -> u64 {
        self.size
    }
}
