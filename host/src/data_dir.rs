//! A data directory in the app's layout (`objects.db`, `filestore.db`, `archives/`), opened as
//! [`Stores`] plus the cross-process session locks that go with it.
//!
//! The CLI and tests use this so that every process working on one directory agrees on where the
//! databases, the archives and the lock files are.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::archive_dir::fs::FsArchiveDir;
use crate::host::Stores;
use crate::locks::SessionLocks;
use crate::store::sqlite_files::SqliteFiles;
use crate::store::sqlite_objects::SqliteObjects;
use crate::store::{StoreError, SystemClock};

/// The object store's file name inside a data directory.
pub const OBJECTS_DB: &str = "objects.db";
/// The file store's file name inside a data directory.
pub const FILESTORE_DB: &str = "filestore.db";
/// The archive directory's name inside a data directory.
pub const ARCHIVES: &str = "archives";
/// The lock directory's name inside the archive directory (hidden, so never listed as an archive).
pub const LOCKS: &str = ".locks";

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// A database that must already exist does not (a typo in `--data-dir` should not silently
    /// create an empty store).
    #[error("{what} {} does not exist (create demo data with `archiver demo`, or pass --data-dir)", path.display())]
    Missing { what: &'static str, path: PathBuf },
    /// A store failed to open.
    #[error("opening {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
}

/// Where each part of a data directory lives; each can be overridden on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDirPaths {
    pub objects_db: PathBuf,
    pub filestore_db: PathBuf,
    pub archive_dir: PathBuf,
}

impl DataDirPaths {
    /// The standard layout under `dir`.
    pub fn under(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        DataDirPaths {
            objects_db: dir.join(OBJECTS_DB),
            filestore_db: dir.join(FILESTORE_DB),
            archive_dir: dir.join(ARCHIVES),
        }
    }

    /// `<archive dir>/.locks`, where the per-session lock files live.
    pub fn locks_dir(&self) -> PathBuf {
        self.archive_dir.join(LOCKS)
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
        let archive_dir =
            FsArchiveDir::open(&self.archive_dir).map_err(open_err(&self.archive_dir))?;
        Ok(Stores {
            objects: Arc::new(objects),
            files: Arc::new(files),
            archive_dir: Arc::new(archive_dir),
            clock: Arc::new(SystemClock),
        })
    }
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
