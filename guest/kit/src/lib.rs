//! The shared guest library of session-archiver policies.
//!
//! Everything that is not a *decision* lives here so that every policy reuses it: the one set of
//! WIT bindings, gzip framing on `miniz_oxide`, the streaming line counter, typed meta access, chunked
//! copies over the host imports, and the archive/restore/export/recover/prune/plan operations
//! ([`ops`]). A policy crate supplies only its [`decisions::Decisions`] and a
//! [`policy::Policy`] impl, and calls [`export_policy!`].

pub mod decide;
pub mod decisions;
#[cfg(any(test, feature = "fake-host"))]
pub mod fake;
pub mod gzip;
pub mod host;
pub mod lines;
pub mod meta;
pub mod ops;
pub mod policy;

/// The one `wit_bindgen::generate!` of the `archive-policy` world, shared by every policy crate so
/// they all speak the same generated types.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "archive-policy",
        pub_export_macro: true,
        default_bindings_module: "archiver_kit::bindings",
        additional_derives: [PartialEq],
    });
}
