//! Per-session exclusion: at most one archive/restore/export of a session at a time, across
//! threads and processes, so a `restore` issued while `archiver run` sweeps waits at most for that
//! one session, never for the whole sweep, and never races it.

use std::collections::HashSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::archive_dir::validate_name;
use crate::error::ArchiverError;

/// Where session locks live.
#[derive(Debug, Clone)]
pub enum SessionLocks {
    /// Advisory lock files (`flock`) in this directory, one per session: excludes other
    /// processes too. Typically `<archive dir>/.locks` (hidden from archive listings).
    Files(PathBuf),
    /// A lock map inside this process (tests with in-memory stores).
    InProcess(Arc<LockMap>),
}

/// The in-process lock set.
#[derive(Debug, Default)]
pub struct LockMap {
    held: Mutex<HashSet<String>>,
    released: Condvar,
}

/// Holds one session's lock until dropped.
#[derive(Debug)]
pub struct SessionLock {
    held: Held,
}

#[derive(Debug)]
enum Held {
    /// Never read: holding the open file holds the `flock`, and dropping it releases the lock.
    File(#[allow(dead_code)] File),
    Map(Arc<LockMap>, String),
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        if let Held::Map(map, id) = &self.held {
            let mut held = map.held.lock().unwrap_or_else(|p| p.into_inner());
            held.remove(id);
            map.released.notify_all();
        }
    }
}

impl SessionLocks {
    /// Lock files in `dir` (created on first use).
    pub fn files(dir: impl Into<PathBuf>) -> Self {
        SessionLocks::Files(dir.into())
    }

    /// A fresh in-process lock map.
    pub fn in_process() -> Self {
        SessionLocks::InProcess(Arc::default())
    }

    /// Waits for and takes the lock of session `id`.
    pub fn lock(&self, id: &str) -> Result<SessionLock, ArchiverError> {
        match self {
            SessionLocks::Files(_) => {
                let file = self.open(id)?;
                file.lock().map_err(|e| io_err(id, e))?;
                Ok(SessionLock {
                    held: Held::File(file),
                })
            }
            SessionLocks::InProcess(map) => {
                let mut held = map.held.lock().unwrap_or_else(|p| p.into_inner());
                while held.contains(id) {
                    held = map.released.wait(held).unwrap_or_else(|p| p.into_inner());
                }
                held.insert(id.to_string());
                Ok(SessionLock {
                    held: Held::Map(map.clone(), id.to_string()),
                })
            }
        }
    }

    /// Takes the lock of session `id` if nobody holds it; `None` when busy.
    pub fn try_lock(&self, id: &str) -> Result<Option<SessionLock>, ArchiverError> {
        match self {
            SessionLocks::Files(_) => {
                let file = self.open(id)?;
                match file.try_lock() {
                    Ok(()) => Ok(Some(SessionLock {
                        held: Held::File(file),
                    })),
                    Err(TryLockError::WouldBlock) => Ok(None),
                    Err(TryLockError::Error(e)) => Err(io_err(id, e)),
                }
            }
            SessionLocks::InProcess(map) => {
                let mut held = map.held.lock().unwrap_or_else(|p| p.into_inner());
                if !held.insert(id.to_string()) {
                    return Ok(None);
                }
                Ok(Some(SessionLock {
                    held: Held::Map(map.clone(), id.to_string()),
                }))
            }
        }
    }

    fn open(&self, id: &str) -> Result<File, ArchiverError> {
        let SessionLocks::Files(dir) = self else {
            unreachable!("only called for Files")
        };
        // Owner-only, like everything in the archive directory.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err(id, e))?;
        OpenOptions::new()
            .mode(0o600)
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(lock_file_name(id)))
            .map_err(|e| io_err(id, e))
    }
}

/// How long a prune waits for a session another operation holds before leaving that archive
/// for the next prune: long enough for an archive or restore of one session to finish, short
/// enough that a stuck process cannot stall the sweep.
pub const HOLD_WAIT: Duration = Duration::from_secs(5);

/// The one session lock a prune holds at a time: taken when the prune first acts on a session
/// (stat, tombstone, removal of its archive) and released when it moves on to the next, so a
/// prune over thousands of archives never holds thousands of lock files open, and no archive,
/// restore or recovery of that session (in this process or another) runs in between.
#[derive(Debug)]
pub struct SessionHold {
    locks: SessionLocks,
    wait: Duration,
    held: Option<(String, SessionLock)>,
}

impl SessionHold {
    /// A hold that waits up to `wait` for each session.
    pub fn new(locks: SessionLocks, wait: Duration) -> Self {
        SessionHold {
            locks,
            wait,
            held: None,
        }
    }

    /// Holds session `id`'s lock, releasing the one held before. `Ok(false)` when another
    /// operation kept it for longer than the wait (nothing is held then).
    pub fn hold(&mut self, id: &str) -> Result<bool, ArchiverError> {
        if self.held.as_ref().is_some_and(|(h, _)| h == id) {
            return Ok(true);
        }
        self.held = None;
        let deadline = Instant::now() + self.wait;
        loop {
            if let Some(lock) = self.locks.try_lock(id)? {
                self.held = Some((id.to_string(), lock));
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `<id>.lock` for ids that are safe file names, else `#<sha256 of id>.lock` (`#` never occurs in
/// a safe name, so the two forms cannot collide). Lock files are never deleted: deleting one
/// while another process waits on it would let two holders in.
pub fn lock_file_name(id: &str) -> String {
    if id.len() <= 200 && validate_name(id).is_ok() {
        format!("{id}.lock")
    } else {
        format!("#{}.lock", hex::encode(Sha256::digest(id.as_bytes())))
    }
}

fn io_err(id: &str, source: std::io::Error) -> ArchiverError {
    ArchiverError::Io {
        what: format!("locking session {id:?}"),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exclusion(locks: SessionLocks) {
        let a = locks.lock("s1").unwrap();
        assert!(
            locks.try_lock("s1").unwrap().is_none(),
            "second holder let in"
        );
        assert!(
            locks.try_lock("s2").unwrap().is_some(),
            "other sessions are independent"
        );
        drop(a);
        assert!(locks.try_lock("s1").unwrap().is_some(), "released on drop");
    }

    #[test]
    fn file_locks_exclude_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        exclusion(SessionLocks::files(dir.path().join(".locks")));
    }

    #[test]
    fn in_process_locks_exclude_a_second_holder_until_dropped() {
        exclusion(SessionLocks::in_process());
    }

    #[test]
    fn a_hold_keeps_one_session_at_a_time_and_gives_up_on_a_busy_one() {
        let locks = SessionLocks::in_process();
        let mut hold = SessionHold::new(locks.clone(), Duration::from_millis(30));
        assert!(hold.hold("a").unwrap());
        assert!(locks.try_lock("a").unwrap().is_none(), "a is held");
        assert!(hold.hold("b").unwrap());
        assert!(
            locks.try_lock("a").unwrap().is_some(),
            "a released on moving to b"
        );
        let busy = locks.lock("c").unwrap();
        assert!(!hold.hold("c").unwrap(), "c is busy past the wait");
        assert!(
            locks.try_lock("b").unwrap().is_some(),
            "nothing held after giving up"
        );
        drop(busy);
        assert!(hold.hold("c").unwrap());
    }

    #[test]
    fn odd_ids_get_hashed_lock_names() {
        assert_eq!(lock_file_name("abc-1"), "abc-1.lock");
        let odd = lock_file_name("../etc/passwd");
        assert!(odd.starts_with('#') && !odd.contains('/'), "{odd}");
    }

    #[test]
    fn a_blocked_lock_proceeds_when_the_holder_drops() {
        let locks = SessionLocks::in_process();
        let held = locks.lock("s").unwrap();
        let l2 = locks.clone();
        let t = std::thread::spawn(move || {
            let _g = l2.lock("s").unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!t.is_finished());
        drop(held);
        t.join().unwrap();
    }
}
