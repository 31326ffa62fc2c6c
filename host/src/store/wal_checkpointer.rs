//! Copies `filestore.db`'s WAL into the database on a connection and thread of its own.
//!
//! Without it, the writing connection checkpoints on its own thread every ~4 MiB (SQLite's
//! autocheckpoint, fsyncs included), and a restore, which writes a whole session in a row,
//! spends about a quarter of its writing thread there. Appends ask for a checkpoint every
//! [`CHECKPOINT_EVERY`] bytes and go on writing while it runs (a PASSIVE checkpoint never blocks
//! the writer, and copies only frames every reader is done with).
//!
//! The WAL can restart from its beginning only at a write that starts with every frame copied,
//! which a writer that never pauses does not see: so once [`WAL_BOUND`] bytes were appended since
//! it last could, the next append waits for a checkpoint of everything first. The WAL then stays
//! within about that size on a restore of any size. The writer's own autocheckpoint stays on,
//! later ([`BACKSTOP_PAGES`]), for the writes that do not ask (deletes, meta) and in case this
//! thread fails.
//!
//! Durability is SQLite's own: a checkpoint syncs the WAL before it copies frames into the
//! database (at `synchronous = NORMAL`, as here) and the database before the WAL may restart.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::sqlite_objects::open_connection;
use super::StoreError;

/// Appended bytes between two checkpoint requests (about SQLite's own 1000-page default).
pub(crate) const CHECKPOINT_EVERY: u64 = 4 << 20;
/// Appended bytes after which an append waits until the WAL can restart.
pub(crate) const WAL_BOUND: u64 = 16 << 20;
/// The writing connection's own `wal_autocheckpoint`, in pages (32 MiB at 4 KiB pages).
pub(crate) const BACKSTOP_PAGES: u32 = 8192;

#[derive(Default)]
struct State {
    /// Checkpoints asked for, and finished (each covers every frame committed before it starts).
    requested: u64,
    finished: u64,
    /// Bytes appended since the last request, and since the WAL last could restart.
    unrequested: u64,
    since_restart: u64,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The checkpointing thread of one [`SqliteFiles`](super::SqliteFiles); stopped and joined when
/// dropped.
pub(crate) struct WalCheckpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl WalCheckpointer {
    /// Opens the thread's own connection to `path` and starts it.
    pub(crate) fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = open_connection(path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let for_thread = shared.clone();
        let label = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("archiver-wal".into())
            .spawn(move || run(conn, &for_thread, &label))
            .map_err(|e| {
                StoreError::Io(format!("{}: starting the WAL thread: {e}", path.display()))
            })?;
        Ok(WalCheckpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// Before an append: past [`WAL_BOUND`], waits for a checkpoint of every committed frame, so
    /// the append's transaction restarts the WAL.
    pub(crate) fn before_append(&self) {
        let mut st = self.shared.lock();
        if st.since_restart < WAL_BOUND {
            return;
        }
        if st.unrequested > 0 {
            st.unrequested = 0;
            st.requested += 1;
            self.shared.changed.notify_all();
        }
        while st.finished < st.requested && !st.stop {
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
        st.since_restart = 0;
    }

    /// After an append of `bytes` committed: asks for a checkpoint every [`CHECKPOINT_EVERY`].
    pub(crate) fn appended(&self, bytes: u64) {
        let mut st = self.shared.lock();
        st.unrequested += bytes;
        st.since_restart += bytes;
        if st.unrequested >= CHECKPOINT_EVERY {
            st.unrequested = 0;
            st.requested += 1;
            self.shared.changed.notify_all();
        }
    }

    /// Checkpoints finished so far (tests).
    #[cfg(test)]
    pub(crate) fn finished(&self) -> u64 {
        self.shared.lock().finished
    }
}

impl Drop for WalCheckpointer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Marks the thread gone however it ends, so an append waiting for it never waits forever.
struct Gone<'a>(&'a Shared);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.changed.notify_all();
    }
}

fn run(conn: Connection, shared: &Shared, label: &str) {
    let _gone = Gone(shared);
    loop {
        let target = {
            let mut st = shared.lock();
            while st.finished == st.requested && !st.stop {
                st = shared.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.stop {
                return;
            }
            st.requested
        };
        // A failed checkpoint loses nothing (the frames stay in the WAL); the writer's own
        // autocheckpoint or the next request copies them.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))
        {
            tracing::warn!(db = %label, error = %e, "WAL checkpoint failed");
        }
        let mut st = shared.lock();
        st.finished = target;
        shared.changed.notify_all();
    }
}
