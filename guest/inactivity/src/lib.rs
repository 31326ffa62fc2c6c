//! `inactivity`, the default session-archiver policy: the seed's behaviour without its data-loss
//! bugs. Agent sessions idle for `inactive_days` are archived; archives are pruned down to
//! `max_total_bytes`, backups and orphans before any session's only copy.
//!
//! This crate holds only decisions (`config`, `select`, `prune`), all plain Rust tested natively;
//! the operations are the shared ones in `archiver_kit::ops`.

pub mod config;
pub mod prune;
pub mod select;

use archiver_kit::bindings::exports::session_archiver::policy::policy::{self as api, Guest};
use archiver_kit::host::WitHost;
use archiver_kit::meta::Meta;
use archiver_kit::ops::{self, ArchiveInfo, Decisions, PrunePick, Selection};

use config::Config;

/// The policy's decisions under one configuration.
#[derive(Debug, Clone)]
pub struct Inactivity {
    /// The configuration in force.
    pub config: Config,
}

impl Inactivity {
    /// Parses the config; a bad one is `invalid-config` naming the field.
    pub fn from_config(text: &str) -> Result<Self, api::Error> {
        Config::parse(text)
            .map(|config| Inactivity { config })
            .map_err(|e| api::Error::InvalidConfig(e.0))
    }
}

impl Decisions for Inactivity {
    fn select(&self, meta: &Meta, now_ms: i64) -> Selection {
        select::select(meta, now_ms, self.config.inactive_days)
    }
    fn prune_plan(&self, archives: &[ArchiveInfo], cap: u64) -> Vec<PrunePick> {
        prune::prune_plan(archives, cap)
    }
    fn level(&self) -> u8 {
        self.config.level
    }
    fn cap(&self) -> u64 {
        self.config.max_total_bytes
    }
    fn max_restore_bytes(&self) -> u64 {
        self.config.max_restore_bytes
    }
}

/// The component's exports.
pub struct Component;

impl Guest for Component {
    fn info() -> api::PolicyInfo {
        api::PolicyInfo {
            name: "inactivity".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Archives agent sessions idle for `inactive_days` (default 7) to gzip files, verified \
                          before the live output is freed, and prunes archives down to `max_total_bytes` \
                          (default 2 GiB): backups of restored sessions and orphans first, a session's only \
                          copy last (leaving a tombstone), pinned sessions never."
                .into(),
        }
    }

    fn validate_config(config: String) -> Result<String, api::Error> {
        Ok(Inactivity::from_config(&config)?.config.to_json())
    }

    fn archive(config: String, id: String) -> Result<api::ArchiveOutcome, api::Error> {
        let p = Inactivity::from_config(&config)?;
        ops::archive(&WitHost, &id, p.level())
    }

    fn restore(config: String, id: String) -> Result<api::RestoreOutcome, api::Error> {
        let p = Inactivity::from_config(&config)?;
        ops::restore(&WitHost, &id, p.max_restore_bytes())
    }

    fn export(config: String, id: String) -> Result<api::ExportOutcome, api::Error> {
        let p = Inactivity::from_config(&config)?;
        ops::export(&WitHost, &id, p.max_restore_bytes())
    }

    fn plan(config: String) -> Result<api::SweepPlan, api::Error> {
        ops::plan(&WitHost, &Inactivity::from_config(&config)?)
    }

    fn sweep(config: String) -> Result<api::SweepReport, api::Error> {
        ops::sweep(&WitHost, &Inactivity::from_config(&config)?)
    }

    fn prune(config: String) -> Result<api::PruneReport, api::Error> {
        ops::prune(&WitHost, &Inactivity::from_config(&config)?)
    }

    fn recover(config: String, id: Option<String>) -> Result<api::RecoverReport, api::Error> {
        Inactivity::from_config(&config)?;
        ops::recover(&WitHost, id.as_deref())
    }
}

// Only in wasm: the export names (`session-archiver:policy/...`) do not link into a native cdylib.
#[cfg(target_arch = "wasm32")]
archiver_kit::bindings::export!(Component);

#[cfg(test)]
mod tests;
