//! The compiled-component cache holds native code that wasmtime maps and runs without checking
//! it, so whoever can write it can run code as us. The host therefore uses a cache directory only
//! when it is ours and not writable by group or others (otherwise it warns and compiles without
//! the cache), reads an entry only through a handle opened without following symlinks and only
//! when that file is ours and private, and writes entries to a new private temp file (never an
//! existing file or a planted symlink) renamed in place.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Why a cache directory or entry is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Owned by another user.
    #[error("{path} is owned by uid {owner}, not by this user (uid {me})")]
    NotOwned {
        /// The directory or entry.
        path: String,
        /// Its owner's uid.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// Writable by group or others.
    #[error("{path} is writable by group or others (mode {mode:o})")]
    Writable {
        /// The directory or entry.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a regular file / directory (a symlink, a FIFO).
    #[error("{path} is not a {want}")]
    WrongType {
        /// The directory or entry.
        path: String,
        /// What it should have been (`regular file`, `directory`).
        want: &'static str,
    },
    /// The filesystem failed.
    #[error("{path}: {source}")]
    Io {
        /// The directory or entry.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path, source: std::io::Error) -> CacheError {
    CacheError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The effective user id of this process.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses metadata of something not ours or writable by group or others.
fn check_owner_and_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), CacheError> {
    let me = euid();
    if meta.uid() != me {
        return Err(CacheError::NotOwned {
            path: path.display().to_string(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(CacheError::Writable {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// Creates `dir` (mode 0700) when missing and checks it is a directory of ours that group and
/// others cannot write.
pub fn check_dir(dir: &Path) -> Result<(), CacheError> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io(dir, e))?;
    }
    let meta = std::fs::metadata(dir).map_err(|e| io(dir, e))?;
    if !meta.is_dir() {
        return Err(CacheError::WrongType {
            path: dir.display().to_string(),
            want: "directory",
        });
    }
    check_owner_and_mode(dir, &meta)
}

/// Reads the entry at `path`: `Ok(None)` when there is none. Opened without following a
/// symlink, then checked on the open handle (regular file, ours, private), so what is checked
/// is what is read.
pub fn read_entry(path: &Path) -> Result<Option<Vec<u8>>, CacheError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // ELOOP: the name is a symlink.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(CacheError::WrongType {
                path: path.display().to_string(),
                want: "regular file (it is a symlink)",
            })
        }
        Err(e) => return Err(io(path, e)),
    };
    let meta = file.metadata().map_err(|e| io(path, e))?;
    if !meta.is_file() {
        return Err(CacheError::WrongType {
            path: path.display().to_string(),
            want: "regular file",
        });
    }
    check_owner_and_mode(path, &meta)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&file).read_to_end(&mut bytes).map_err(|e| io(path, e))?;
    Ok(Some(bytes))
}

/// Writes `bytes` as the entry at `path`: into a new temp file in the same directory (created
/// exclusively, never following a symlink, mode 0600), synced, then renamed over `path`, which
/// replaces whatever was planted there (a symlink is replaced, not followed).
pub fn write_entry(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("cache");
    let tmp = dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let write = || -> std::io::Result<()> {
        let mut file: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(path, e)
    })
}
