//! A data directory in the app's layout (the object store, `filestore.db`, `archives/`), opened
//! as [`Stores`] plus the cross-process session locks that go with it.
//!
//! The apps keep both databases in one `db/` directory and name the object store differently:
//! AgentMux `wave.db`, Wave `waveterm.db`, forks something else. [`DataDirPaths::find`] accepts
//! such a directory as is, so `--data-dir` can point at the app's own `db/`.
//!
//! The CLI and tests use this so that every process working on one directory agrees on where the
//! databases, the archives and the lock files are.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};

use crate::archive_dir::fs::FsArchiveDir;
use crate::archive_dir::object::{is_object_url, ObjectArchiveDir, OwnerFilter, S3Options};
use crate::archive_dir::ArchiveDir;
use crate::host::Stores;
use crate::locks::SessionLocks;
use crate::store::sqlite_files::SqliteFiles;
use crate::store::sqlite_objects::SqliteObjects;
use crate::store::{ObjectStore, StoreError, SystemClock};

/// AgentMux's object store file name (and the one a new data directory gets).
pub const AGENTMUX_OBJECTS_DB: &str = "wave.db";
/// Wave's object store file name.
pub const WAVE_OBJECTS_DB: &str = "waveterm.db";
/// The name earlier versions of this project gave the object store.
pub const OBJECTS_DB: &str = "objects.db";
/// The file store's file name inside a data directory (the same in both apps).
pub const FILESTORE_DB: &str = "filestore.db";
/// The archive directory's name inside a data directory.
pub const ARCHIVES: &str = "archives";
/// The lock directory's name inside the archive directory (hidden, so never listed as an archive).
pub const LOCKS: &str = ".locks";
/// The lock directory's name beside the object store when archives are in an object store.
pub const OBJECT_STORE_LOCKS: &str = ".archiver-locks";
/// The table that marks a database as an object store.
const BLOCK_TABLE: &str = "db_block";

/// Whose layout a data directory has, as told by its object store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// `wave.db` beside `filestore.db`.
    AgentMux,
    /// `waveterm.db` beside `filestore.db`.
    Wave,
    /// `objects.db` beside `filestore.db`.
    Archiver,
    /// Another `.db` file, recognised by its `db_block` table (a fork that renamed it).
    Custom {
        /// The object store's file name.
        file_name: String,
    },
    /// The object store was named by the caller (`--objects-db`), not looked for.
    Given,
}

impl Layout {
    /// A stable one-word name for scripts: `agentmux`, `wave`, `archiver`, `custom`, `given`.
    pub fn id(&self) -> &'static str {
        match self {
            Layout::AgentMux => "agentmux",
            Layout::Wave => "wave",
            Layout::Archiver => "archiver",
            Layout::Custom { .. } => "custom",
            Layout::Given => "given",
        }
    }

    /// The known object store names, in the order they are looked for.
    fn known() -> [(&'static str, Layout); 3] {
        [
            (AGENTMUX_OBJECTS_DB, Layout::AgentMux),
            (WAVE_OBJECTS_DB, Layout::Wave),
            (OBJECTS_DB, Layout::Archiver),
        ]
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layout::AgentMux => write!(f, "AgentMux ({AGENTMUX_OBJECTS_DB})"),
            Layout::Wave => write!(f, "Wave ({WAVE_OBJECTS_DB})"),
            Layout::Archiver => write!(f, "session-archiver ({OBJECTS_DB})"),
            Layout::Custom { file_name } => {
                write!(f, "custom ({file_name}, found by its {BLOCK_TABLE} table)")
            }
            Layout::Given => f.write_str("object store given explicitly (--objects-db)"),
        }
    }
}

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// A database that must already exist does not (a typo in `--data-dir` should not silently
    /// create an empty store).
    #[error("{what} {} does not exist (create demo data with `archiver demo`, or pass --data-dir)", path.display())]
    Missing {
        /// Which part is missing: "object store", "file store" or "data directory".
        what: &'static str,
        /// Where it was expected.
        path: PathBuf,
    },
    /// The directory holds none of the known object stores and no `.db` file with a `db_block`
    /// table.
    #[error(
        "no object store in {}: none of {AGENTMUX_OBJECTS_DB} (AgentMux), {WAVE_OBJECTS_DB} (Wave), \
         {OBJECTS_DB}, and no .db file with a {BLOCK_TABLE} table (found: {}); \
         pass --objects-db FILE to name it",
        dir.display(),
        if found.is_empty() { "no .db files".to_string() } else { found.join(", ") }
    )]
    NoObjectStore {
        /// The data directory searched.
        dir: PathBuf,
        /// The `.db` files it holds, none with a `db_block` table.
        found: Vec<String>,
    },
    /// More than one file could be the object store: guessing could archive the wrong app's data.
    #[error(
        "several object stores in {}: {}; pass --objects-db FILE to choose one",
        dir.display(),
        candidates.join(", ")
    )]
    SeveralObjectStores {
        /// The data directory searched.
        dir: PathBuf,
        /// The files that could each be the object store.
        candidates: Vec<String>,
    },
    /// A store failed to open.
    #[error("opening {}: {source}", path.display())]
    Open {
        /// The database that failed to open.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: StoreError,
    },
}

/// Where each part of a data directory lives; each can be overridden on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDirPaths {
    /// The object store database (`db_block`): `wave.db`, `waveterm.db`, `objects.db` or another.
    pub objects_db: PathBuf,
    /// The file store database (`filestore.db`) holding each session's output.
    pub filestore_db: PathBuf,
    /// The directory archives are written to (`archives/` by default), or an object store
    /// URL (`s3://bucket/prefix`).
    pub archive_dir: PathBuf,
    /// How to reach the S3 server when `archive_dir` is an `s3://` URL.
    pub s3: S3Options,
}

impl DataDirPaths {
    /// The layout a new data directory gets under `dir`: AgentMux's (`wave.db`, `filestore.db`),
    /// plus `archives/`.
    pub fn under(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        DataDirPaths {
            objects_db: dir.join(AGENTMUX_OBJECTS_DB),
            filestore_db: dir.join(FILESTORE_DB),
            archive_dir: dir.join(ARCHIVES),
            s3: S3Options::default(),
        }
    }

    /// The layout of the existing directory `dir` (for example the app's own `db/`): its object
    /// store is whichever of `wave.db`, `waveterm.db`, `objects.db` is there, else the one `.db`
    /// file holding a `db_block` table. Reads only: databases are opened read-only, if at all.
    pub fn find(dir: impl AsRef<Path>) -> Result<(Self, Layout), DataDirError> {
        let dir = dir.as_ref();
        let (objects_db, layout) = find_objects_db(dir)?;
        Ok((
            DataDirPaths {
                objects_db,
                ..DataDirPaths::under(dir)
            },
            layout,
        ))
    }

    /// `<archive dir>/.locks`, where the per-session lock files live; for archives in an
    /// object store, `.archiver-locks` beside the object store (such locks are local to this
    /// machine: README, "Archives in an S3 bucket").
    pub fn locks_dir(&self) -> PathBuf {
        match self.archive_url() {
            Some(_) => self
                .objects_db
                .parent()
                .unwrap_or(Path::new("."))
                .join(OBJECT_STORE_LOCKS),
            None => self.archive_dir.join(LOCKS),
        }
    }

    /// The archive location as an object store URL, when it is one (`s3://...`).
    pub fn archive_url(&self) -> Option<&str> {
        self.archive_dir.to_str().filter(|s| is_object_url(s))
    }

    /// The archive directory on disk, or the bucket and prefix an `s3://` URL names. In a
    /// bucket, only archives of sessions in `objects` are this data directory's: the prefix may
    /// be shared with other machines, whose archives must never look like orphans here.
    pub fn open_archive_dir(
        &self,
        objects: &Arc<dyn ObjectStore>,
    ) -> Result<Arc<dyn ArchiveDir>, DataDirError> {
        let open_err = |source| DataDirError::Open {
            path: self.archive_dir.clone(),
            source,
        };
        Ok(match self.archive_url() {
            Some(url) => Arc::new(
                ObjectArchiveDir::s3(url, &self.s3)
                    .map_err(open_err)?
                    .owned_by(sessions_of(objects)),
            ),
            None => Arc::new(FsArchiveDir::open(&self.archive_dir).map_err(open_err)?),
        })
    }

    /// Cross-process session locks for this directory.
    pub fn locks(&self) -> SessionLocks {
        SessionLocks::files(self.locks_dir())
    }

    /// Opens the stores. With `must_exist`, both databases must already be there (the archive
    /// directory is always created when missing: a fresh store has no archives yet).
    pub fn open(&self, must_exist: bool) -> Result<Stores, DataDirError> {
        if must_exist {
            for (what, path) in [
                ("object store", &self.objects_db),
                ("file store", &self.filestore_db),
            ] {
                if !path.is_file() {
                    return Err(DataDirError::Missing {
                        what,
                        path: path.clone(),
                    });
                }
            }
        }
        let open_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DataDirError::Open { path, source }
        };
        if let Some(parent) = self
            .objects_db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| open_err(parent)(StoreError::Io(e.to_string())))?;
        }
        if let Some(parent) = self
            .filestore_db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| open_err(parent)(StoreError::Io(e.to_string())))?;
        }
        let objects = SqliteObjects::open(&self.objects_db).map_err(open_err(&self.objects_db))?;
        let files = SqliteFiles::open(&self.filestore_db).map_err(open_err(&self.filestore_db))?;
        let objects: Arc<dyn ObjectStore> = Arc::new(objects);
        let archive_dir = self.open_archive_dir(&objects)?;
        Ok(Stores {
            objects,
            files: Arc::new(files),
            archive_dir,
            clock: Arc::new(SystemClock),
        })
    }

    /// Opens existing databases for reading only (`plan`, `status`, `export`): SQLite read-only
    /// connections that neither change the journal mode nor create a table, so running next to
    /// a live app changes none of its files. Any write through these stores fails. The archive
    /// directory is ours and is created when missing (a fresh app directory has none).
    pub fn open_read_only(&self) -> Result<Stores, DataDirError> {
        for (what, path) in [
            ("object store", &self.objects_db),
            ("file store", &self.filestore_db),
        ] {
            if !path.is_file() {
                return Err(DataDirError::Missing {
                    what,
                    path: path.clone(),
                });
            }
        }
        let open_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DataDirError::Open { path, source }
        };
        let objects =
            SqliteObjects::open_read_only(&self.objects_db).map_err(open_err(&self.objects_db))?;
        let files = SqliteFiles::open_read_only(&self.filestore_db)
            .map_err(open_err(&self.filestore_db))?;
        let objects: Arc<dyn ObjectStore> = Arc::new(objects);
        let archive_dir = self.open_archive_dir(&objects)?;
        Ok(Stores {
            objects,
            files: Arc::new(files),
            archive_dir,
            clock: Arc::new(SystemClock),
        })
    }
}

/// An owner filter for a shared bucket: a session is ours when this object store has it. A
/// failed lookup says no (an archive not listed is kept, never lost).
pub fn sessions_of(objects: &Arc<dyn ObjectStore>) -> OwnerFilter {
    let objects = Arc::clone(objects);
    Arc::new(move |id: &str| objects.get(id).is_ok())
}

/// The object store in `dir`; see [`DataDirPaths::find`].
pub fn find_objects_db(dir: &Path) -> Result<(PathBuf, Layout), DataDirError> {
    if !dir.is_dir() {
        return Err(DataDirError::Missing {
            what: "data directory",
            path: dir.to_path_buf(),
        });
    }
    let known: Vec<(PathBuf, Layout)> = Layout::known()
        .into_iter()
        .map(|(name, layout)| (dir.join(name), layout))
        .filter(|(path, _)| path.is_file())
        .collect();
    match known.len() {
        1 => return Ok(known.into_iter().next().expect("one")),
        0 => {}
        _ => {
            return Err(DataDirError::SeveralObjectStores {
                dir: dir.to_path_buf(),
                candidates: known.iter().map(|(p, _)| file_name(p)).collect(),
            })
        }
    }
    let io = |e: std::io::Error| DataDirError::Open {
        path: dir.to_path_buf(),
        source: StoreError::Io(format!("listing {}: {e}", dir.display())),
    };
    let mut found = Vec::new();
    let mut candidates = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = file_name(&path);
        if !name.ends_with(".db") || name == FILESTORE_DB || !path.is_file() {
            continue;
        }
        if has_block_table(&path) {
            candidates.push(name.clone());
        }
        found.push(name);
    }
    found.sort();
    candidates.sort();
    match candidates.len() {
        1 => {
            let file_name = candidates.remove(0);
            Ok((dir.join(&file_name), Layout::Custom { file_name }))
        }
        0 => Err(DataDirError::NoObjectStore {
            dir: dir.to_path_buf(),
            found,
        }),
        _ => Err(DataDirError::SeveralObjectStores {
            dir: dir.to_path_buf(),
            candidates,
        }),
    }
}

/// Rewrites every `db_block.data` stored as TEXT as a BLOB of the same bytes, in one transaction:
/// AgentMux binds the block JSON as bytes and reads it back as bytes only, so demo data made
/// through our store (which inserts TEXT) is turned into what AgentMux itself writes. Returns the
/// number of rows changed.
pub fn store_blocks_as_blob(objects_db: &Path) -> Result<usize, DataDirError> {
    let err = |e: rusqlite::Error| DataDirError::Open {
        path: objects_db.to_path_buf(),
        source: StoreError::Io(format!("{}: {e}", objects_db.display())),
    };
    let mut conn = Connection::open(objects_db).map_err(err)?;
    let tx = conn.transaction().map_err(err)?;
    let n = tx
        .execute(
            "UPDATE db_block SET data = CAST(data AS BLOB) WHERE typeof(data) = 'text'",
            [],
        )
        .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(n)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Whether `path` is a SQLite database with a `db_block` table. Opened read-only; a file that is
/// not a database (or cannot be read) is simply not a candidate.
fn has_block_table(path: &Path) -> bool {
    let Ok(conn) = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        return false;
    };
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [BLOCK_TABLE],
        |r| r.get::<_, i64>(0),
    )
    .is_ok_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_database_is_an_error_when_it_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DataDirPaths::under(dir.path().join("nope"));
        let err = paths.open(true).err().expect("a missing store is an error");
        assert!(
            matches!(
                &err,
                DataDirError::Missing {
                    what: "object store",
                    ..
                }
            ),
            "{err}"
        );
        assert!(!dir.path().join("nope").exists(), "nothing was created");
    }

    #[test]
    fn opening_without_must_exist_creates_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DataDirPaths::under(dir.path().join("d"));
        let stores = paths.open(false).unwrap();
        assert!(paths.objects_db.is_file() && paths.filestore_db.is_file());
        assert!(paths.archive_dir.is_dir());
        assert!(stores.archive_dir.list().unwrap().is_empty());
        assert_eq!(paths.locks_dir(), dir.path().join("d/archives/.locks"));
    }
}
