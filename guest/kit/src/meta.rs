//! Typed, forgiving access to a session's meta map, the intent record, and meta patches.
//!
//! Meta comes from the application and from older tools (the seed), so any key may hold any JSON.
//! Getters come in two kinds: strict ones return `Err(MetaError)` for a wrong type (used where acting
//! on a misread value could lose data, e.g. `archived_at`), and the callers that follow the seed use
//! `.ok().flatten()` to treat a wrong type as absent exactly where the seed did (`as_i64` → `None`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The meta keys: the seed's (the compatibility contract) and ours.
pub mod keys {
    /// `"agent"` marks agent sessions (seed).
    pub const VIEW: &str = "view";
    /// Last activity, i64 ms (seed).
    pub const LAST_ACTIVITY_MS: &str = "session:last_activity_ms";
    /// Line count, u64 (seed).
    pub const LINE_COUNT: &str = "session:line_count";
    /// When archived, i64 ms; > 0 means archived (seed).
    pub const ARCHIVED_AT: &str = "session:archived_at";
    /// Raw bytes archived, u64 (seed).
    pub const ARCHIVED_BYTES: &str = "session:archived_bytes";
    /// Absolute path of the archive, string (seed).
    pub const ARCHIVE_PATH: &str = "session:archive_path";
    /// CRC-32 of the raw bytes, u32.
    pub const ARCHIVE_CRC32: &str = "session:archive_crc32";
    /// Size of the archive file, u64.
    pub const ARCHIVE_GZ_BYTES: &str = "session:archive_gz_bytes";
    /// `true` keeps the session out of archive and its archive out of prune.
    pub const PINNED: &str = "session:archive_pinned";
    /// Tombstone, i64 ms: the only copy was pruned.
    pub const PRUNED_AT: &str = "session:archive_pruned_at";
    /// JSON object: an operation in progress, for crash recovery.
    pub const INTENT: &str = "session:archive_intent";
    /// When restored, i64 ms.
    pub const RESTORED_AT: &str = "session:restored_at";

    /// The archived output's circular capacity, u64, when it was a circular file: restore makes
    /// it circular again. Ours (the seed has no circular files).
    pub const ARCHIVE_CIRCULAR_MAX_SIZE: &str = "session:archive_circular_max_size";

    /// The archived output's own file meta (the app's per-file settings), a JSON object, when it
    /// had any: restore puts it back on the new output. Ours.
    pub const ARCHIVE_FILE_META: &str = "session:archive_file_meta";

    /// Keys that together say "archived"; cleared together on restore, rollback and prune.
    pub const ARCHIVED_KEYS: [&str; 7] = [
        ARCHIVED_AT,
        ARCHIVED_BYTES,
        ARCHIVE_PATH,
        ARCHIVE_CRC32,
        ARCHIVE_GZ_BYTES,
        ARCHIVE_CIRCULAR_MAX_SIZE,
        ARCHIVE_FILE_META,
    ];
}

/// Meta that cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// The meta text is not a JSON object.
    #[error("meta is not a JSON object: {0}")]
    NotAnObject(String),
    /// A key holds a value of the wrong JSON type or range.
    #[error("meta key {key} should be {expected}, found {found}")]
    InvalidMeta {
        /// The key.
        key: String,
        /// What it should hold.
        expected: &'static str,
        /// What it holds (truncated).
        found: String,
    },
}

/// A file stat as recorded in an intent (a copy of the WIT `file-stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatRecord {
    /// Logical size.
    pub size: u64,
    /// Creation time, ms.
    pub created_ms: i64,
    /// Modification time, ms.
    pub modified_ms: i64,
    /// Circular capacity, if circular.
    #[serde(default)]
    pub circular_max_size: Option<u64>,
}

/// An archive entry as recorded in an intent: what was under the archive name before we wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ms.
    pub modified_ms: i64,
}

/// An operation in progress, recorded in meta before its first side effect so that `recover` can
/// finish or undo it after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Intent {
    /// Archiving the live `output` as it was at `stat` into `name`.
    Archive {
        /// When it started.
        at: i64,
        /// The archive name being written.
        name: String,
        /// The live file's stat the archive copies (the conditional delete's `expected`).
        stat: StatRecord,
        /// The entry that already had this name (an older backup), so a rollback can tell it from
        /// the one we wrote and leave it alone.
        #[serde(default)]
        previous: Option<EntryRecord>,
        /// `session:restored_at` and `session:archive_pruned_at` before the archive, which the
        /// archived patch removes: a rollback puts them back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restored_at: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pruned_at: Option<Value>,
    },
    /// Restoring `name` into `output` via the scratch file.
    Restore {
        /// When it started.
        at: i64,
        /// The archive name being restored.
        name: String,
        /// Raw bytes in the archive.
        archived_bytes: u64,
        /// Their CRC-32, when known.
        #[serde(default)]
        crc32: Option<u32>,
    },
    /// Pruning `name`, the only copy (meta already tombstoned).
    Prune {
        /// When it started.
        at: i64,
        /// The archive name being removed.
        name: String,
    },
}

/// A parsed meta map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    map: Map<String, Value>,
}

fn found(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

impl Meta {
    /// Parses meta text (a JSON object).
    pub fn parse(text: &str) -> Result<Meta, MetaError> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(Meta { map }),
            Ok(other) => Err(MetaError::NotAnObject(found(&other))),
            Err(e) => Err(MetaError::NotAnObject(e.to_string())),
        }
    }

    /// The raw value of a key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn bad(key: &str, expected: &'static str, v: &Value) -> MetaError {
        MetaError::InvalidMeta {
            key: key.to_string(),
            expected,
            found: found(v),
        }
    }

    /// A string key; `Err` when it holds another type.
    pub fn str(&self, key: &str) -> Result<Option<&str>, MetaError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(Self::bad(key, "a string", v)),
        }
    }

    /// An i64 key; `Err` when it holds anything but an integer in range.
    pub fn i64(&self, key: &str) -> Result<Option<i64>, MetaError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| Self::bad(key, "an integer", v)),
        }
    }

    /// A u64 key; `Err` when it holds anything but a non-negative integer.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, MetaError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| Self::bad(key, "a non-negative integer", v)),
        }
    }

    /// A u32 key; `Err` when out of range or not an integer.
    pub fn u32(&self, key: &str) -> Result<Option<u32>, MetaError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| Self::bad(key, "a 32-bit unsigned integer", v)),
        }
    }

    /// A bool key; `Err` when it holds another type.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, MetaError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(Self::bad(key, "true or false", v)),
        }
    }

    /// The seed's `view` reading: a non-string counts as "" (not an agent).
    pub fn view(&self) -> &str {
        self.str(keys::VIEW).ok().flatten().unwrap_or("")
    }

    /// `archived_at` when > 0 (strict: a wrong type is an error, since misreading it as "not
    /// archived" could lead to overwriting an only-copy archive).
    pub fn archived_at(&self) -> Result<Option<i64>, MetaError> {
        Ok(self.i64(keys::ARCHIVED_AT)?.filter(|t| *t > 0))
    }

    /// Whether the session is pinned (strict).
    pub fn pinned(&self) -> Result<bool, MetaError> {
        Ok(self.bool(keys::PINNED)?.unwrap_or(false))
    }

    /// The pruned tombstone when > 0 (forgiving: a wrong type only loses a nicer message).
    pub fn pruned_at(&self) -> Option<i64> {
        self.i64(keys::PRUNED_AT).ok().flatten().filter(|t| *t > 0)
    }

    /// The intent in progress; `Err` when the key holds something we cannot read (a session in an
    /// unknown state must be treated as busy, never as idle).
    pub fn intent(&self) -> Result<Option<Intent>, MetaError> {
        match self.get(keys::INTENT) {
            None => Ok(None),
            Some(v) => {
                serde_json::from_value(v.clone())
                    .map(Some)
                    .map_err(|e| MetaError::InvalidMeta {
                        key: keys::INTENT.to_string(),
                        expected: "an intent record",
                        found: format!("{} ({e})", found(v)),
                    })
            }
        }
    }

    /// Whether the intent key is present at all (readable or not).
    pub fn has_intent(&self) -> bool {
        self.get(keys::INTENT).is_some()
    }
}

/// A meta patch: keys to set, and keys to remove (JSON `null`, the Wave merge rule).
#[derive(Debug, Clone, Default)]
pub struct Patch {
    map: Map<String, Value>,
}

impl Patch {
    /// An empty patch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.map.insert(key.to_string(), value.into());
        self
    }

    /// Sets `key` to `value`, or removes it when `None`.
    pub fn set_opt(self, key: &str, value: Option<impl Into<Value>>) -> Self {
        match value {
            Some(v) => self.set(key, v),
            None => self.remove(key),
        }
    }

    /// Removes `key`.
    pub fn remove(mut self, key: &str) -> Self {
        self.map.insert(key.to_string(), Value::Null);
        self
    }

    /// Removes every key that says "archived".
    pub fn clear_archived(mut self) -> Self {
        for k in keys::ARCHIVED_KEYS {
            self = self.remove(k);
        }
        self
    }

    /// Records `intent`.
    pub fn intent(self, intent: &Intent) -> Self {
        let v = serde_json::to_value(intent).expect("an intent always serializes");
        self.set(keys::INTENT, v)
    }

    /// Removes the intent.
    pub fn clear_intent(self) -> Self {
        self.remove(keys::INTENT)
    }

    /// The patch as JSON object text for `objects.update-meta`.
    pub fn to_json(&self) -> String {
        Value::Object(self.map.clone()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_are_errors_for_strict_getters_and_absent_for_the_seed_ones() {
        let m = Meta::parse(r#"{"view":3,"session:archived_at":"x","session:line_count":-1,"session:archive_pinned":"yes"}"#)
            .unwrap();
        assert_eq!(m.view(), "");
        assert!(matches!(
            m.archived_at(),
            Err(MetaError::InvalidMeta { .. })
        ));
        assert!(m.u64(keys::LINE_COUNT).is_err());
        assert_eq!(m.u64(keys::LINE_COUNT).ok().flatten(), None);
        let err = m.pinned().unwrap_err().to_string();
        assert!(err.contains("session:archive_pinned"), "{err}");
    }

    #[test]
    fn null_values_read_as_absent() {
        let m = Meta::parse(r#"{"session:archived_at":null}"#).unwrap();
        assert_eq!(m.archived_at().unwrap(), None);
        assert!(!m.has_intent());
    }

    #[test]
    fn non_object_meta_is_rejected() {
        assert!(Meta::parse("[1]").is_err());
        assert!(Meta::parse("not json").is_err());
    }

    #[test]
    fn intents_round_trip_through_a_patch() {
        let intent = Intent::Archive {
            at: 5,
            name: "a.jsonl.gz".into(),
            stat: StatRecord {
                size: 3,
                created_ms: 1,
                modified_ms: 2,
                circular_max_size: None,
            },
            previous: None,
            restored_at: None,
            pruned_at: None,
        };
        let patch = Patch::new().intent(&intent).to_json();
        let m = Meta::parse(&patch).unwrap();
        assert_eq!(m.intent().unwrap(), Some(intent));
        assert!(patch.contains(r#""op":"archive""#), "{patch}");
    }

    #[test]
    fn an_unreadable_intent_is_an_error_not_absent() {
        let m = Meta::parse(r#"{"session:archive_intent":{"op":"teleport"}}"#).unwrap();
        assert!(m.intent().is_err());
        assert!(m.has_intent());
    }

    #[test]
    fn clearing_keys_writes_json_null() {
        let p = Patch::new()
            .clear_archived()
            .set(keys::RESTORED_AT, 7)
            .to_json();
        let v: Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v[keys::ARCHIVE_PATH], Value::Null);
        assert_eq!(v[keys::RESTORED_AT], 7);
    }
}
