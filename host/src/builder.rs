//! [`ArchiverBuilder`]: how an app that embeds the archiver (and the CLI) builds an [`Archiver`].
//!
//! A running app must not have its files changed by another process (its caches would go stale),
//! so the supported way to archive under a live app is to load this library into the app and
//! hand it the app's own stores as trait objects: every conditional delete and rename then goes
//! through the app's code, under the app's lock, and updates the app's cache. What such a store
//! must guarantee is written on [`ObjectStore`] and [`FileStore`].
//!
//! ```no_run
//! # fn app_stores() -> (std::sync::Arc<dyn session_archiver::store::ObjectStore>,
//! #                     std::sync::Arc<dyn session_archiver::store::FileStore>) { unimplemented!() }
//! use session_archiver::Archiver;
//!
//! let (objects, files) = app_stores();
//! let archiver = Archiver::builder()
//!     .objects(objects)
//!     .files(files)
//!     .archive_dir_path("/home/me/.local/share/app/db/archives")
//!     .policy_file("/opt/app/policies/inactivity.wasm")
//!     .config(r#"{"inactive_days": 14}"#)
//!     .build()?;
//! let summary = archiver.sweep(|_| {})?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::archive_dir::fs::FsArchiveDir;
use crate::archive_dir::object::{is_object_url, ObjectArchiveDir, S3Options};
use crate::archive_dir::ArchiveDir;
use crate::archiver::{Archiver, ArchiverOptions};
use crate::data_dir::{sessions_of, LOCKS};
use crate::error::ArchiverError;
use crate::host::Stores;
use crate::locks::SessionLocks;
use crate::policy::LoadedPolicy;
use crate::runtime::{CacheSetting, Limits, Runtime, RuntimeOptions};
use crate::store::{Clock, FileStore, ObjectStore, StoreError, SystemClock};

/// Why [`ArchiverBuilder::build`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A required part was never given (the object store, the file store, the archive
    /// directory or the policy).
    #[error("the archiver needs {0}: call ArchiverBuilder::{1}")]
    Missing(&'static str, &'static str),
    /// The archive directory could not be opened or created.
    #[error("opening the archive directory {}: {source}", path.display())]
    ArchiveDir {
        /// The directory that was given.
        path: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: StoreError,
    },
    /// The runtime could not start, the policy did not load, or it refused the config.
    #[error(transparent)]
    Archiver(#[from] ArchiverError),
}

/// Where the archive directory comes from.
enum ArchiveDirSource {
    Path(PathBuf),
    Dir(Arc<dyn ArchiveDir>),
}

/// Where the policy comes from.
enum PolicySource {
    File(PathBuf),
    Bytes { bytes: Vec<u8>, label: String },
    Loaded(Box<LoadedPolicy>),
}

/// Builds an [`Archiver`] from the app's stores, an archive directory, a policy and its config.
///
/// Required: [`objects`](Self::objects) and [`files`](Self::files) (or [`stores`](Self::stores)),
/// an archive directory ([`archive_dir_path`](Self::archive_dir_path) or
/// [`archive_dir`](Self::archive_dir)) and a policy ([`policy_file`](Self::policy_file),
/// [`policy_bytes`](Self::policy_bytes) or [`policy`](Self::policy)). Everything else has a
/// default: config `{}`, [`Limits::default`], the default compile cache, the system clock, one
/// sweep worker per core, and session locks as lock files in `<archive dir>/.locks` when the
/// directory is given as a path (so the CLI and the app exclude each other), else in-process.
#[must_use]
pub struct ArchiverBuilder {
    objects: Option<Arc<dyn ObjectStore>>,
    files: Option<Arc<dyn FileStore>>,
    archive_dir: Option<ArchiveDirSource>,
    clock: Option<Arc<dyn Clock>>,
    policy: Option<PolicySource>,
    config: String,
    runtime: Option<Arc<Runtime>>,
    limits: Limits,
    cache: CacheSetting,
    workers: Option<usize>,
    locks: Option<SessionLocks>,
}

impl Default for ArchiverBuilder {
    fn default() -> Self {
        ArchiverBuilder {
            objects: None,
            files: None,
            archive_dir: None,
            clock: None,
            policy: None,
            config: "{}".into(),
            runtime: None,
            limits: Limits::default(),
            cache: CacheSetting::Default,
            workers: None,
            locks: None,
        }
    }
}

impl Archiver {
    /// Starts an [`ArchiverBuilder`].
    pub fn builder() -> ArchiverBuilder {
        ArchiverBuilder::default()
    }
}

impl ArchiverBuilder {
    /// A builder with nothing set; same as [`Archiver::builder`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The app's object store (sessions and their meta). See [`ObjectStore`] for its contract.
    pub fn objects(mut self, objects: Arc<dyn ObjectStore>) -> Self {
        self.objects = Some(objects);
        self
    }

    /// The app's file store (session output). See [`FileStore`] for its contract.
    pub fn files(mut self, files: Arc<dyn FileStore>) -> Self {
        self.files = Some(files);
        self
    }

    /// All four backends at once (objects, files, archive directory, clock), e.g. from
    /// [`DataDirPaths::open`](crate::data_dir::DataDirPaths::open).
    pub fn stores(mut self, stores: Stores) -> Self {
        self.objects = Some(stores.objects);
        self.files = Some(stores.files);
        self.archive_dir = Some(ArchiveDirSource::Dir(stores.archive_dir));
        self.clock = Some(stores.clock);
        self
    }

    /// The archive directory on disk, opened (and created when missing) at build time; an
    /// `s3://bucket/prefix` URL puts archives in that bucket instead (reached as the `AWS_*`
    /// environment variables say; session locks then default to in-process).
    pub fn archive_dir_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.archive_dir = Some(ArchiveDirSource::Path(path.into()));
        self
    }

    /// An archive directory of the app's own (or [`MemoryArchiveDir`](crate::archive_dir::memory::MemoryArchiveDir)).
    pub fn archive_dir(mut self, dir: Arc<dyn ArchiveDir>) -> Self {
        self.archive_dir = Some(ArchiveDirSource::Dir(dir));
        self
    }

    /// The clock policies read "now" from (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The policy component at `path`, loaded at build time.
    pub fn policy_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.policy = Some(PolicySource::File(path.into()));
        self
    }

    /// The policy component's bytes (e.g. `include_bytes!`); `label` names it in errors.
    pub fn policy_bytes(mut self, bytes: impl Into<Vec<u8>>, label: impl Into<String>) -> Self {
        self.policy = Some(PolicySource::Bytes {
            bytes: bytes.into(),
            label: label.into(),
        });
        self
    }

    /// A policy already loaded by the [`Runtime`] given to [`runtime`](Self::runtime).
    pub fn policy(mut self, policy: LoadedPolicy) -> Self {
        self.policy = Some(PolicySource::Loaded(Box::new(policy)));
        self
    }

    /// The policy's configuration, JSON text (default `{}`: the policy's defaults). The policy
    /// checks it at build time.
    pub fn config(mut self, json: impl Into<String>) -> Self {
        self.config = json.into();
        self
    }

    /// Sandbox limits (memory cap, deadline, stall) of every policy call. Ignored when a
    /// [`runtime`](Self::runtime) is given: the runtime carries its own.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Where compiled policies are cached. Ignored when a [`runtime`](Self::runtime) is given.
    pub fn cache(mut self, cache: CacheSetting) -> Self {
        self.cache = cache;
        self
    }

    /// Shares an existing runtime (one engine and epoch thread for several archivers).
    pub fn runtime(mut self, runtime: Arc<Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Parallel archive workers in a sweep, shared with large sessions' parallel gzip members
    /// (default: the machine's available parallelism).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Per-session exclusion (see [`SessionLocks`]).
    pub fn locks(mut self, locks: SessionLocks) -> Self {
        self.locks = Some(locks);
        self
    }

    /// Opens the archive directory, starts (or shares) the runtime, loads the policy, checks
    /// the config with it, and returns the archiver.
    pub fn build(self) -> Result<Archiver, BuildError> {
        let objects = self
            .objects
            .ok_or(BuildError::Missing("an object store", "objects"))?;
        let files = self
            .files
            .ok_or(BuildError::Missing("a file store", "files"))?;
        let policy = self
            .policy
            .ok_or(BuildError::Missing("a policy", "policy_file"))?;
        let (archive_dir, default_locks): (Arc<dyn ArchiveDir>, SessionLocks) = match self
            .archive_dir
        {
            None => {
                return Err(BuildError::Missing(
                    "an archive directory",
                    "archive_dir_path",
                ))
            }
            Some(ArchiveDirSource::Path(path)) => {
                match path.to_str().filter(|p| is_object_url(p)) {
                    // Object store locks are the app's to give (`locks`): there is no shared
                    // directory to keep lock files in.
                    Some(url) => {
                        let dir = ObjectArchiveDir::s3(url, &S3Options::default())
                            .map_err(|source| BuildError::ArchiveDir {
                                path: path.clone(),
                                source,
                            })?
                            .owned_by(sessions_of(&objects));
                        (Arc::new(dir), SessionLocks::in_process())
                    }
                    None => {
                        let dir =
                            FsArchiveDir::open(&path).map_err(|source| BuildError::ArchiveDir {
                                path: path.clone(),
                                source,
                            })?;
                        (Arc::new(dir), SessionLocks::files(path.join(LOCKS)))
                    }
                }
            }
            Some(ArchiveDirSource::Dir(dir)) => (dir, SessionLocks::in_process()),
        };
        let runtime = match self.runtime {
            Some(r) => r,
            None => Arc::new(Runtime::new(RuntimeOptions {
                limits: self.limits,
                cache: self.cache,
            })?),
        };
        let policy = match policy {
            PolicySource::File(path) => runtime.load_file(Path::new(&path))?,
            PolicySource::Bytes { bytes, label } => runtime.load_bytes(&bytes, &label)?,
            PolicySource::Loaded(p) => *p,
        };
        let stores = Stores {
            objects,
            files,
            archive_dir,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
        };
        let options = ArchiverOptions {
            config: self.config,
            workers: self.workers,
            locks: self.locks.unwrap_or(default_locks),
        };
        Ok(Archiver::new(stores, runtime, policy, options)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive_dir::memory::MemoryArchiveDir;
    use crate::store::memory::{MemoryFiles, MemoryObjects};

    fn memory_stores() -> (Arc<dyn ObjectStore>, Arc<dyn FileStore>) {
        (Arc::new(MemoryObjects::new()), Arc::new(MemoryFiles::new()))
    }

    #[test]
    fn a_builder_without_stores_names_what_is_missing() {
        let err = Archiver::builder()
            .policy_bytes(b"\0asm".to_vec(), "p")
            .build()
            .err()
            .expect("no stores is an error");
        assert!(
            matches!(err, BuildError::Missing("an object store", "objects")),
            "{err}"
        );
        let (objects, files) = memory_stores();
        let err = Archiver::builder()
            .objects(objects)
            .files(files)
            .policy_bytes(b"\0asm".to_vec(), "p")
            .build()
            .err()
            .expect("no archive directory is an error");
        assert!(
            err.to_string().contains("archive_dir_path"),
            "the message names the call: {err}"
        );
    }

    #[test]
    fn a_builder_with_bytes_that_are_not_a_policy_fails_to_load_naming_the_label() {
        let (objects, files) = memory_stores();
        let err = Archiver::builder()
            .objects(objects)
            .files(files)
            .archive_dir(Arc::new(MemoryArchiveDir::new()))
            .cache(CacheSetting::Disabled)
            .policy_bytes(b"not wasm".to_vec(), "app-bundled policy")
            .build()
            .err()
            .expect("garbage is not a policy");
        assert!(
            matches!(&err, BuildError::Archiver(ArchiverError::Load { label, .. }) if label == "app-bundled policy"),
            "{err}"
        );
    }
}
