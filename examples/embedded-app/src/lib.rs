//! A small app that embeds session-archiver the way a live AgentMux or Wave must: the archiver
//! is loaded into the app's process and works on the app's own stores, so the app's file cache
//! stays coherent while sessions are archived, restored and swept under it.
//!
//! - [`files::AppFiles`]: the app's file store with a cache like AgentMux's (stat from the
//!   cache, appends at the cached size, parts then size in separate statements, a background
//!   write-back flush like Wave's), and the [`FileStore`](session_archiver::store::FileStore)
//!   the archiver is given, implemented on top of that cache.
//! - [`app::App`]: the app, its stores and the embedded [`Archiver`](session_archiver::Archiver)
//!   built with [`Archiver::builder`](session_archiver::Archiver::builder), with async methods
//!   that run the blocking calls on tokio's blocking pool.

pub mod app;
pub mod files;

pub use app::{App, AppClock, AppConfig, AppError};
pub use files::AppFiles;

#[cfg(test)]
mod tests;
