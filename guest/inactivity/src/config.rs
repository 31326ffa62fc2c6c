//! The policy's configuration: parsed, checked and completed with defaults.

use archiver_kit::decide::{level, member_bytes, positive, positive_duration, DAY_MS};
use archiver_kit::decisions::Parallel;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use archiver_kit::decide::ConfigError;

/// 2 GiB, the seed's archive cap.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 2 << 30;
/// 4 GiB: a restore never inflates more than this (a gzip bomb stops here).
pub const DEFAULT_MAX_RESTORE_BYTES: u64 = 4 << 30;

/// The complete configuration (every field filled in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// Sessions idle this many days are archived (the seed's 7).
    pub inactive_days: u64,
    /// Archives are pruned down to this many bytes in total.
    pub max_total_bytes: u64,
    /// gzip level 0..=9.
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
            inactive_days: 7,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            level: 6,
            max_restore_bytes: DEFAULT_MAX_RESTORE_BYTES,
            parallel_min_bytes: Parallel::default().min_bytes,
            member_bytes: Parallel::default().member_bytes,
        }
    }
}

/// The config as written: unknown keys are refused by serde (the message names them); values are
/// kept as raw JSON so each range check can name its field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    inactive_days: Option<Value>,
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
            inactive_days: positive_duration(
                "inactive_days",
                raw.inactive_days,
                d.inactive_days,
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
    fn empty_config_gives_the_seed_defaults() {
        let c = Config::parse("{}").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(
            (c.inactive_days, c.max_total_bytes, c.level),
            (7, 2 * 1024 * 1024 * 1024, 6)
        );
        assert_eq!(Config::parse("").unwrap(), c);
    }

    #[test]
    fn valid_values_are_kept_and_round_trip() {
        let c = Config::parse(
            r#"{"inactive_days":1,"max_total_bytes":10,"level":0,"max_restore_bytes":5,
                "parallel_min_bytes":3,"member_bytes":2}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            Config {
                inactive_days: 1,
                max_total_bytes: 10,
                level: 0,
                max_restore_bytes: 5,
                parallel_min_bytes: 3,
                member_bytes: 2,
            }
        );
        assert_eq!(Config::parse(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn bad_values_are_rejected_naming_the_field() {
        for (text, field) in [
            (r#"{"inactive_days":0}"#, "inactive_days"),
            (r#"{"inactive_days":-3}"#, "inactive_days"),
            (r#"{"inactive_days":1.5}"#, "inactive_days"),
            (r#"{"inactive_days":"7"}"#, "inactive_days"),
            (r#"{"inactive_days":999999999999999}"#, "inactive_days"),
            (r#"{"max_total_bytes":0}"#, "max_total_bytes"),
            (r#"{"level":10}"#, "level"),
            (r#"{"level":-1}"#, "level"),
            (r#"{"max_restore_bytes":0}"#, "max_restore_bytes"),
            (r#"{"parallel_min_bytes":0}"#, "parallel_min_bytes"),
            (r#"{"member_bytes":0}"#, "member_bytes"),
            (r#"{"member_bytes":67108865}"#, "member_bytes"),
            (r#"{"inactive_dayz":3}"#, "inactive_dayz"),
        ] {
            let e = Config::parse(text).unwrap_err().0;
            assert!(e.contains(field), "{text}: {e}");
        }
        assert!(Config::parse("[]").is_err());
        assert!(Config::parse("nope").is_err());
    }
}
