//! Helpers for the `cli_*` tests: run the built `archiver` binary on temp data directories.
#![allow(dead_code)]

pub mod running;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

/// The built binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_archiver");

/// A built policy component (the testkit's finder: `target/policies/<name>.wasm`).
pub fn policy(name: &str) -> PathBuf {
    session_archiver_testkit::policy_path(name)
}

/// `archiver --data-dir DIR` with a clean environment: no `ARCHIVER_*` from the caller, a
/// compile cache shared by the CLI tests (not the user's), the default policy found the way a
/// user's would be (next to the binary).
pub fn archiver(data: &Path) -> Command {
    policy("inactivity");
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ARCHIVER_") {
            c.env_remove(k);
        }
    }
    c.env_remove("RUST_LOG");
    c.env(
        "ARCHIVER_CACHE_DIR",
        concat!(env!("CARGO_TARGET_TMPDIR"), "/cli-cache"),
    );
    c.arg("--data-dir").arg(data);
    c
}

/// Runs and returns the output, whatever the exit status.
pub fn run(mut c: Command) -> Output {
    c.output().expect("run archiver")
}

/// Runs, asserts success, returns stdout.
pub fn ok(c: Command) -> String {
    let shown = format!("{c:?}");
    let out = run(c);
    assert!(
        out.status.success(),
        "{shown} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Runs with the extra args, asserts success, parses stdout as JSON.
pub fn json(data: &Path, args: &[&str]) -> Value {
    let mut c = archiver(data);
    c.args(args);
    let text = ok(c);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
}

/// A fresh data directory with a small demo (every kind of session, a few KB each).
pub fn demo() -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut c = archiver(&data);
    c.args(["demo", "--sessions", "40", "--scale", "0.01"]);
    let out = ok(c);
    assert!(out.contains("42 sessions: 40 agent"), "{out}");
    (tmp, data)
}

/// The object store in a data directory: `wave.db` (what `demo` makes, AgentMux's name),
/// `waveterm.db` (Wave's) or `objects.db`.
pub fn objects_db(data: &Path) -> PathBuf {
    ["wave.db", "waveterm.db", "objects.db"]
        .iter()
        .map(|n| data.join(n))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no object store in {}", data.display()))
}

/// A session's meta from the object store, read with plain SQL (the block JSON may be stored as
/// a BLOB, as AgentMux does, or as TEXT). The connection is closed on return: an open one would
/// make the CLI see a live app.
pub fn meta(data: &Path, id: &str) -> Value {
    let conn = rusqlite::Connection::open(objects_db(data)).expect("open the object store");
    let bytes: Vec<u8> = conn
        .query_row("SELECT data FROM db_block WHERE oid = ?1", [id], |r| {
            Ok(r.get_ref(0)?.as_bytes()?.to_vec())
        })
        .expect("the session exists");
    let v: Value = serde_json::from_slice(&bytes).expect("block JSON");
    v["meta"].clone()
}

/// The exit code, asserting the process was not killed by a signal.
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Sets one key of a block's meta with plain SQL, the way the app writes it (the JSON as a BLOB),
/// while no archiver runs.
pub fn set_meta_key(data: &Path, id: &str, key: &str, value: Value) {
    let conn = rusqlite::Connection::open(objects_db(data)).unwrap();
    let raw: Vec<u8> = conn
        .query_row("SELECT data FROM db_block WHERE oid = ?1", [id], |r| {
            r.get::<_, rusqlite::types::Value>(0)
        })
        .map(|v| match v {
            rusqlite::types::Value::Blob(b) => b,
            rusqlite::types::Value::Text(t) => t.into_bytes(),
            other => panic!("block data {other:?}"),
        })
        .unwrap();
    let mut block: Value = serde_json::from_slice(&raw).unwrap();
    block["meta"][key] = value;
    conn.execute(
        "UPDATE db_block SET data = ?2 WHERE oid = ?1",
        rusqlite::params![id, serde_json::to_vec(&block).unwrap()],
    )
    .unwrap();
}
