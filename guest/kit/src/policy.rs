//! The component glue every policy would otherwise write by hand: a policy implements
//! [`Policy`] (its decisions, how it reads its config, who it is) and calls
//! [`export_policy!`](crate::export_policy); each WIT export then parses the config and runs the
//! shared operation from [`crate::ops`] against the real host imports.

use crate::bindings::exports::session_archiver::policy::policy as api;
use crate::decisions::Decisions;
use crate::host::WitHost;
use crate::ops::{self, Error};

/// A complete policy: its [`Decisions`] under one parsed configuration.
pub trait Policy: Decisions + Sized {
    /// Who the policy is (`archiver policy info`).
    fn info() -> api::PolicyInfo;
    /// Parses and checks config JSON text (`{}` or empty: the defaults). A bad config is
    /// [`Error::InvalidConfig`] naming the field.
    fn from_config(text: &str) -> Result<Self, Error>;
    /// The config in force, every default filled in, as JSON text.
    fn config_json(&self) -> String;
}

/// `validate-config`.
pub fn validate_config<P: Policy>(config: &str) -> Result<String, Error> {
    Ok(P::from_config(config)?.config_json())
}

/// `archive`.
pub fn archive<P: Policy>(config: &str, id: &str) -> Result<api::ArchiveOutcome, Error> {
    let p = P::from_config(config)?;
    ops::archive_with(&WitHost, id, p.level(), p.parallel())
}

/// `compress-member`.
pub fn compress_member<P: Policy>(
    config: &str,
    id: &str,
    offset: u64,
    length: u64,
) -> Result<api::Member, Error> {
    let p = P::from_config(config)?;
    ops::compress_member(&WitHost, id, offset, length, p.level())
}

/// `restore`.
pub fn restore<P: Policy>(config: &str, id: &str) -> Result<api::RestoreOutcome, Error> {
    let p = P::from_config(config)?;
    ops::restore(&WitHost, id, p.max_restore_bytes())
}

/// `export`.
pub fn export<P: Policy>(config: &str, id: &str) -> Result<api::ExportOutcome, Error> {
    let p = P::from_config(config)?;
    ops::export(&WitHost, id, p.max_restore_bytes())
}

/// `verify-member`: the config is checked so a bad one fails every call the same way.
pub fn verify_member<P: Policy>(
    config: &str,
    member: &[u8],
    raw_len: u64,
    crc32: u32,
) -> Result<(), Error> {
    P::from_config(config)?;
    ops::verify_member(member, raw_len, crc32)
}

/// `inflate-member`: the config is checked so a bad one fails every call the same way.
pub fn inflate_member<P: Policy>(
    config: &str,
    member: &[u8],
    raw_len: u64,
) -> Result<api::Inflated, Error> {
    P::from_config(config)?;
    ops::inflate_member(member, raw_len)
}

/// `plan`.
pub fn plan<P: Policy>(config: &str, scope: api::PlanScope) -> Result<api::SweepPlan, Error> {
    ops::plan(&WitHost, &P::from_config(config)?, scope)
}

/// `prune`.
pub fn prune<P: Policy>(config: &str) -> Result<api::PruneReport, Error> {
    ops::prune(&WitHost, &P::from_config(config)?)
}

/// `recover`: the config is checked even though recovery decides nothing, so a bad config
/// fails every call the same way.
pub fn recover<P: Policy>(config: &str, id: &str) -> Result<api::RecoverReport, Error> {
    P::from_config(config)?;
    ops::recover(&WitHost, id)
}

/// Defines `pub struct Component` implementing the WIT `policy` exports with the shared
/// operations for the [`Policy`] type given, and (on wasm only) exports it:
///
/// ```ignore
/// archiver_kit::export_policy!(MyPolicy);
/// ```
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        /// The component's exports: every one parses the config, then runs the kit's operation.
        pub struct Component;

        impl $crate::bindings::exports::session_archiver::policy::policy::Guest for Component {
            fn info() -> $crate::bindings::exports::session_archiver::policy::policy::PolicyInfo {
                <$policy as $crate::policy::Policy>::info()
            }
            fn validate_config(config: String) -> Result<String, $crate::ops::Error> {
                $crate::policy::validate_config::<$policy>(&config)
            }
            fn archive(
                config: String,
                id: String,
            ) -> Result<
                $crate::bindings::exports::session_archiver::policy::policy::ArchiveOutcome,
                $crate::ops::Error,
            > {
                $crate::policy::archive::<$policy>(&config, &id)
            }
            fn restore(
                config: String,
                id: String,
            ) -> Result<
                $crate::bindings::exports::session_archiver::policy::policy::RestoreOutcome,
                $crate::ops::Error,
            > {
                $crate::policy::restore::<$policy>(&config, &id)
            }
            fn export(
                config: String,
                id: String,
            ) -> Result<
                $crate::bindings::exports::session_archiver::policy::policy::ExportOutcome,
                $crate::ops::Error,
            > {
                $crate::policy::export::<$policy>(&config, &id)
            }
            fn compress_member(
                config: String,
                id: String,
                offset: u64,
                length: u64,
            ) -> Result<
                $crate::bindings::exports::session_archiver::policy::policy::Member,
                $crate::ops::Error,
            > {
                $crate::policy::compress_member::<$policy>(&config, &id, offset, length)
            }
            fn verify_member(
                config: String,
                member: Vec<u8>,
                raw_len: u64,
                crc32: u32,
            ) -> Result<(), $crate::ops::Error> {
                $crate::policy::verify_member::<$policy>(&config, &member, raw_len, crc32)
            }
            fn inflate_member(
                config: String,
                member: Vec<u8>,
                raw_len: u64,
            ) -> Result<
                $crate::bindings::exports::session_archiver::policy::policy::Inflated,
                $crate::ops::Error,
            > {
                $crate::policy::inflate_member::<$policy>(&config, &member, raw_len)
            }
            fn plan(
                config: String,
                scope: $crate::bindings::exports::session_archiver::policy::policy::PlanScope,
            ) -> Result<
                $crate::bindings::exports::session_archiver::policy::policy::SweepPlan,
                $crate::ops::Error,
            > {
                $crate::policy::plan::<$policy>(&config, scope)
            }
            fn prune(
                config: String,
            ) -> Result<
                $crate::bindings::exports::session_archiver::policy::policy::PruneReport,
                $crate::ops::Error,
            > {
                $crate::policy::prune::<$policy>(&config)
            }
            fn recover(
                config: String,
                id: String,
            ) -> Result<
                $crate::bindings::exports::session_archiver::policy::policy::RecoverReport,
                $crate::ops::Error,
            > {
                $crate::policy::recover::<$policy>(&config, &id)
            }
        }

        // Only in wasm: the export names (`session-archiver:policy/...`) do not link into a
        // native library.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export!(Component);
    };
}
