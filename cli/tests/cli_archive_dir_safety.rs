//! The `archiver` command on an archive directory a user also keeps files in, with a FIFO in it,
//! moved while `run` works, and with a prune that fails: nothing of the user's is touched,
//! nothing blocks, everything is owner-only, and failures show in the exit code.

mod cli_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cli_support::running::Running;
use cli_support::{archiver, code, demo, json, ok, run, stderr};
use serde_json::Value;

/// Watchdog for a process that must end (generous: it turns a hang into a failure, no more).
const WAIT: Duration = Duration::from_secs(60);

/// A user's own files next to the archives, with their bytes.
const FOREIGN: [(&str, &[u8]); 4] = [
    ("notes-2026.tar.gz", b"\x1f\x8b not ours"),
    ("backup.gz", b"\x1f\x8b also not ours"),
    ("README.txt", b"my notes"),
    ("session.jsonl.gz.bak", b"a copy I made"),
];

fn plant_foreign(archives: &Path) {
    for (name, bytes) in FOREIGN {
        std::fs::write(archives.join(name), bytes).unwrap();
    }
    std::fs::create_dir(archives.join("mine")).unwrap();
    std::fs::write(archives.join("mine/keep.gz"), b"inside my folder").unwrap();
}

fn assert_foreign_untouched(archives: &Path) {
    for (name, bytes) in FOREIGN {
        assert_eq!(
            std::fs::read(archives.join(name)).ok().as_deref(),
            Some(bytes),
            "{name} was touched"
        );
    }
    assert_eq!(
        std::fs::read(archives.join("mine/keep.gz")).unwrap(),
        b"inside my folder"
    );
}

/// The sessions the plan would archive.
fn planned(data: &Path) -> Vec<String> {
    let plan = json(data, &["plan", "--json"]);
    plan["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "archive")
        .map(|d| d["target"].as_str().unwrap().to_string())
        .collect()
}

fn with_config(data: &Path, config: &str, args: &[&str]) -> Output {
    let mut c = archiver(data);
    c.args(["--config", config]).args(args);
    run(c)
}

#[test]
fn a_sweep_over_the_cap_prunes_archives_but_never_the_users_own_files() {
    let (_tmp, data) = demo();
    let archives = data.join("archives");
    plant_foreign(&archives);
    // An archive of no session is still an archive: an orphan, pruned first.
    std::fs::write(archives.join("ghost.jsonl.gz"), b"\x1f\x8b orphan").unwrap();

    let out = with_config(&data, r#"{"max_total_bytes": 1}"#, &["sweep", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sweep: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pruned = sweep["prune"]["pruned"].as_u64().unwrap();
    assert!(pruned >= 2, "the cap forces pruning: {sweep}");
    assert!(!archives.join("ghost.jsonl.gz").exists(), "orphan pruned");
    assert_foreign_untouched(&archives);

    let status = json(&data, &["status", "--json"]);
    assert_eq!(status["foreign_files_ignored"], FOREIGN.len() as u64 + 1);
    let listed = std::fs::read_dir(&archives)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.ends_with(".jsonl.gz") && !name.starts_with('.')
        })
        .count();
    assert_eq!(status["archive_files"], listed as u64, "{status}");

    let mut c = archiver(&data);
    c.arg("status");
    let text = ok(c);
    assert!(
        text.contains(&format!("foreign files ignored: {}", FOREIGN.len() + 1)),
        "{text}"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn archives_locks_and_their_directories_are_owner_only_after_a_sweep() {
    let (_tmp, data) = demo();
    let archives = data.join("archives");
    let sweep = json(&data, &["sweep", "--json"]);
    assert!(sweep["archived"].as_u64().unwrap() > 0, "{sweep}");

    assert_eq!(mode(&archives), 0o700, "archive directory");
    let mut seen = 0;
    let mut stack = vec![archives.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            seen += 1;
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                stack.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
            }
        }
    }
    // The archives, the lock directory and a lock file per archived session at least.
    assert!(seen > 2 * sweep["archived"].as_u64().unwrap(), "{seen}");
}

/// Waits for `child` to end, killing it (and failing) if it does not within the watchdog.
fn wait_or_fail(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + WAIT;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn export_and_restore_of_an_archive_that_is_a_fifo_fail_at_once() {
    let (_tmp, data) = demo();
    let id = planned(&data).into_iter().next().expect("an idle session");
    let mut c = archiver(&data);
    c.args(["archive", &id]);
    ok(c);
    let archive = data.join("archives").join(format!("{id}.jsonl.gz"));
    std::fs::remove_file(&archive).unwrap();
    let made = Command::new("mkfifo").arg(&archive).status().unwrap();
    assert!(made.success());

    for op in ["export", "restore"] {
        let mut c = archiver(&data);
        c.args([op, &id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = wait_or_fail(c.spawn().unwrap(), op);
        assert_eq!(code(&out), 1, "{op}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("FIFO") && err.contains(&id), "{op}: {err}");
    }
    // Still archived: the session was not changed by the refused operations.
    assert!(cli_support::meta(&data, &id)["session:archived_at"].as_i64() > Some(0));
}

#[test]
fn sweep_strict_exits_5_when_the_prune_cannot_remove_an_archive() {
    let (_tmp, data) = demo();
    let first = json(&data, &["sweep", "--json"]);
    assert!(first["archived"].as_u64().unwrap() > 0, "{first}");

    // From now on the object store refuses every write, so each prune's tombstone fails: the
    // sweep itself has nothing else to do, only the prune fails.
    let conn = rusqlite::Connection::open(cli_support::objects_db(&data)).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse_update BEFORE UPDATE ON db_block
           BEGIN SELECT RAISE(ABORT, 'writes refused by the test'); END;
         CREATE TRIGGER refuse_insert BEFORE INSERT ON db_block
           BEGIN SELECT RAISE(ABORT, 'writes refused by the test'); END;",
    )
    .unwrap();
    drop(conn);

    let config = r#"{"max_total_bytes": 1}"#;
    let lenient = with_config(&data, config, &["sweep", "--json"]);
    assert_eq!(code(&lenient), 0, "without --strict: {}", stderr(&lenient));
    let report: Value = serde_json::from_slice(&lenient.stdout).unwrap();
    assert_eq!(report["failed"].as_array().unwrap().len(), 0, "{report}");
    let prune_failed = report["prune"]["failed"].as_array().unwrap().len();
    assert!(prune_failed > 0, "{report}");

    let strict = with_config(&data, config, &["sweep", "--json", "--strict"]);
    assert_eq!(code(&strict), 5, "{}", stderr(&strict));
    assert!(
        stderr(&strict).contains(&format!(
            "{prune_failed} sessions, archives or steps failed"
        )),
        "{}",
        stderr(&strict)
    );
    let mut c = archiver(&data);
    c.args(["--config", config, "sweep", "--strict"]);
    let text = run(c);
    assert_eq!(code(&text), 5, "text output too: {}", stderr(&text));
}

#[test]
fn run_stops_with_a_failure_when_its_archive_directory_is_moved_away() {
    let (tmp, data) = demo();
    let mut c = archiver(&data);
    c.args(["run", "--every", "200ms", "--max-sweeps", "1000"]);
    let mut running = Running::start(c);
    running.wait_for("sweep 1:");
    let moved = tmp.path().join("archives-moved");
    std::fs::rename(data.join("archives"), &moved).unwrap();

    let (code, lines) = running.finish();
    let all = lines.join("\n");
    assert_eq!(code, 1, "{all}");
    let last = lines.last().expect("an error line");
    assert!(
        last.starts_with("error: stopping before sweep")
            && last.contains("archive directory")
            && last.contains("moved"),
        "{all}"
    );
    assert!(!all.contains("done:"), "{all}");
}
