//! The vocabulary and templates the generated sessions are made of. Every fragment is already
//! valid inside a JSON string: no raw `"`, `\` or control characters except the escapes written
//! out (`\"`, `\n`, `\u001b`).

#[rustfmt::skip]
pub(crate) const WORDS: &[&str] = &[
    "the", "a", "to", "of", "and", "in", "is", "that", "for", "it", "this", "with", "we", "on",
    "be", "as", "not", "can", "if", "so", "then", "now", "file", "function", "test", "tests",
    "error", "module", "crate", "build", "compile", "type", "trait", "struct", "field", "value",
    "returns", "call", "caller", "config", "session", "archive", "restore", "sweep", "policy",
    "host", "guest", "component", "store", "meta", "bytes", "chunk", "stream", "gzip", "header",
    "trailer", "checksum", "length", "offset", "read", "write", "append", "delete", "rename",
    "commit", "abort", "lock", "transaction", "SQLite", "database", "table", "row", "column",
    "index", "query", "path", "directory", "name", "validate", "check", "assert", "expected",
    "actual", "mismatch", "fix", "change", "update", "add", "remove", "refactor", "simplify",
    "keep", "avoid", "because", "which", "when", "while", "after", "before", "first", "next",
    "last", "every", "each", "all", "none", "some", "only", "also", "still", "already", "again",
    "look", "see", "run", "running", "passes", "fails", "failing", "works", "broken", "clean",
    "warning", "clippy", "fmt", "cargo", "rustc", "wasm", "wasmtime", "linker", "import", "export",
    "interface", "world", "resource", "handle", "memory", "limit", "fuel", "deadline", "timeout",
    "retry", "conflict", "crash", "recover", "intent", "durable", "fsync", "atomic", "temporary",
    "final", "old", "new", "larger", "smaller", "faster", "slower", "safe", "unsafe", "correct",
    "wrong", "missing", "present", "empty", "full", "idle", "active", "pinned", "pruned", "oldest",
    "newest", "budget", "cap", "total", "count", "lines", "line", "I", "I'll", "let's", "should",
    "would", "could", "might", "must", "need", "needs", "think", "seems", "probably", "actually",
    "here", "there", "what", "why", "how", "where",
];

pub(crate) const ENDINGS: &[&str] = &[
    ". ", ". ", ". ", ", ", ": ", "? ", ".\\n\\n", ".\\n- ", " — ",
];

pub(crate) const LANGS: &[&str] = &["rust", "rust", "rust", "toml", "bash", "json", "python"];

pub(crate) const CODE_LINES: &[&str] = &[
    "fn main() -> anyhow::Result<()> {",
    "    let cfg = Config::from_json(&text).context(\\\"parsing config\\\")?;",
    "    for entry in dir.list()? {",
    "        if entry.size > cfg.max_total_bytes { continue; }",
    "    }",
    "}",
    "pub fn archive(&self, id: &str) -> Result<Outcome, Error> {",
    "    let stat = self.files.stat(id, OUTPUT_FILE)?.ok_or(Error::NotFound(id.into()))?;",
    "    let mut writer = self.dir.create(&format!(\\\"{id}.jsonl.gz\\\"))?;",
    "    while let Some(chunk) = reader.next_chunk()? {",
    "        encoder.write_all(&chunk)?;",
    "    writer.commit()?;",
    "    Ok(Outcome { bytes: stat.size, crc32: hasher.finalize() })",
    "#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]",
    "struct Candidate { id: String, idle_ms: i64, bytes: u64 }",
    "impl Ord for Candidate {",
    "    fn cmp(&self, other: &Self) -> Ordering { self.idle_ms.cmp(&other.idle_ms).reverse() }",
    "#[test]",
    "fn restore_keeps_output_written_after_archiving() {",
    "    assert_eq!(restored, original, \\\"bytes differ after restore\\\");",
    "    let (tx, rx) = std::sync::mpsc::channel();",
    "match store.update_meta(&id, &patch) {",
    "    Err(StoreError::NotFound(_)) => return Ok(Skipped::Gone),",
    "    Err(e) => return Err(e.into()),",
    "[dependencies]",
    "serde = { version = \\\"1\\\", features = [\\\"derive\\\"] }",
    "wasmtime = { version = \\\"48.0.8\\\", default-features = false }",
    "cargo test --workspace -- --nocapture",
    "grep -rn \\\"archive_path\\\" host/src | head",
    "{\\\"inactive_days\\\": 14, \\\"max_total_bytes\\\": 2147483648}",
    "def summarize(rows):",
    "    return sorted(rows, key=lambda r: r[\\\"bytes\\\"], reverse=True)[:10]",
    "",
];

pub(crate) const TOOLS: &[(&str, &str)] = &[
    ("Bash", "command"),
    ("Bash", "command"),
    ("Read", "file_path"),
    ("Edit", "file_path"),
    ("Grep", "pattern"),
    ("Write", "file_path"),
    ("Glob", "pattern"),
];

pub(crate) const COMMANDS: &[&str] = &[
    "cargo test --workspace",
    "cargo build --release",
    "cargo clippy --all-targets -- -D warnings",
    "git status --short",
    "git diff --stat",
    "ls -la host/src/store",
    "rg -n session:archive_path",
    "cargo test -p archiver-kit gzip",
    "du -sh ~/.agentmux/archives",
    "sqlite3 filestore.db 'select count(*) from db_file_data'",
];

#[rustfmt::skip]
pub(crate) const DIRS: &[&str] = &[
    "host/src", "host/src/store", "host/src/host", "guest/kit/src", "guest/inactivity/src",
    "tests/src", "xtask/src", "wit",
];

#[rustfmt::skip]
pub(crate) const FILES: &[&str] = &[
    "lib.rs", "mod.rs", "gzip.rs", "select.rs", "prune.rs", "runtime.rs", "sqlite_files.rs",
    "memory.rs", "main.rs", "config.rs", "files.wit", "policy.wit",
];

#[rustfmt::skip]
pub(crate) const CRATES: &[&str] = &[
    "serde", "serde_json", "anyhow", "thiserror", "rusqlite", "wasmtime", "cranelift-codegen",
    "flate2", "miniz_oxide", "crc32fast", "clap", "tracing", "session-archiver", "archiver-kit",
];

pub(crate) const SHELL_OK: &[&str] = &[
    "\\u001b[32mok\\u001b[0m",
    "\\u001b[32mok\\u001b[0m",
    "\\u001b[31mFAILED\\u001b[0m",
];

pub(crate) const BASE64: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
