//! session-archiver's host: the stores a policy works on (SQLite and in-memory), the archive
//! directory capability, the wasmtime runtime that runs policies, and the [`archiver::Archiver`]
//! facade the `archiver` command and the tests use.

pub mod archive_dir;
pub mod archiver;
pub mod bindings;
pub mod builder;
pub mod cap;
pub mod data_dir;
pub mod error;
pub mod host;
pub mod live_app;
pub mod locks;
pub mod policy;
pub mod runtime;
pub mod store;
pub mod sweep;

pub use archiver::Archiver;
pub use builder::ArchiverBuilder;
