//! The CLI never writes under a live app. A child process holds both databases open the way the
//! app does (SQLite, WAL mode, a row read from each): every writing command is refused with one
//! line naming the database, the process and the two safe ways, and changes no byte of either
//! database, their WAL files or the archive directory; plan, status and export still work and
//! leave the databases as they were; once the child exits, writing works again.

mod cli_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use cli_support::{archiver, code, demo, json, objects_db, ok, run, stderr};
use serde_json::Value;

/// How long an awaited line may take (CI machines are shared); never a pass/fail timing.
const WAIT: Duration = Duration::from_secs(60);

/// The app stand-in: opens each database with Python's sqlite3 module (SQLite's unix VFS, like
/// rusqlite and go-sqlite3), sets the journal mode, reads a row, says "ready", and keeps the
/// connections open until its stdin closes.
const APP: &str = r#"
import sqlite3, sys
mode = sys.argv[1]
conns = []
for path in sys.argv[2:]:
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=" + mode).fetchall()
    table = "db_block" if c.execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'db_block'").fetchone()[0] else "db_wave_file"
    c.execute("SELECT * FROM " + table + " LIMIT 1").fetchall()
    conns.append(c)
print("ready", flush=True)
sys.stdin.read()
"#;

struct App {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl App {
    /// Starts the stand-in on both databases of `data` in journal `mode` and waits until it
    /// holds them.
    fn start(data: &Path, mode: &str) -> App {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(APP)
            .arg(mode)
            .arg(objects_db(data))
            .arg(data.join("filestore.db"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed for this test");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the stand-in app did not start");
        App { child, stdin }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes its stdin and waits for it to exit (closing its connections).
    fn stop(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the stand-in app failed: {status:?}");
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every file that matters, by path: both databases with their `-wal`/`-shm`/`-journal`
/// (`with_shm`: readers legitimately update the shared-memory index, so read-only checks leave
/// it out) and, with `archives`, every file under the archive directory.
fn snapshot(data: &Path, with_shm: bool, archives: bool) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for db in [objects_db(data), data.join("filestore.db")] {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            if suffix == "-shm" && !with_shm {
                continue;
            }
            let p = PathBuf::from(format!("{}{suffix}", db.display()));
            if let Ok(bytes) = std::fs::read(&p) {
                files.insert(p, bytes);
            }
        }
    }
    if archives {
        let mut dirs = vec![data.join("archives")];
        while let Some(d) = dirs.pop() {
            files.insert(d.clone(), Vec::new());
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    files.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
    }
    files
}

fn assert_same(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
    what: &str,
) {
    let names = |m: &BTreeMap<PathBuf, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(before),
        names(after),
        "{what}: files appeared or vanished"
    );
    for (p, bytes) in before {
        assert!(after[p] == *bytes, "{what} changed {}", p.display());
    }
}

fn planned(plan: &Value, action: &str) -> Vec<String> {
    plan["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == action)
        .map(|d| d["target"].as_str().unwrap().to_string())
        .collect()
}

/// The refusal: exit 6, one line naming the database, the process and both safe ways.
fn assert_refused(out: &std::process::Output, data: &Path, app: &App, what: &str) {
    let err = stderr(out);
    assert_eq!(code(out), 6, "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: {err}");
    let named_db = [objects_db(data), data.join("filestore.db")]
        .iter()
        .any(|db| err.contains(&db.display().to_string()));
    assert!(named_db, "{what}: no database named: {err}");
    for part in [
        format!("pid {}", app.pid()),
        "python3".to_string(),
        "stop the app".to_string(),
        "embed the archiver".to_string(),
    ] {
        assert!(err.contains(&part), "{what}: {part:?} missing: {err}");
    }
}

/// A demo with one session archived (to restore) and one idle live one (to archive).
fn prepared() -> (tempfile::TempDir, PathBuf, String, String) {
    let (tmp, data) = demo();
    let plan = json(&data, &["plan", "--json"]);
    let idle = planned(&plan, "archive");
    assert!(idle.len() >= 2, "{plan}");
    let mut c = archiver(&data);
    c.args(["archive", &idle[0]]);
    ok(c);
    (tmp, data, idle[0].clone(), idle[1].clone())
}

fn writing_commands(archived: &str, live: &str) -> Vec<Vec<String>> {
    [
        vec!["sweep"],
        vec!["sweep", "--json", "--strict"],
        vec!["archive", live],
        vec!["restore", archived],
        vec!["recover"],
        vec!["recover", archived],
        vec!["demo", "--sessions", "5", "--scale", "0.01", "--force"],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect()
}

fn refuses_every_writer_and_serves_readers(mode: &str) {
    let (_tmp, data, archived, live) = prepared();
    let app = App::start(&data, mode);
    let before = snapshot(&data, true, true);

    for args in writing_commands(&archived, &live) {
        let mut c = archiver(&data);
        c.args(&args);
        let out = run(c);
        assert_refused(&out, &data, &app, &args.join(" "));
        assert_same(&before, &snapshot(&data, true, true), &args.join(" "));
    }

    // `run` logs and skips each sweep while the app is up, and keeps running.
    let mut c = archiver(&data);
    c.args(["run", "--every", "50ms", "--max-sweeps", "2"]);
    let out = run(c);
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    for n in [1, 2] {
        let line = err
            .lines()
            .find(|l| l.contains(&format!("sweep {n} skipped: refusing to write")))
            .unwrap_or_else(|| panic!("no skip of sweep {n}: {err}"));
        assert!(line.contains(&format!("pid {}", app.pid())), "{line}");
    }
    assert!(!err.contains("archived "), "{err}");
    assert_same(&before, &snapshot(&data, true, true), "run");

    // Readers work next to the app and change neither database nor its WAL.
    let dbs = snapshot(&data, false, false);
    let plan = json(&data, &["plan", "--json"]);
    assert!(planned(&plan, "archive").contains(&live), "{plan}");
    let status = json(&data, &["status", "--json"]);
    assert_eq!(status["objects"], 42, "{status}");
    assert_eq!(status["agent_sessions"]["archived"], 1, "{status}");
    for id in [&archived, &live] {
        let mut c = archiver(&data);
        c.args(["export", id]);
        let out = run(c);
        assert!(out.status.success(), "export {id}: {}", stderr(&out));
        assert!(!out.stdout.is_empty(), "export {id} wrote nothing");
    }
    assert_same(
        &dbs,
        &snapshot(&data, false, false),
        "plan, status and export",
    );

    // Once the app has stopped, writing works again.
    app.stop();
    let mut c = archiver(&data);
    c.args(["restore", &archived]);
    ok(c);
    let sweep = json(&data, &["sweep", "--json"]);
    assert!(sweep["archived"].as_u64().unwrap() > 0, "{sweep}");
}

#[test]
fn an_app_holding_the_databases_in_wal_mode_blocks_every_writer_but_not_readers() {
    refuses_every_writer_and_serves_readers("WAL");
}

/// In rollback-journal mode an idle connection holds no SQLite lock: only its open files show.
#[cfg(target_os = "linux")]
#[test]
fn an_idle_app_in_rollback_journal_mode_is_seen_by_its_open_files() {
    refuses_every_writer_and_serves_readers("DELETE");
}

#[test]
fn allow_live_writer_lets_a_writer_known_to_be_safe_through() {
    let (_tmp, data, archived, live) = prepared();
    let app = App::start(&data, "WAL");
    let mut c = archiver(&data);
    c.args(["--allow-live-writer", "archive", &live]);
    ok(c);
    let mut c = archiver(&data);
    c.args(["restore", &archived, "--allow-live-writer"]);
    ok(c);
    let status = json(&data, &["status", "--json"]);
    assert_eq!(status["agent_sessions"]["archived"], 1, "{status}");
    app.stop();
}

/// Lines of a running `archiver run`'s stderr.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(rx: &Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + WAIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line with {needle:?}; got:\n{}", seen.join("\n"));
}

#[test]
fn run_waits_for_the_app_to_stop_then_sweeps() {
    let (_tmp, data) = demo();
    let app = App::start(&data, "WAL");
    let before = snapshot(&data, true, true);
    let mut c = archiver(&data);
    c.args(["run", "--every", "100ms", "--max-sweeps", "100000"]);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let rx = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for(&rx, "sweep 2 skipped: refusing to write", &mut seen);
    assert_same(
        &before,
        &snapshot(&data, true, true),
        "run while the app is up",
    );
    app.stop();
    let line = wait_for(&rx, "archived ", &mut seen);
    assert!(line.contains("policy inactivity@"), "{line}");
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn readers_leave_a_stopped_apps_rollback_journal_databases_byte_for_byte() {
    let (_tmp, data) = demo();
    let dbs = [objects_db(&data), data.join("filestore.db")];
    for db in &dbs {
        let c = rusqlite::Connection::open(db).unwrap();
        let mode: String = c
            .pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
    }
    let before = snapshot(&data, true, false);
    let plan = json(&data, &["plan", "--json"]);
    let id = planned(&plan, "archive")[0].clone();
    json(&data, &["status", "--json"]);
    let mut c = archiver(&data);
    c.args(["export", &id]);
    let out = run(c);
    assert!(out.status.success(), "{}", stderr(&out));
    for db in &dbs {
        assert_eq!(
            std::fs::read(db).unwrap(),
            before[db],
            "{} changed",
            db.display()
        );
        let mode: String = rusqlite::Connection::open(db)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete", "{} was switched to {mode}", db.display());
    }
}
