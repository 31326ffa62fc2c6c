//! The budget policy's configuration: parsed, checked and completed with defaults.

use archiver_kit::decide::{level, member_bytes, positive, positive_duration, DAY_MS, MINUTE_MS};
use archiver_kit::decisions::Parallel;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use archiver_kit::decide::ConfigError;

/// 1 GiB of live output before the oldest sessions go to archive.
pub const DEFAULT_MAX_LIVE_BYTES: u64 = 1 << 30;
/// 2 GiB, the seed's archive cap.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 2 << 30;
/// 4 GiB: a restore never inflates more than this (a gzip bomb stops here).
pub const DEFAULT_MAX_RESTORE_BYTES: u64 = 4 << 30;

/// The complete configuration (every field filled in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// Live output (agent sessions' `output` files) is brought back under this many bytes.
    pub max_live_bytes: u64,
    /// A session active within this many minutes is never archived, whatever the budget says.
    pub min_idle_minutes: u64,
    /// Archives older than this many days are pruned.
    pub max_archive_age_days: u64,
    /// Then archives are pruned down to this many bytes in total.
    pub max_total_bytes: u64,
    /// gzip level 0..=9; 9 by default, since the point is saving space.
    pub level: u8,
    /// The most bytes a restore or export decompresses.
    pub max_restore_bytes: u64,
    /// Sessions with at least this many bytes to archive are compressed as parallel gzip
    /// members on the host's workers.
    pub parallel_min_bytes: u64,
    /// Uncompressed bytes per parallel member (at most 64 MiB).
    pub member_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_live_bytes: DEFAULT_MAX_LIVE_BYTES,
            min_idle_minutes: 60,
            max_archive_age_days: 90,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            level: 9,
            max_restore_bytes: DEFAULT_MAX_RESTORE_BYTES,
            parallel_min_bytes: Parallel::default().min_bytes,
            member_bytes: Parallel::default().member_bytes,
        }
    }
}

/// The config as written: unknown keys are refused (the message names them); values stay raw
/// JSON so each check can name its field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    max_live_bytes: Option<Value>,
    min_idle_minutes: Option<Value>,
    max_archive_age_days: Option<Value>,
    max_total_bytes: Option<Value>,
    level: Option<Value>,
    max_restore_bytes: Option<Value>,
    parallel_min_bytes: Option<Value>,
    member_bytes: Option<Value>,
}

impl Config {
    /// Parses config JSON text (`{}` or empty for the defaults).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let text = if text.trim().is_empty() { "{}" } else { text };
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| ConfigError(format!("config: {e}")))?;
        let d = Config::default();
        Ok(Config {
            max_live_bytes: positive("max_live_bytes", raw.max_live_bytes, d.max_live_bytes)?,
            min_idle_minutes: positive_duration(
                "min_idle_minutes",
                raw.min_idle_minutes,
                d.min_idle_minutes,
                MINUTE_MS,
            )?,
            max_archive_age_days: positive_duration(
                "max_archive_age_days",
                raw.max_archive_age_days,
                d.max_archive_age_days,
                DAY_MS,
            )?,
            max_total_bytes: positive("max_total_bytes", raw.max_total_bytes, d.max_total_bytes)?,
            level: level("level", raw.level, d.level)?,
            max_restore_bytes: positive(
                "max_restore_bytes",
                raw.max_restore_bytes,
                d.max_restore_bytes,
            )?,
            parallel_min_bytes: positive(
                "parallel_min_bytes",
                raw.parallel_min_bytes,
                d.parallel_min_bytes,
            )?,
            member_bytes: member_bytes("member_bytes", raw.member_bytes, d.member_bytes)?,
        })
    }

    /// The complete config as JSON text (what `validate-config` returns).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a config always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_gives_the_defaults_with_level_9() {
        let c = Config::parse("{}").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.level, 9);
        assert_eq!(c.max_live_bytes, 1 << 30);
        assert_eq!(Config::parse(" ").unwrap(), c);
    }

    #[test]
    fn every_field_is_kept_and_the_normalised_form_round_trips() {
        let text = r#"{"max_live_bytes":100,"min_idle_minutes":5,"max_archive_age_days":3,
                       "max_total_bytes":7,"level":1,"max_restore_bytes":9,
                       "parallel_min_bytes":3,"member_bytes":2}"#;
        let c = Config::parse(text).unwrap();
        assert_eq!(
            c,
            Config {
                max_live_bytes: 100,
                min_idle_minutes: 5,
                max_archive_age_days: 3,
                max_total_bytes: 7,
                level: 1,
                max_restore_bytes: 9,
                parallel_min_bytes: 3,
                member_bytes: 2,
            }
        );
        assert_eq!(Config::parse(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn bad_values_and_unknown_keys_are_rejected_naming_the_field() {
        for (text, field) in [
            (r#"{"max_live_bytes":0}"#, "max_live_bytes"),
            (r#"{"max_live_bytes":-5}"#, "max_live_bytes"),
            (r#"{"max_live_bytes":"1G"}"#, "max_live_bytes"),
            (r#"{"min_idle_minutes":0}"#, "min_idle_minutes"),
            (r#"{"min_idle_minutes":1.5}"#, "min_idle_minutes"),
            (
                r#"{"min_idle_minutes":999999999999999999}"#,
                "min_idle_minutes",
            ),
            (r#"{"max_archive_age_days":0}"#, "max_archive_age_days"),
            (r#"{"max_total_bytes":0}"#, "max_total_bytes"),
            (r#"{"level":10}"#, "level"),
            (r#"{"max_restore_bytes":0}"#, "max_restore_bytes"),
            (r#"{"parallel_min_bytes":0}"#, "parallel_min_bytes"),
            (r#"{"member_bytes":67108865}"#, "member_bytes"),
            // The other policy's key: a config for `inactivity` is not silently accepted.
            (r#"{"inactive_days":7}"#, "inactive_days"),
        ] {
            let e = Config::parse(text).unwrap_err().0;
            assert!(e.contains(field), "{text}: {e}");
        }
        assert!(Config::parse("[]").is_err());
    }
}
