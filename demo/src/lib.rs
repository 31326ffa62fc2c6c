//! Realistic demo data: a few hundred agent sessions of JSONL with mixed idle times and sizes.
//!
//! Everything is derived from one seed with a small PRNG, so a demo directory, a test fixture
//! and a benchmark corpus are reproducible byte for byte. The generator streams ([`session_jsonl`]
//! yields chunks), so the benchmark can make a 1 GB session without holding it.
//!
//! Only the store traits are used: the same code fills the SQLite stores and the in-memory ones.

use std::fmt;

use serde_json::{json, Value};
use session_archiver::store::{
    FileOpts, FileStore, Meta, ObjectStore, StoreError, DAY_MS, OUTPUT_FILE,
};

mod words;

use words::{
    BASE64, CODE_LINES, COMMANDS, CRATES, DIRS, ENDINGS, FILES, LANGS, SHELL_OK, TOOLS, WORDS,
};

/// Chunks [`session_jsonl`] yields are about this big (whole lines; well under `MAX_CHUNK`).
pub const CHUNK_BYTES: usize = 1 << 20;

/// What demo data to make.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOptions {
    /// Seed for ids, ages, sizes and content.
    pub seed: u64,
    /// Agent sessions (`view: "agent"`), including the pinned, empty, circular and large ones.
    pub agent_sessions: usize,
    /// Non-agent blocks (`view: "term"`) with old output: a policy must leave them alone.
    pub term_sessions: usize,
    /// Old agent sessions marked `session:archive_pinned: true`.
    pub pinned: usize,
    /// Agent sessions with no lines (half with an empty `output` file, half with none).
    pub empty: usize,
    /// Agent sessions whose `output` is a circular file that has wrapped.
    pub circular: usize,
    /// Large sessions (20–50 MB at scale 1).
    pub large: usize,
    /// Multiplies every size: 1.0 gives a few KB to several MB per session; tests use ~0.001.
    pub scale: f64,
    /// The oldest last activity, in days before `now_ms`.
    pub max_age_days: u32,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            seed: 0x5e55_10f1,
            agent_sessions: 300,
            term_sessions: 20,
            pinned: 5,
            empty: 6,
            circular: 6,
            large: 3,
            scale: 1.0,
            max_age_days: 60,
        }
    }
}

impl DemoOptions {
    /// The defaults with `n` agent sessions, the special kinds scaled in proportion (at least
    /// one of each from 20 sessions up).
    pub fn with_agent_sessions(n: usize) -> Self {
        let d = DemoOptions::default();
        let share = |k: usize| (k * n / d.agent_sessions).max(usize::from(n >= 20));
        DemoOptions {
            agent_sessions: n,
            term_sessions: share(d.term_sessions),
            pinned: share(d.pinned),
            empty: share(d.empty),
            circular: share(d.circular),
            large: share(d.large),
            ..d
        }
    }

    /// A small, fast data set for tests: every kind of session, a few KB each.
    pub fn tiny() -> Self {
        DemoOptions {
            agent_sessions: 40,
            term_sessions: 4,
            pinned: 3,
            empty: 4,
            circular: 3,
            large: 2,
            scale: 0.001,
            ..DemoOptions::default()
        }
    }
}

/// What [`create_demo`] made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    /// Every session id, in creation order.
    pub ids: Vec<String>,
    pub agent: usize,
    pub term: usize,
    pub pinned: usize,
    pub empty: usize,
    pub circular: usize,
    pub large: usize,
    /// Agent sessions with lines, not pinned, idle for more than 7 / 30 days.
    pub idle_over_7_days: usize,
    pub idle_over_30_days: usize,
    /// Bytes appended to all `output` files (for circular files, more than is held).
    pub bytes: u64,
    /// Lines appended to all `output` files.
    pub lines: u64,
    /// The biggest single session, in bytes appended.
    pub largest_bytes: u64,
}

impl fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} sessions: {} agent ({} pinned, {} empty, {} circular, {} large), {} term",
            self.ids.len(),
            self.agent,
            self.pinned,
            self.empty,
            self.circular,
            self.large,
            self.term
        )?;
        writeln!(
            f,
            "{} lines, {:.1} MB of JSONL (largest session {:.1} MB)",
            self.lines,
            self.bytes as f64 / 1e6,
            self.largest_bytes as f64 / 1e6
        )?;
        write!(
            f,
            "agent sessions with lines idle > 7 days: {}, > 30 days: {} (pinned ones excluded)",
            self.idle_over_7_days, self.idle_over_30_days
        )
    }
}

/// The role a demo session plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Large,
    Circular,
    Pinned,
    Empty,
    Term,
}

/// Fills `objects` and `files` with demo sessions; `progress(done, total)` after each one.
///
/// Idle times run from minutes to `max_age_days` before `now_ms`; `session:line_count` is the
/// number of lines actually appended (for a circular file, all lines ever appended, as the
/// application counts them, of which only the tail is still held).
pub fn create_demo(
    objects: &dyn ObjectStore,
    files: &dyn FileStore,
    opts: &DemoOptions,
    now_ms: i64,
    mut progress: impl FnMut(usize, usize),
) -> Result<DemoSummary, StoreError> {
    let special = opts.pinned + opts.empty + opts.circular + opts.large;
    if special > opts.agent_sessions {
        return Err(StoreError::Invalid(format!(
            "demo: {special} pinned/empty/circular/large sessions do not fit in {} agent sessions",
            opts.agent_sessions
        )));
    }
    let mut rng = Rng::new(opts.seed);
    let mut kinds = Vec::with_capacity(opts.agent_sessions + opts.term_sessions);
    kinds.extend(std::iter::repeat_n(Kind::Pinned, opts.pinned));
    kinds.extend(std::iter::repeat_n(Kind::Empty, opts.empty));
    kinds.extend(std::iter::repeat_n(Kind::Circular, opts.circular));
    kinds.extend(std::iter::repeat_n(Kind::Large, opts.large));
    kinds.extend(std::iter::repeat_n(
        Kind::Normal,
        opts.agent_sessions - special,
    ));
    kinds.extend(std::iter::repeat_n(Kind::Term, opts.term_sessions));
    rng.shuffle(&mut kinds);

    let total = kinds.len();
    let max_age_ms = i64::from(opts.max_age_days.max(1)) * DAY_MS;
    let mut summary = DemoSummary::default();
    for (index, kind) in kinds.into_iter().enumerate() {
        let id = rng.uuid();
        let age_ms = match kind {
            // Old enough that only the pin keeps them live.
            Kind::Pinned => rng.range_i64(max_age_ms / 3, max_age_ms),
            // Idle, so a sweep streams them.
            Kind::Large => rng.range_i64(max_age_ms / 6, max_age_ms),
            _ => session_age(&mut rng, max_age_ms),
        };
        let target = match kind {
            Kind::Empty => 0,
            Kind::Large => scaled(rng.range_u64(20_000_000, 50_000_000), opts.scale),
            // Four times the circular size below, so the file has wrapped.
            Kind::Circular => scaled(rng.range_u64(1_000_000, 6_000_000), opts.scale),
            Kind::Term => scaled(rng.range_u64(2_000, 200_000), opts.scale),
            _ => scaled(skewed_size(&mut rng), opts.scale),
        };
        let content_seed = rng.next_u64();

        let mut meta = Meta::new();
        let view = if kind == Kind::Term { "term" } else { "agent" };
        meta.insert("view".into(), json!(view));
        meta.insert(
            "session:last_activity_ms".into(),
            json!(now_ms.saturating_sub(age_ms)),
        );
        if kind == Kind::Pinned {
            meta.insert("session:archive_pinned".into(), json!(true));
        }

        let (bytes, lines) = if kind == Kind::Empty && index % 2 == 0 {
            // No output file at all: a session that never wrote.
            (0, 0)
        } else {
            let circular_max_size = (kind == Kind::Circular).then(|| (target / 4).max(4096));
            files.create(&id, OUTPUT_FILE, FileOpts { circular_max_size })?;
            let (mut bytes, mut lines) = (0u64, 0u64);
            for chunk in session_jsonl(content_seed, target) {
                files.append(&id, OUTPUT_FILE, &chunk)?;
                bytes += chunk.len() as u64;
                lines += count_lines(&chunk);
            }
            (bytes, lines)
        };
        meta.insert("session:line_count".into(), Value::from(lines));
        objects.insert(&id, &meta)?;

        match kind {
            Kind::Term => summary.term += 1,
            _ => summary.agent += 1,
        }
        match kind {
            Kind::Pinned => summary.pinned += 1,
            Kind::Empty => summary.empty += 1,
            Kind::Circular => summary.circular += 1,
            Kind::Large => summary.large += 1,
            Kind::Normal | Kind::Term => {}
        }
        if kind != Kind::Term && kind != Kind::Pinned && lines > 0 {
            summary.idle_over_7_days += usize::from(age_ms > 7 * DAY_MS);
            summary.idle_over_30_days += usize::from(age_ms > 30 * DAY_MS);
        }
        summary.bytes += bytes;
        summary.lines += lines;
        summary.largest_bytes = summary.largest_bytes.max(bytes);
        summary.ids.push(id);
        progress(index + 1, total);
    }
    Ok(summary)
}

/// Non-blank lines in a chunk of generator output (every line ends with `\n`, none is blank).
pub fn count_lines(chunk: &[u8]) -> u64 {
    chunk.iter().filter(|&&b| b == b'\n').count() as u64
}

/// A quarter of sessions active within the last day (minutes to hours), the rest spread evenly
/// over the remaining days: a sweep then has plenty to archive and plenty to leave.
fn session_age(rng: &mut Rng, max_age_ms: i64) -> i64 {
    const MINUTE_MS: f64 = 60_000.0;
    if rng.below(4) == 0 {
        let ln_span = (DAY_MS as f64 / MINUTE_MS).ln();
        (MINUTE_MS * (rng.unit() * ln_span).exp()) as i64
    } else {
        rng.range_i64(DAY_MS, max_age_ms.max(DAY_MS + 1))
    }
}

/// 4 KB to 8 MB, skewed small (most sessions are short, a few are long).
fn skewed_size(rng: &mut Rng) -> u64 {
    let u = rng.unit();
    (4_000.0 * (2_000f64.ln() * u * u).exp()) as u64
}

fn scaled(bytes: u64, scale: f64) -> u64 {
    ((bytes as f64 * scale) as u64).max(200)
}

/// Deterministic agent-session JSONL of about `target_bytes` (whole lines; the last one may
/// overshoot), as chunks of about [`CHUNK_BYTES`]. Same `(seed, target_bytes)`, same bytes.
pub fn session_jsonl(seed: u64, target_bytes: u64) -> SessionJsonl {
    let mut rng = Rng::new(seed ^ 0x6a09_e667_f3bc_c908);
    let ts = 1_760_000_000_000 + rng.below(30 * DAY_MS as u64) as i64;
    SessionJsonl {
        rng,
        target: target_bytes,
        produced: 0,
        seq: 0,
        ts,
        num: Vec::with_capacity(24),
    }
}

/// The streaming generator behind [`session_jsonl`].
#[derive(Debug, Clone)]
pub struct SessionJsonl {
    rng: Rng,
    target: u64,
    produced: u64,
    seq: u64,
    ts: i64,
    num: Vec<u8>,
}

impl Iterator for SessionJsonl {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.produced >= self.target {
            return None;
        }
        let mut buf = Vec::with_capacity(CHUNK_BYTES + (64 << 10));
        while buf.len() < CHUNK_BYTES && self.produced + (buf.len() as u64) < self.target {
            self.line(&mut buf);
        }
        self.produced += buf.len() as u64;
        Some(buf)
    }
}

impl SessionJsonl {
    /// Appends one JSON line of a randomly chosen event kind.
    fn line(&mut self, buf: &mut Vec<u8>) {
        self.seq += 1;
        self.ts += 200 + self.rng.below(20_000) as i64;
        match self.rng.below(1000) {
            0..=299 => self.assistant_text(buf),
            300..=379 => self.user_text(buf),
            380..=499 => self.assistant_code(buf),
            500..=699 => self.tool_use(buf),
            700..=959 => self.shell_result(buf),
            960..=964 => self.image_blob(buf),
            _ => self.usage(buf),
        }
        buf.push(b'\n');
    }

    fn head(&mut self, buf: &mut Vec<u8>, kind: &str) {
        buf.extend_from_slice(b"{\"type\":\"");
        buf.extend_from_slice(kind.as_bytes());
        buf.extend_from_slice(b"\",\"seq\":");
        self.number(buf, self.seq as i64);
        buf.extend_from_slice(b",\"ts\":");
        self.number(buf, self.ts);
    }

    fn number(&mut self, buf: &mut Vec<u8>, n: i64) {
        use std::io::Write;
        self.num.clear();
        let _ = write!(self.num, "{n}");
        buf.extend_from_slice(&self.num);
    }

    fn prose(&mut self, buf: &mut Vec<u8>, words: u64) {
        let mut since_end = 0;
        for i in 0..words {
            buf.extend_from_slice(self.rng.pick_skewed(WORDS).as_bytes());
            since_end += 1;
            if i + 1 == words {
                buf.push(b'.');
            } else if since_end > 6 && self.rng.below(8) == 0 {
                buf.extend_from_slice(self.rng.pick(ENDINGS).as_bytes());
                since_end = 0;
            } else {
                buf.push(b' ');
            }
        }
    }

    fn assistant_text(&mut self, buf: &mut Vec<u8>) {
        self.head(buf, "assistant");
        buf.extend_from_slice(
            b",\"message\":{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"",
        );
        let words = 15 + self.rng.below(300);
        self.prose(buf, words);
        buf.extend_from_slice(b"\"}]}}");
    }

    fn user_text(&mut self, buf: &mut Vec<u8>) {
        self.head(buf, "user");
        buf.extend_from_slice(b",\"message\":{\"role\":\"user\",\"content\":\"");
        let words = 4 + self.rng.below(60);
        self.prose(buf, words);
        buf.extend_from_slice(b"\"}}");
    }

    fn assistant_code(&mut self, buf: &mut Vec<u8>) {
        self.head(buf, "assistant");
        buf.extend_from_slice(
            b",\"message\":{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"",
        );
        let words = 5 + self.rng.below(40);
        self.prose(buf, words);
        buf.extend_from_slice(b"\\n\\n```");
        buf.extend_from_slice(self.rng.pick(LANGS).as_bytes());
        buf.extend_from_slice(b"\\n");
        let start = self.rng.below(CODE_LINES.len() as u64) as usize;
        let count = 4 + self.rng.below(40) as usize;
        for i in 0..count {
            buf.extend_from_slice(CODE_LINES[(start + i) % CODE_LINES.len()].as_bytes());
            buf.extend_from_slice(b"\\n");
        }
        buf.extend_from_slice(b"```\"}]}}");
    }

    fn tool_id(&mut self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"toolu_");
        let v = self.rng.next_u64();
        for i in 0..12 {
            buf.push(BASE64[((v >> (i * 5)) & 31) as usize]);
        }
    }

    fn path(&mut self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"/work/main/");
        buf.extend_from_slice(self.rng.pick(DIRS).as_bytes());
        buf.push(b'/');
        buf.extend_from_slice(self.rng.pick(FILES).as_bytes());
    }

    fn tool_use(&mut self, buf: &mut Vec<u8>) {
        let (tool, arg) = *self.rng.pick(TOOLS);
        self.head(buf, "tool_use");
        buf.extend_from_slice(b",\"id\":\"");
        self.tool_id(buf);
        buf.extend_from_slice(b"\",\"name\":\"");
        buf.extend_from_slice(tool.as_bytes());
        buf.extend_from_slice(b"\",\"input\":{\"");
        buf.extend_from_slice(arg.as_bytes());
        buf.extend_from_slice(b"\":\"");
        match arg {
            "command" => buf.extend_from_slice(self.rng.pick(COMMANDS).as_bytes()),
            "file_path" => self.path(buf),
            _ => buf.extend_from_slice(self.rng.pick(WORDS).as_bytes()),
        }
        buf.push(b'"');
        if tool == "Edit" {
            buf.extend_from_slice(b",\"old_string\":\"");
            buf.extend_from_slice(self.rng.pick(CODE_LINES).as_bytes());
            buf.extend_from_slice(b"\",\"new_string\":\"");
            buf.extend_from_slice(self.rng.pick(CODE_LINES).as_bytes());
            buf.push(b'"');
        }
        buf.extend_from_slice(b"}}");
    }

    fn shell_result(&mut self, buf: &mut Vec<u8>) {
        self.head(buf, "tool_result");
        buf.extend_from_slice(b",\"tool_use_id\":\"");
        self.tool_id(buf);
        buf.extend_from_slice(b"\",\"content\":\"");
        let lines = 2 + self.rng.below(80);
        let style = self.rng.below(4);
        for _ in 0..lines {
            match style {
                0 => {
                    buf.extend_from_slice(b"\\u001b[1m\\u001b[32m   Compiling\\u001b[0m ");
                    buf.extend_from_slice(self.rng.pick(CRATES).as_bytes());
                    buf.extend_from_slice(b" v0.");
                    let minor = self.rng.below(40) as i64;
                    self.number(buf, minor);
                    buf.extend_from_slice(b".0");
                }
                1 => {
                    buf.extend_from_slice(b"test ");
                    buf.extend_from_slice(self.rng.pick(FILES).as_bytes());
                    buf.extend_from_slice(b"::tests::");
                    buf.extend_from_slice(self.rng.pick(WORDS).as_bytes());
                    buf.push(b'_');
                    buf.extend_from_slice(self.rng.pick(WORDS).as_bytes());
                    buf.extend_from_slice(b" ... ");
                    buf.extend_from_slice(self.rng.pick(SHELL_OK).as_bytes());
                }
                2 => {
                    self.path(buf);
                    buf.push(b':');
                    let line = 1 + self.rng.below(900) as i64;
                    self.number(buf, line);
                    buf.extend_from_slice(b":    ");
                    buf.extend_from_slice(self.rng.pick(CODE_LINES).as_bytes());
                }
                _ => {
                    buf.extend_from_slice(b"-rw-r--r-- 1 agent agent ");
                    let size = self.rng.below(90_000) as i64;
                    self.number(buf, size);
                    buf.extend_from_slice(b" Nov 26 09:3");
                    let minute = self.rng.below(10) as i64;
                    self.number(buf, minute);
                    buf.extend_from_slice(b" \\u001b[01;34m");
                    buf.extend_from_slice(self.rng.pick(FILES).as_bytes());
                    buf.extend_from_slice(b"\\u001b[0m");
                }
            }
            buf.extend_from_slice(b"\\r\\n");
        }
        buf.extend_from_slice(b"\",\"is_error\":");
        buf.extend_from_slice(if self.rng.below(10) == 0 {
            b"true}"
        } else {
            b"false}"
        });
    }

    /// A pasted screenshot: base64 of random bytes, incompressible like the real thing.
    fn image_blob(&mut self, buf: &mut Vec<u8>) {
        self.head(buf, "tool_result");
        buf.extend_from_slice(
            b",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"iVBORw0KGgo",
        );
        let groups = 200 + self.rng.below(5_000);
        buf.reserve(groups as usize * 8);
        for _ in 0..groups {
            // 48 random bits → 8 base64 characters.
            let v = self.rng.next_u64();
            for i in 0..8 {
                buf.push(BASE64[((v >> (i * 6)) & 63) as usize]);
            }
        }
        buf.extend_from_slice(b"\"}}]}");
    }

    fn usage(&mut self, buf: &mut Vec<u8>) {
        self.head(buf, "result");
        buf.extend_from_slice(b",\"usage\":{\"input_tokens\":");
        let input = self.rng.below(200_000) as i64;
        self.number(buf, input);
        buf.extend_from_slice(b",\"output_tokens\":");
        let output = self.rng.below(8_000) as i64;
        self.number(buf, output);
        buf.extend_from_slice(b",\"cache_read_input_tokens\":");
        let cached = self.rng.below(150_000) as i64;
        self.number(buf, cached);
        buf.extend_from_slice(b"},\"duration_ms\":");
        let duration = self.rng.below(120_000) as i64;
        self.number(buf, duration);
        buf.push(b'}');
    }
}

/// wyrand: tiny, fast and good enough for test data (not for anything secret).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn range_u64(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).max(1))
    }

    fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below(hi.saturating_sub(lo).max(1) as u64) as i64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Like `pick`, but early items come up far more often (as common words do in prose).
    fn pick_skewed<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let n = items.len() as u64;
        &items[(self.below(n) * self.below(n) / n) as usize]
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// A random (version 4 layout) UUID, like Wave's block ids.
    fn uuid(&mut self) -> String {
        let hi = self.next_u64();
        let lo = self.next_u64();
        let hi = (hi & !0xf000) | 0x4000;
        let lo = (lo & !(0xc << 60)) | (0x8 << 60);
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(seed: u64, target: u64) -> Vec<u8> {
        session_jsonl(seed, target).flatten().collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
        let a = collect(7, 300_000);
        assert_eq!(a, collect(7, 300_000));
        assert_ne!(a, collect(8, 300_000));
    }

    #[test]
    fn every_line_is_a_json_object_with_a_type() {
        let data = collect(42, 2_000_000);
        let text = std::str::from_utf8(&data).expect("utf-8");
        let mut kinds = std::collections::BTreeSet::new();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", &line[..line.len().min(200)]));
            kinds.insert(v["type"].as_str().expect("has a type").to_string());
        }
        let expected = ["assistant", "result", "tool_result", "tool_use", "user"];
        assert_eq!(kinds.into_iter().collect::<Vec<_>>(), expected);
        assert!(text.contains("\\u001b[32m"), "has ANSI colour codes");
        assert!(text.contains("```rust"), "has code blocks");
        assert!(text.contains("iVBORw0KGgo"), "has base64 blobs");
    }

    #[test]
    fn sizes_land_just_past_the_target_in_chunks_under_the_store_limit() {
        for target in [1, 500, 70_000, 3_500_000] {
            let chunks: Vec<Vec<u8>> = session_jsonl(3, target).collect();
            let total: u64 = chunks.iter().map(|c| c.len() as u64).sum();
            assert!(total >= target, "{total} < {target}");
            // One line past the target at most (a base64 blob line is under 100 KB).
            assert!(total < target + 120_000, "{total} overshoots {target}");
            for chunk in &chunks {
                assert!(chunk.len() <= session_archiver::store::MAX_CHUNK);
                assert_eq!(chunk.last(), Some(&b'\n'), "chunks end on a line boundary");
            }
        }
        assert_eq!(
            session_jsonl(3, 0).count(),
            0,
            "a zero target makes nothing"
        );
    }

    #[test]
    fn create_demo_makes_every_kind_with_line_counts_that_match_the_files() {
        use session_archiver::store::memory::{MemoryFiles, MemoryObjects};
        let (objects, files) = (MemoryObjects::new(), MemoryFiles::new());
        let opts = DemoOptions::tiny();
        let now = 1_800_000_000_000;
        let mut calls = 0;
        let summary = create_demo(&objects, &files, &opts, now, |done, total| {
            calls += 1;
            assert_eq!(done, calls);
            assert_eq!(total, 44);
        })
        .unwrap();
        assert_eq!(calls, 44);
        assert_eq!(summary.ids.len(), 44);
        assert_eq!((summary.agent, summary.term), (40, 4));
        assert_eq!((summary.pinned, summary.empty), (3, 4));
        assert_eq!((summary.circular, summary.large), (3, 2));
        assert!(summary.idle_over_7_days > 0 && summary.idle_over_7_days < 33);

        let (mut pinned, mut term, mut lines_total) = (0, 0, 0);
        for id in &summary.ids {
            let obj = objects.get(id).unwrap();
            let meta = &obj.meta;
            let view = meta["view"].as_str().unwrap();
            let last = meta["session:last_activity_ms"].as_i64().unwrap();
            assert!(last <= now && last >= now - 60 * DAY_MS, "{id}: {last}");
            let count = meta["session:line_count"].as_u64().unwrap();
            lines_total += count;
            if meta.get("session:archive_pinned") == Some(&json!(true)) {
                pinned += 1;
                assert!(
                    now - last > 7 * DAY_MS,
                    "pinned sessions are old enough to matter"
                );
            }
            term += usize::from(view == "term");
            let Some(stat) = files.stat(id, OUTPUT_FILE).unwrap() else {
                assert_eq!(count, 0, "{id}: lines but no file");
                continue;
            };
            let mut data = Vec::new();
            loop {
                let chunk = files
                    .read(id, OUTPUT_FILE, data.len() as u64, 1 << 20)
                    .unwrap();
                if chunk.is_empty() {
                    break;
                }
                data.extend_from_slice(&chunk);
            }
            let non_blank = data
                .split(|&b| b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .count() as u64;
            if stat.circular_max_size.is_some() && stat.size > data.len() as u64 {
                // Wrapped: the app counted every line, only the tail is held.
                assert!(non_blank <= count, "{id}");
            } else {
                assert_eq!(non_blank, count, "{id}: meta line count");
                assert_eq!(stat.size, data.len() as u64);
            }
        }
        assert_eq!((pinned, term), (3, 4));
        assert_eq!(lines_total, summary.lines);

        // Same seed and clock, same data.
        let (objects2, files2) = (MemoryObjects::new(), MemoryFiles::new());
        let again = create_demo(&objects2, &files2, &opts, now, |_, _| {}).unwrap();
        assert_eq!(again, summary);
    }

    #[test]
    fn create_demo_refuses_more_special_sessions_than_agent_sessions() {
        use session_archiver::store::memory::{MemoryFiles, MemoryObjects};
        let opts = DemoOptions {
            agent_sessions: 5,
            ..DemoOptions::tiny()
        };
        let err = create_demo(
            &MemoryObjects::new(),
            &MemoryFiles::new(),
            &opts,
            0,
            |_, _| {},
        );
        assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    }

    #[test]
    fn fewer_sessions_scale_the_special_kinds_down() {
        let o = DemoOptions::with_agent_sessions(20);
        assert_eq!((o.pinned, o.empty, o.circular, o.large), (1, 1, 1, 1));
        let o = DemoOptions::with_agent_sessions(3);
        assert_eq!(o.pinned + o.empty + o.circular + o.large, 0);
        assert_eq!(
            DemoOptions::with_agent_sessions(300),
            DemoOptions::default()
        );
    }

    #[test]
    fn uuids_look_like_wave_block_ids() {
        let mut rng = Rng::new(1);
        let id = rng.uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4', "{id}");
        assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_ne!(id, rng.uuid());
    }

    #[test]
    fn skewed_sizes_stay_between_4_kb_and_8_mb() {
        let mut rng = Rng::new(9);
        let sizes: Vec<u64> = (0..2000).map(|_| skewed_size(&mut rng)).collect();
        assert!(sizes.iter().all(|&s| (4_000..=8_000_000).contains(&s)));
        let small = sizes.iter().filter(|&&s| s < 100_000).count();
        let big = sizes.iter().filter(|&&s| s > 2_000_000).count();
        assert!(small > 1000, "most sessions are small: {small}");
        assert!(big > 20, "some sessions are big: {big}");
    }
}
