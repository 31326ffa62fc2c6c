//! A minimal session-archiver policy, meant to be copied: archive agent sessions idle for at
//! least `idle_hours` (default 24), prune the oldest archives over `max_total_bytes`.
//!
//! A policy is only its decisions. The kit does the rest: the archive/restore/export/sweep
//! operations, the safety rules (verify before delete, conditional delete, intents, tombstones),
//! and the component exports (`export_policy!`). See docs/writing-a-policy.md.

use archiver_kit::bindings::exports::session_archiver::policy::policy as api;
use archiver_kit::decide::{self, eligible, skip, HOUR_MS};
use archiver_kit::decisions::{Candidate, Decisions, Selection};
use archiver_kit::meta::Meta;
use archiver_kit::policy::Policy;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The configuration, every field filled in (what `validate-config` returns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// Sessions idle this many hours are archived.
    pub idle_hours: u64,
    /// Archives are pruned down to this many bytes in total.
    pub max_total_bytes: u64,
}

/// The config as written; unknown keys are refused, naming them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    idle_hours: Option<Value>,
    max_total_bytes: Option<Value>,
}

/// The policy under one configuration.
#[derive(Debug, Clone)]
pub struct Template {
    /// The configuration in force.
    pub config: Config,
}

impl Template {
    /// Decides for one session on its own.
    fn select(&self, meta: &Meta, now_ms: i64) -> Selection {
        // The kit's rules first (agent sessions only, pins, archived, interrupted operations...).
        let last = match eligible(meta) {
            Ok(e) => e.last_activity_ms,
            Err(selection) => return selection,
        };
        let idle_h = now_ms.saturating_sub(last) / HOUR_MS;
        if idle_h >= self.config.idle_hours as i64 {
            Selection::Archive {
                reason: format!("idle {idle_h} h >= {} h", self.config.idle_hours),
            }
        } else {
            skip("recent", format!("idle {idle_h} h"), true)
        }
    }
}

impl Decisions for Template {
    fn select_all(&self, sessions: &[Candidate], now_ms: i64) -> Vec<Selection> {
        sessions
            .iter()
            .map(|c| self.select(&c.meta, now_ms))
            .collect()
    }
    // `prune_plan` is the kit's default: backups and orphans first, a session's only copy last.
    fn level(&self) -> u8 {
        6
    }
    fn cap(&self) -> u64 {
        self.config.max_total_bytes
    }
    fn max_restore_bytes(&self) -> u64 {
        4 << 30
    }
}

impl Policy for Template {
    fn info() -> api::PolicyInfo {
        api::PolicyInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
        }
    }
    fn from_config(text: &str) -> Result<Self, api::Error> {
        let bad = |e: decide::ConfigError| api::Error::InvalidConfig(e.0);
        let text = if text.trim().is_empty() { "{}" } else { text };
        let raw: RawConfig = serde_json::from_str(text)
            .map_err(|e| api::Error::InvalidConfig(format!("config: {e}")))?;
        let config = Config {
            idle_hours: decide::positive_duration("idle_hours", raw.idle_hours, 24, HOUR_MS)
                .map_err(bad)?,
            max_total_bytes: decide::positive("max_total_bytes", raw.max_total_bytes, 2 << 30)
                .map_err(bad)?,
        };
        Ok(Template { config })
    }
    fn config_json(&self) -> String {
        serde_json::to_string(&self.config).expect("a config always serializes")
    }
}

archiver_kit::export_policy!(Template);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(config: &str) -> Template {
        Template::from_config(config).unwrap()
    }

    #[test]
    fn a_session_idle_past_the_limit_is_archived_and_a_recent_one_is_not() {
        let now = 100 * 24 * HOUR_MS;
        let meta = |idle_h: i64| {
            let m = json!({"view": "agent", "session:line_count": 1,
                           "session:last_activity_ms": now - idle_h * HOUR_MS});
            Meta::parse(&m.to_string()).unwrap()
        };
        let p = policy(r#"{"idle_hours": 5}"#);
        assert!(matches!(p.select(&meta(5), now), Selection::Archive { .. }));
        assert!(matches!(p.select(&meta(4), now), Selection::Skip { .. }));
    }

    #[test]
    fn a_bad_config_is_rejected_naming_the_field() {
        for (text, field) in [
            (r#"{"idle_hours":0}"#, "idle_hours"),
            (r#"{"idle":1}"#, "idle"),
        ] {
            let Err(api::Error::InvalidConfig(m)) = Template::from_config(text) else {
                panic!("{text} accepted")
            };
            assert!(m.contains(field), "{m}");
        }
        assert_eq!(policy("{}").config.idle_hours, 24);
    }
}
