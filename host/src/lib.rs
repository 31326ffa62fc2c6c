//! session-archiver's host: the stores a policy works on (SQLite and in-memory), the archive
//! directory capability, the wasmtime runtime that runs policies, and the [`archiver::Archiver`]
//! facade the `archiver` command and the tests use.

pub mod archive_dir;
pub mod archiver;
pub mod bindings;
pub mod compile_cache;
pub mod data_dir;
pub mod demo;
pub mod error;
pub mod host;
pub mod locks;
pub mod policy;
pub mod runtime;
pub mod store;
