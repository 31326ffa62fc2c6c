//! Is another process (the app) using these databases? The CLI asks before every command that
//! writes, and refuses while the answer is yes.
//!
//! Why: AgentMux answers `stat` from an in-process cache and appends in several autocommit
//! statements (parts, then the size); Wave flushes a write-back cache every 5 s. A file deleted or
//! renamed underneath by another process makes their next appends land in orphan parts or at
//! wrong offsets. A running app must use the archiver embedded (the library, built with
//! `ArchiverBuilder`), through its own stores, so its cache stays coherent.
//!
//! How, first hit wins:
//!
//! 1. **SQLite's own locks** (Unix). SQLite's unix VFS takes POSIX (`fcntl`) locks, and two of
//!    them last as long as a connection is open in WAL mode (both apps use WAL): a shared lock on
//!    the "DMS" byte of the `-shm` file (byte 128: `WALINDEX_LOCK_OFFSET` 120 plus
//!    `SQLITE_SHM_NLOCK` 8, taken in `os_unix.c`'s `unixLockSharedMemory`) and a shared lock on
//!    the database file's lock range (`PENDING_BYTE` 0x40000000 and the 512 bytes after it, which
//!    a WAL-mode connection keeps between transactions). `F_GETLK` asking for a write lock on
//!    those bytes reports a conflicting holder and its pid, and takes nothing. The kernel never
//!    reports locks of the asking process, so our own open connections do not count. This works
//!    for every program on SQLite's default VFS (rusqlite, mattn/go-sqlite3, Python), on Linux
//!    and macOS, with no cooperation from the app, and costs two system calls per file.
//! 2. **Open files in `/proc`** (Linux only): a process with the database, its `-wal` or its
//!    `-shm` open, from `/proc/<pid>/fd`. This catches what locks cannot: an idle connection in
//!    rollback-journal mode, which holds no lock between transactions. It also names the process
//!    (`/proc/<pid>/comm`). Processes of other users cannot be read and are not seen.
//!
//! Limits: this is a check, not a lock. An app started after the check is not seen until the next
//! one (`archiver run` checks before each sweep). On macOS an idle rollback-journal connection is
//! not seen (no `/proc`). Other platforms cannot be checked: [`LiveAppGuard::check`] says so.
//!
//! One trap handled here: POSIX locks belong to the process, and closing *any* descriptor of a
//! file drops every lock the process holds on it, including those of our own SQLite connections.
//! So each probed file is opened once and its descriptor kept until the guard is dropped; drop
//! the guard after the stores.

// Everything but the checks themselves is unused where they cannot be made.
#![cfg_attr(not(unix), allow(dead_code))]

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Another process using one of the databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveUse {
    /// The database (not its `-wal`/`-shm`) the process uses.
    pub db: PathBuf,
    /// Its process id, when the kernel said.
    pub pid: Option<u32>,
    /// Its process name (`/proc/<pid>/comm`), when readable.
    pub name: Option<String>,
    /// How it was seen.
    pub evidence: Evidence,
}

/// How a live user of a database was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// It holds SQLite's shared-memory lock on the `-shm` file.
    ShmLock,
    /// It holds a SQLite lock on the database file.
    DbLock,
    /// It has the file open (`/proc/<pid>/fd`).
    OpenFile,
}

impl fmt::Display for LiveUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is open in another process", self.db.display())?;
        match (self.pid, &self.name) {
            (Some(pid), Some(name)) => write!(f, " (pid {pid}, {name})"),
            (Some(pid), None) => write!(f, " (pid {pid})"),
            _ => Ok(()),
        }
    }
}

/// Why a write was refused, or the check could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveAppError {
    /// The app (or some other program) has the databases open.
    #[error(
        "refusing to write: {0}, most likely the app; stop the app and run this again, or embed \
         the archiver in the app (the library's ArchiverBuilder) so it works through the app's \
         own stores"
    )]
    InUse(LiveUse),
    /// Probing a file failed (not "not found": a missing `-shm` just means no WAL user).
    #[error("checking whether another process uses {}: {source}", path.display())]
    Probe {
        /// The database, `-wal` or `-shm` file being probed.
        path: PathBuf,
        /// The I/O error from opening or lock-testing it.
        #[source]
        source: std::io::Error,
    },
    /// This platform has no way to tell.
    #[error(
        "cannot tell on this platform whether another process uses {}; stop the app, then pass \
         --allow-live-writer",
        path.display()
    )]
    Unsupported {
        /// The database that could not be checked.
        path: PathBuf,
    },
}

/// Checks a set of databases for other processes using them; see the module docs.
#[derive(Debug)]
pub struct LiveAppGuard {
    dbs: Vec<PathBuf>,
    /// Descriptors opened for probing, kept open for the guard's life (closing one would drop our
    /// own process's SQLite locks on that file).
    held: Mutex<HashMap<PathBuf, File>>,
}

impl LiveAppGuard {
    /// A guard over these databases (each with its `-wal` and `-shm`). Nothing is opened yet.
    pub fn new(dbs: impl IntoIterator<Item = PathBuf>) -> Self {
        LiveAppGuard {
            dbs: dbs.into_iter().collect(),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// The databases this guard watches.
    pub fn databases(&self) -> &[PathBuf] {
        &self.dbs
    }

    /// The first other process found using one of the databases, or `None`.
    pub fn check(&self) -> Result<Option<LiveUse>, LiveAppError> {
        for db in &self.dbs {
            if let Some(found) = self.probe_locks(db)? {
                return Ok(Some(found));
            }
        }
        for db in &self.dbs {
            if let Some(found) = open_elsewhere(db)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// `Ok` when no other process uses the databases, else [`LiveAppError::InUse`].
    pub fn ensure_not_live(&self) -> Result<(), LiveAppError> {
        match self.check()? {
            None => Ok(()),
            Some(found) => Err(LiveAppError::InUse(found)),
        }
    }

    #[cfg(unix)]
    fn probe_locks(&self, db: &Path) -> Result<Option<LiveUse>, LiveAppError> {
        // The -shm lock first: it is there for every WAL connection, even one that never read.
        let probes = [
            (with_suffix(db, "-shm"), SHM_LOCKS, Evidence::ShmLock),
            (db.to_path_buf(), DB_LOCKS, Evidence::DbLock),
        ];
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for (path, (start, len), evidence) in probes {
            let file = match held.get(&path) {
                Some(f) => f,
                None => match File::open(&path) {
                    Ok(f) => held.entry(path.clone()).or_insert(f),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => return Err(LiveAppError::Probe { path, source }),
                },
            };
            if let Some(pid) = lock_holder(file, start, len)
                .map_err(|source| LiveAppError::Probe { path, source })?
            {
                return Ok(Some(LiveUse {
                    db: db.to_path_buf(),
                    pid,
                    name: pid.and_then(process_name),
                    evidence,
                }));
            }
        }
        Ok(None)
    }

    #[cfg(not(unix))]
    fn probe_locks(&self, db: &Path) -> Result<Option<LiveUse>, LiveAppError> {
        Err(LiveAppError::Unsupported {
            path: db.to_path_buf(),
        })
    }
}

/// `-shm` bytes 120..=128: the eight WAL locks and the DMS byte every connection holds shared.
const SHM_LOCKS: (i64, i64) = (120, 9);
/// The database file's `PENDING_BYTE`, `RESERVED_BYTE` and 510-byte shared range.
const DB_LOCKS: (i64, i64) = (0x4000_0000, 512);

fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `Some(pid)` when another process holds a lock that conflicts with a write lock on
/// `start..start+len` (`pid` is `None` when the kernel gives none, e.g. an OFD lock).
#[cfg(unix)]
fn lock_holder(file: &File, start: i64, len: i64) -> std::io::Result<Option<Option<u32>>> {
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` is plain old data; all-zero is a valid value that we then fill in.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as _;
    fl.l_len = len as _;
    // SAFETY: a valid open descriptor and a pointer to a live `flock`; F_GETLK only writes `fl`.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut fl) };
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    if fl.l_type == libc::F_UNLCK as libc::c_short {
        return Ok(None);
    }
    Ok(Some(u32::try_from(fl.l_pid).ok().filter(|&p| p > 0)))
}

/// `/proc/<pid>/comm`, the process's short name.
fn process_name(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_string()).filter(|s| !s.is_empty())
}

/// Another process with `db`, its `-wal` or its `-shm` open, from `/proc/*/fd` (Linux).
#[cfg(target_os = "linux")]
fn open_elsewhere(db: &Path) -> Result<Option<LiveUse>, LiveAppError> {
    let Ok(canonical) = std::fs::canonicalize(db) else {
        return Ok(None);
    };
    let targets = [
        canonical.clone(),
        with_suffix(&canonical, "-wal"),
        with_suffix(&canonical, "-shm"),
    ];
    let own = std::process::id();
    let procs = std::fs::read_dir("/proc").map_err(|source| LiveAppError::Probe {
        path: PathBuf::from("/proc"),
        source,
    })?;
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        // Other users' processes (and processes that just exited) cannot be listed: skip them.
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| targets.contains(&t)) {
                return Ok(Some(LiveUse {
                    db: db.to_path_buf(),
                    pid: Some(pid),
                    name: process_name(pid),
                    evidence: Evidence::OpenFile,
                }));
            }
        }
    }
    Ok(None)
}

#[cfg(not(target_os = "linux"))]
fn open_elsewhere(_db: &Path) -> Result<Option<LiveUse>, LiveAppError> {
    Ok(None)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn our_own_open_connections_do_not_count_as_a_live_app() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("wave.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let guard = LiveAppGuard::new([db.clone()]);
        assert_eq!(guard.check().unwrap(), None);
        // Probing again with our connection still open keeps its locks: the connection still
        // reads and writes.
        assert_eq!(guard.check().unwrap(), None);
        conn.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn a_missing_database_is_not_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let guard = LiveAppGuard::new([dir.path().join("nope.db")]);
        assert_eq!(guard.check().unwrap(), None);
    }

    #[test]
    fn the_refusal_names_the_database_the_process_and_both_safe_ways() {
        let e = LiveAppError::InUse(LiveUse {
            db: PathBuf::from("/d/db/wave.db"),
            pid: Some(42),
            name: Some("agentmuxsrv".into()),
            evidence: Evidence::ShmLock,
        });
        let line = e.to_string();
        assert!(!line.contains('\n'));
        for part in [
            "/d/db/wave.db",
            "pid 42",
            "agentmuxsrv",
            "stop the app",
            "embed",
        ] {
            assert!(line.contains(part), "{part} missing from: {line}");
        }
    }
}
