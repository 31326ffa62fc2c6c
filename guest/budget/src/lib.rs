//! `budget`, a session-archiver policy that keeps the live file store under a byte budget.
//!
//! When the agent sessions' live output exceeds `max_live_bytes`, the least recently active
//! sessions are archived first until it fits; a session active within `min_idle_minutes`, or
//! pinned, is never archived. Archives older than `max_archive_age_days` are pruned, then the
//! oldest down to `max_total_bytes`. Archives are compressed at level 9 by default.
//!
//! Only decisions live here (`config`, `select`, `prune`), all plain Rust tested natively; the
//! operations and the component glue are the kit's.

pub mod config;
pub mod prune;
pub mod select;

use archiver_kit::bindings::exports::session_archiver::policy::policy as api;
use archiver_kit::decisions::{ArchiveInfo, Candidate, Decisions, Parallel, PrunePick, Selection};
use archiver_kit::policy::Policy;

use config::Config;

/// The policy's decisions under one configuration.
#[derive(Debug, Clone)]
pub struct Budget {
    /// The configuration in force.
    pub config: Config,
}

impl Decisions for Budget {
    fn select_all(&self, sessions: &[Candidate], now_ms: i64) -> Vec<Selection> {
        select::select_all(sessions, now_ms, &self.config)
    }
    fn needs_live_bytes(&self) -> bool {
        true
    }
    fn prune_plan(&self, archives: &[ArchiveInfo], cap: u64, now_ms: i64) -> Vec<PrunePick> {
        prune::prune_plan(archives, cap, now_ms, self.config.max_archive_age_days)
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
    fn parallel(&self) -> Parallel {
        Parallel {
            min_bytes: self.config.parallel_min_bytes,
            member_bytes: self.config.member_bytes,
        }
    }
}

impl Policy for Budget {
    fn info() -> api::PolicyInfo {
        api::PolicyInfo {
            name: "budget".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Keeps agent sessions' live output under `max_live_bytes` (default 1 GiB) by \
                          archiving the least recently active sessions first, never one active within \
                          `min_idle_minutes` (default 60) or pinned; compresses at level 9; prunes archives \
                          older than `max_archive_age_days` (default 90), then the oldest down to \
                          `max_total_bytes` (default 2 GiB), leaving a tombstone for a session's only copy."
                .into(),
        }
    }
    fn from_config(text: &str) -> Result<Self, api::Error> {
        Config::parse(text)
            .map(|config| Budget { config })
            .map_err(|e| api::Error::InvalidConfig(e.0))
    }
    fn config_json(&self) -> String {
        self.config.to_json()
    }
}

archiver_kit::export_policy!(Budget);

#[cfg(test)]
mod tests;
