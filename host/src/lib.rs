//! session-archiver's host: the stores a policy works on (SQLite and in-memory), the archive
//! directory capability, the wasmtime runtime that runs policies, and the [`Archiver`] facade the
//! `archiver` command (package `session-archiver-cli`), an embedding app and the tests use.
//!
//! An embedder needs the root re-exports below: open or implement the stores
//! ([`ObjectStore`], [`FileStore`], [`ArchiveDir`], a [`Clock`]), put them in [`Stores`], load a
//! policy component with a [`Runtime`], and run operations through an [`Archiver`]. The modules
//! hold the rest (the SQLite and in-memory backends, the data-directory layout, the WIT host
//! implementations and bindings).

#![warn(missing_docs)]

pub mod archive_dir;
pub mod archiver;
pub mod bindings;
pub mod builder;
pub mod cap;
pub mod compile_cache;
pub mod data_dir;
pub mod error;
pub mod host;
pub mod live_app;
pub mod locks;
pub mod policy;
pub mod runtime;
pub mod store;
pub mod sweep;

/// The capability-scoped directory archives are written to (filesystem and in-memory backends
/// in [`archive_dir`]).
pub use archive_dir::ArchiveDir;
/// The facade: archive, restore, export, plan, sweep and swap the policy on one set of stores.
pub use archiver::{Archiver, ArchiverOptions};
/// Builds an [`Archiver`] over an app's own stores (the embedding entry point).
pub use builder::{ArchiverBuilder, BuildError};
/// What the facade returns on failure, and the typed error a policy returned.
pub use error::{ArchiverError, PolicyError};
/// The backends a policy works on, handed to an [`Archiver`].
pub use host::Stores;
/// Per-session exclusion, in one process or across processes.
pub use locks::SessionLocks;
/// A policy component loaded (and compiled) by a [`Runtime`].
pub use policy::LoadedPolicy;
/// The wasmtime engine that loads and runs policies, with its limits and compile cache.
pub use runtime::{CacheSetting, Limits, Runtime, RuntimeOptions};
/// The store traits an app implements over its own data (SQLite and in-memory backends in
/// [`store`]).
pub use store::{Clock, FileStore, Meta, ObjectStore, StoreError, SystemClock};
/// The sweep's report: what a host-driven sweep did.
pub use sweep::{SweepFailure, SweepProgress, SweepSummary};
