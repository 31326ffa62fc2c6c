//! Fixture builders: sessions with meta and JSONL output, archive files with given bytes and mtime.

use serde_json::{json, Value};
use session_archiver::store::{FileOpts, FileStore, Meta, ObjectStore, OUTPUT_FILE};

use crate::MockHost;

/// One day in milliseconds: the library's constant, so tests say `fixtures::DAY_MS`.
pub use session_archiver::store::DAY_MS;

/// `n` lines of agent-style JSONL, deterministic in `seed`, each ending in `\n`.
pub fn jsonl_lines(seed: u64, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let line = json!({
            "type": if i % 3 == 0 { "tool_call" } else { "message" },
            "seq": i,
            "session": seed,
            "text": format!("line {i} of session {seed}: the agent ran `cargo test` and it passed"),
        });
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Builds one session: `host.session("id").idle_days(10).lines(5).create()`.
pub struct SessionBuilder<'h> {
    host: &'h MockHost,
    id: String,
    meta: Meta,
    output: Option<Vec<u8>>,
    circular: Option<u64>,
}

impl<'h> SessionBuilder<'h> {
    pub(crate) fn new(host: &'h MockHost, id: &str) -> Self {
        let mut meta = Meta::new();
        meta.insert("view".into(), json!("agent"));
        Self {
            host,
            id: id.to_string(),
            meta,
            output: None,
            circular: None,
        }
    }

    /// Sets (or with `Value::Null`, removes) a meta key.
    pub fn meta(mut self, key: &str, value: Value) -> Self {
        if value.is_null() {
            self.meta.remove(key);
        } else {
            self.meta.insert(key.to_string(), value);
        }
        self
    }

    /// Last activity `days` days before the host clock's now.
    pub fn idle_days(self, days: i64) -> Self {
        let at = self.host.now_ms() - days * DAY_MS;
        self.meta("session:last_activity_ms", json!(at))
    }

    /// `n` lines of JSONL as output, with `session:line_count` = n.
    pub fn lines(self, n: usize) -> Self {
        let seed = self.id.bytes().map(u64::from).sum();
        self.output(jsonl_lines(seed, n))
            .meta("session:line_count", json!(n))
    }

    /// Exactly these bytes as output (line count meta untouched).
    pub fn output(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.output = Some(bytes.into());
        self
    }

    /// Makes the output file circular, keeping the last `max` bytes.
    pub fn circular(mut self, max: u64) -> Self {
        self.circular = Some(max);
        self
    }

    /// Pins the session (`session:archive_pinned: true`).
    pub fn pinned(self) -> Self {
        self.meta("session:archive_pinned", json!(true))
    }

    /// Writes the session into the mock stores (unrecorded) and returns its id.
    pub fn create(self) -> String {
        let h = self.host;
        h.objects
            .inner
            .insert(&self.id, &self.meta)
            .expect("insert object");
        if let Some(bytes) = self.output {
            let opts = FileOpts {
                circular_max_size: self.circular,
            };
            h.files
                .inner
                .create(&self.id, OUTPUT_FILE, opts)
                .expect("create output");
            for chunk in bytes.chunks(1 << 20) {
                h.files
                    .inner
                    .append(&self.id, OUTPUT_FILE, chunk)
                    .expect("append output");
            }
        }
        self.id
    }
}
