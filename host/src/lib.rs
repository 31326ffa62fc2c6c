pub mod placeholder {}
pub mod archive_dir;
pub mod demo;
pub mod store;
pub mod archiver;
pub mod bindings;
pub mod data_dir;
pub mod error;
pub mod host;
pub mod locks;
pub mod policy;
pub mod runtime;
