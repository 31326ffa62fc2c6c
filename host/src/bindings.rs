//! The one `bindgen!` for the `archive-policy` world.
//!
//! Every import is `trappable`: a host function returns a WIT error for expected failures and a
//! trap (`wasmtime::Error`) for misuse (a bad resource handle) or a backend that demands a halt.
//! The WIT `error` variants of the imported interfaces map to [`HostError`], which the host
//! converts per interface in `convert_error`. Generated code is reached through this module's
//! paths (`bindings::session_archiver::policy::objects`, …), never glob re-exported.

// The bindgen! output is generated glue without docs of its own (the WIT documents the
// contract); an `allow` on the macro call itself does not reach the items it expands to.
#![allow(missing_docs)]

use crate::host::HostError;

wasmtime::component::bindgen!({
    world: "archive-policy",
    path: "../wit",
    imports: { default: trappable },
    trappable_error_type: {
        "session-archiver:policy/objects.error" => HostError,
        "session-archiver:policy/files.error" => HostError,
        "session-archiver:policy/archive-dir.error" => HostError,
        "session-archiver:policy/export-sink.error" => HostError,
    },
    with: {
        "session-archiver:policy/archive-dir.writer": crate::host::archive_dir::WriterResource,
        "session-archiver:policy/archive-dir.reader": crate::host::archive_dir::ReaderResource,
        "session-archiver:policy/members.inflater": crate::host::members::InflaterResource,
    },
    additional_derives: [PartialEq, serde::Serialize],
});

/// The policy's exported interface (`session-archiver:policy/policy`), re-exported by name for the
/// host API's result types.
pub use exports::session_archiver::policy::policy as guest;

/// The package and version the host implements, for load-time diagnostics.
pub const WIT_PACKAGE: &str = "session-archiver:policy";
/// The WIT version of [`WIT_PACKAGE`] the host implements.
pub const WIT_VERSION: &str = "0.2.0";
