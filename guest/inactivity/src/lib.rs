//! `inactivity`, the default session-archiver policy: the seed's behaviour without its data-loss
//! bugs. Agent sessions idle for `inactive_days` are archived; archives are pruned down to
//! `max_total_bytes`, backups and orphans before any session's only copy.
//!
//! This crate holds only decisions (`config`, `select`), all plain Rust tested natively; the
//! prune order is the kit's default, and the operations and the component glue are the kit's.

pub mod config;
pub mod select;

use archiver_kit::bindings::exports::session_archiver::policy::policy as api;
use archiver_kit::decisions::{Candidate, Decisions, Parallel, Selection};
use archiver_kit::policy::Policy;

use config::Config;

/// The policy's decisions under one configuration.
#[derive(Debug, Clone)]
pub struct Inactivity {
    /// The configuration in force.
    pub config: Config,
}

impl Decisions for Inactivity {
    fn select_all(&self, sessions: &[Candidate], now_ms: i64) -> Vec<Selection> {
        sessions
            .iter()
            .map(|c| select::select(&c.meta, now_ms, self.config.inactive_days))
            .collect()
    }
    // `prune_plan`: the kit's default order (backups and orphans first, only copies last).
    fn level(&self) -> u8 {
        self.config.level
    }
    fn cap(&self) -> u64 {
        self.config.max_total_bytes
    }
    fn max_restore_bytes(&self) -> u64 {
        self.config.max_restore_bytes
    }
    fn parallel(&self) -> Parallel {
        Parallel {
            min_bytes: self.config.parallel_min_bytes,
            member_bytes: self.config.member_bytes,
        }
    }
}

impl Policy for Inactivity {
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
    fn from_config(text: &str) -> Result<Self, api::Error> {
        Config::parse(text)
            .map(|config| Inactivity { config })
            .map_err(|e| api::Error::InvalidConfig(e.0))
    }
    fn config_json(&self) -> String {
        self.config.to_json()
    }
}

archiver_kit::export_policy!(Inactivity);

#[cfg(test)]
mod tests;
