pub mod placeholder {}
pub mod archive_dir;
pub mod store;
