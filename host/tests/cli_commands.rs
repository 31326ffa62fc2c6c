//! The `archiver` command as a user runs it: demo data, plan, sweep, status, restore, export, and
//! the errors a user meets (unknown id, garbage policy, missing data directory).

mod app_schema;
mod cli_support;

use std::io::Read;
use std::process::Stdio;

use app_schema::{WAVE_BLOCK_SCHEMA, WAVE_FILE_SCHEMA};
use cli_support::{archiver, code, demo, json, meta, ok, policy, run, stderr};
use serde_json::Value;
use session_archiver::store::DAY_MS;

/// The sessions a plan would archive, largest first.
fn planned_archives(plan: &Value) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = plan["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter(|d| d["action"] == "archive")
        .map(|d| {
            (
                d["target"].as_str().unwrap().to_string(),
                d["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort_by_key(|(_, b)| std::cmp::Reverse(*b));
    v
}

#[test]
fn demo_plan_sweep_status_restore_and_export_work_end_to_end() {
    let (_tmp, data) = demo();

    // plan: a table for people, JSON for scripts; both agree on what would be archived.
    let mut c = archiver(&data);
    c.arg("plan");
    let table = ok(c);
    assert!(
        table.contains("ACTION") && table.contains("REASON"),
        "{table}"
    );
    assert!(table.contains("would archive"), "{table}");
    let plan = json(&data, &["plan", "--json"]);
    assert_eq!(plan["policy"]["name"], "inactivity");
    assert_eq!(plan["scanned"], 42);
    let planned = planned_archives(&plan);
    assert!(
        planned.len() >= 10,
        "the demo has plenty of idle sessions: {plan}"
    );
    assert!(plan["skipped"]["pinned"].as_u64().unwrap() >= 1);
    assert!(plan["archive_cap"].as_u64().unwrap() > 0);

    // sweep --json: exactly the planned sessions archived, compressed, nothing failed.
    let sweep = json(&data, &["sweep", "--json"]);
    assert_eq!(sweep["archived"].as_u64().unwrap(), planned.len() as u64);
    assert_eq!(sweep["failed"].as_array().unwrap().len(), 0, "{sweep}");
    let raw = sweep["bytes_archived"].as_u64().unwrap();
    let written = sweep["bytes_written"].as_u64().unwrap();
    assert_eq!(raw, planned.iter().map(|(_, b)| b).sum::<u64>());
    assert!(written > 0 && written < raw, "{sweep}");
    assert_eq!(sweep["prune"]["pruned"], 0);
    assert_eq!(sweep["scanned"], 42);

    // status agrees with the sweep and with the archive directory on disk.
    let status = json(&data, &["status", "--json"]);
    let agents = &status["agent_sessions"];
    assert_eq!(agents["total"], 40);
    assert_eq!(agents["archived"].as_u64().unwrap(), planned.len() as u64);
    assert_eq!(
        agents["live"].as_u64().unwrap() + agents["archived"].as_u64().unwrap(),
        40
    );
    assert_eq!(status["pending_intents"], 0);
    assert_eq!(
        status["archive_files"].as_u64().unwrap(),
        planned.len() as u64
    );
    assert_eq!(status["archive_bytes"].as_u64().unwrap(), written);
    assert_eq!(status["archive_cap"], plan["archive_cap"]);

    // export of an archived session: as many lines as its meta says, to stdout and to a file.
    let (id, bytes) = planned[0].clone();
    let lines = meta(&data, &id)["session:line_count"].as_u64().unwrap();
    assert!(lines > 0);
    let mut c = archiver(&data);
    c.args(["export", &id]);
    let out = run(c);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout.len() as u64, bytes);
    assert_eq!(
        out.stdout.iter().filter(|&&b| b == b'\n').count() as u64,
        lines
    );
    assert!(
        stderr(&out).contains(&format!("exported {lines} lines")),
        "{}",
        stderr(&out)
    );
    let file = data.join("export.jsonl");
    let mut c = archiver(&data);
    c.args(["export", &id, "-o"]).arg(&file);
    ok(c);
    assert_eq!(std::fs::read(&file).unwrap(), out.stdout);

    // restore: one line naming the session; it is live again and exports the same bytes.
    let mut c = archiver(&data);
    c.args(["restore", &id]);
    let line = ok(c);
    assert!(line.starts_with(&format!("restored {id}: ")), "{line}");
    assert_eq!(line.lines().count(), 1);
    let m = meta(&data, &id);
    assert!(
        m.get("session:archived_at").is_none_or(Value::is_null),
        "{m}"
    );
    let mut c = archiver(&data);
    c.args(["export", &id]);
    let again = run(c);
    assert_eq!(again.stdout, out.stdout, "restore gave back the same bytes");
    let status = json(&data, &["status", "--json"]);
    assert_eq!(
        status["agent_sessions"]["archived"].as_u64().unwrap(),
        planned.len() as u64 - 1
    );

    // archive it again by hand, with --json.
    let a = json(&data, &["archive", &id, "--json"]);
    assert_eq!(a["raw_bytes"].as_u64().unwrap(), bytes);
    let path = a["archive_path"].as_str().unwrap();
    assert!(std::path::Path::new(path).is_file(), "{path}");
    assert_eq!(a["archive_name"], format!("{id}.jsonl.gz"));
}

#[test]
fn an_unknown_session_is_one_line_naming_it_and_exits_3() {
    let (_tmp, data) = demo();
    for cmd in ["restore", "export", "archive"] {
        let mut c = archiver(&data);
        c.args([cmd, "no-such-session"]);
        let out = run(c);
        assert_eq!(code(&out), 3, "{cmd}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{cmd}: one line: {err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains("no-such-session"), "{err}");
        assert!(err.contains("inactivity@"), "names the policy: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn restoring_a_session_that_is_not_archived_fails_with_one_line() {
    let (_tmp, data) = demo();
    let plan = json(&data, &["plan", "--json"]);
    let live = plan["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["action"] == "skip")
        .expect("a skipped session")["target"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = archiver(&data);
    c.args(["restore", &live]);
    let out = run(c);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("restoring {live}")), "{err}");
}

#[test]
fn a_garbage_policy_file_is_a_clear_error_and_exits_4() {
    let (tmp, data) = demo();
    let garbage = tmp.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not a component at all").unwrap();
    for args in [
        vec!["plan"],
        vec!["policy", "info", garbage.to_str().unwrap()],
    ] {
        let mut c = archiver(&data);
        c.arg("--policy").arg(&garbage).args(&args);
        let out = run(c);
        assert_eq!(code(&out), 4, "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("garbage.wasm"), "{err}");
        assert!(err.contains("not a WebAssembly file"), "{err}");
    }
    // A policy file that does not exist, likewise.
    let mut c = archiver(&data);
    c.args(["--policy", "/no/such/policy.wasm", "plan"]);
    let out = run(c);
    assert_eq!(code(&out), 4);
    assert!(stderr(&out).contains("/no/such/policy.wasm"));
}

#[test]
fn policy_info_says_who_the_policy_is() {
    let tmp = tempfile::tempdir().unwrap();
    let path = policy("inactivity");
    let mut c = archiver(tmp.path());
    c.args(["policy", "info"]).arg(&path).arg("--json");
    let v: Value = serde_json::from_str(&ok(c)).unwrap();
    assert_eq!(v["name"], "inactivity");
    assert_eq!(v["wit"], "session-archiver:policy@0.2.0");
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    assert!(!v["description"].as_str().unwrap().is_empty());
    let mut c = archiver(tmp.path());
    c.args(["policy", "info"]).arg(&path);
    let text = ok(c);
    assert!(text.contains("imports:     OK"), "{text}");
}

#[test]
fn a_config_the_policy_rejects_is_one_line_naming_the_field_and_exits_4() {
    let (_tmp, data) = demo();
    let mut c = archiver(&data);
    c.args(["--config", r#"{"inactive_days":"soon"}"#, "plan"]);
    let out = run(c);
    assert_eq!(code(&out), 4);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("inactive_days"), "{err}");

    // And a config from a file is used: a 1-day threshold archives more than the default 7.
    let default = json(&data, &["plan", "--json"]);
    let file = data.join("config.json");
    std::fs::write(&file, r#"{"inactive_days": 1}"#).unwrap();
    let at = format!("@{}", file.display());
    let eager = json(&data, &["--config", &at, "plan", "--json"]);
    assert!(planned_archives(&eager).len() > planned_archives(&default).len());
}

#[test]
fn a_missing_data_dir_is_not_created_and_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("typo");
    let mut c = archiver(&data);
    c.arg("status");
    let out = run(c);
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    assert!(err.contains("objects.db does not exist"), "{err}");
    assert!(!data.exists(), "nothing was created");
}

#[test]
fn demo_refuses_a_non_empty_data_dir_unless_forced() {
    let (_tmp, data) = demo();
    let mut c = archiver(&data);
    c.args(["demo", "--sessions", "20", "--scale", "0.01"]);
    let out = run(c);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(json(&data, &["status", "--json"])["objects"], 42);

    let mut c = archiver(&data);
    c.args(["demo", "--sessions", "20", "--scale", "0.01", "--force"]);
    ok(c);
    let status = json(&data, &["status", "--json"]);
    assert_eq!(status["agent_sessions"]["total"], 20, "replaced: {status}");
}

#[test]
fn a_failed_export_to_a_file_leaves_no_file_behind() {
    let (_tmp, data) = demo();
    let out_dir = data.join("exports");
    std::fs::create_dir(&out_dir).unwrap();
    let mut c = archiver(&data);
    c.args(["export", "no-such-session", "-o"])
        .arg(out_dir.join("x.jsonl"));
    let out = run(c);
    assert_eq!(code(&out), 3);
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert!(left.is_empty(), "no partial or temp file: {left:?}");
}

#[test]
fn a_reader_that_closes_the_pipe_ends_export_quietly() {
    let (_tmp, data) = demo();
    let plan = json(&data, &["plan", "--json"]);
    let (id, bytes) = planned_archives(&plan)[0].clone();
    assert!(bytes > 100_000, "needs more than a pipe buffer: {bytes}");
    let mut c = archiver(&data);
    c.args(["export", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout); // like `| head -c 100`
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?} {}", out.status, stderr(&out));
    assert!(
        !stderr(&out).contains("error"),
        "quiet, no error: {}",
        stderr(&out)
    );
}

#[test]
fn help_documents_exit_codes_and_the_json_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = archiver(tmp.path());
    c.arg("--help");
    let help = ok(c);
    assert!(help.contains("Exit codes:") && help.contains("3  not found"));
    let mut c = archiver(tmp.path());
    c.args(["sweep", "--help"]);
    let help = ok(c);
    assert!(help.contains("bytes_archived") && help.contains("--strict"));
    // A usage error is exit 2.
    let mut c = archiver(tmp.path());
    c.args(["sweep", "--no-such-flag"]);
    assert_eq!(code(&run(c)), 2);
}

// ---------------------------------------------------------------------------------------------
// A data directory the app made: the Wave schema and rows written with plain SQL.

const PART: usize = 64 * 1024;

/// `n` JSONL lines of about 100 bytes each.
fn jsonl(n: usize, tag: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..n {
        v.extend_from_slice(
            format!(
                "{{\"type\":\"assistant\",\"seq\":{i},\"tag\":\"{tag}\",\"text\":\"line {i} of the session, padded {}\"}}\n",
                "x".repeat(i % 40)
            )
            .as_bytes(),
        );
    }
    v
}

/// The parts a circular file of `max` bytes holds after `data` was appended, as the app lays
/// them out: byte `o` in part `(o / 64K) % (max / 64K)`.
fn circular_parts(data: &[u8], max: usize) -> Vec<(i64, Vec<u8>)> {
    let mut parts: std::collections::BTreeMap<i64, Vec<u8>> = Default::default();
    for (o, b) in data.iter().enumerate() {
        let p = parts.entry(((o / PART) % (max / PART)) as i64).or_default();
        let off = o % PART;
        if p.len() <= off {
            p.resize(off + 1, 0);
        }
        p[off] = *b;
    }
    parts.into_iter().collect()
}

#[test]
fn a_data_dir_made_by_raw_sql_in_the_wave_layout_works() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("wave");
    std::fs::create_dir(&data).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;

    let plain = jsonl(3000, "plain"); // ~250 KB: several full 64 KiB parts and a short last one
    let ring = jsonl(4000, "ring");
    let ring_max = 2 * PART;
    let recent = jsonl(10, "recent");
    {
        let files = rusqlite::Connection::open(data.join("filestore.db")).unwrap();
        files.execute_batch(WAVE_FILE_SCHEMA).unwrap();
        let file = "INSERT INTO db_wave_file VALUES (?1, 'output', ?2, ?3, ?3, ?4, '{}')";
        let part = "INSERT INTO db_file_data VALUES (?1, 'output', ?2, ?3)";
        for (id, bytes) in [("blk-plain", &plain), ("blk-recent", &recent)] {
            files
                .execute(file, rusqlite::params![id, bytes.len() as i64, now, "{}"])
                .unwrap();
            for (i, chunk) in bytes.chunks(PART).enumerate() {
                files
                    .execute(part, rusqlite::params![id, i as i64, chunk])
                    .unwrap();
            }
        }
        let opts = format!(r#"{{"maxsize":{ring_max},"circular":true}}"#);
        files
            .execute(
                file,
                rusqlite::params!["blk-ring", ring.len() as i64, now, opts],
            )
            .unwrap();
        for (i, bytes) in circular_parts(&ring, ring_max) {
            files
                .execute(part, rusqlite::params!["blk-ring", i, bytes])
                .unwrap();
        }

        let objects = rusqlite::Connection::open(data.join("objects.db")).unwrap();
        objects.execute_batch(WAVE_BLOCK_SCHEMA).unwrap();
        let block = |id: &str, view: &str, idle_days: i64, lines: usize| {
            serde_json::json!({
                "otype": "block",
                "oid": id,
                "version": 1,
                "meta": {
                    "view": view,
                    "session:last_activity_ms": now - idle_days * DAY_MS,
                    "session:line_count": lines,
                },
            })
            .to_string()
        };
        for (id, view, idle, lines) in [
            ("blk-plain", "agent", 20, 3000),
            ("blk-ring", "agent", 30, 4000),
            ("blk-recent", "agent", 0, 10),
            ("blk-term", "term", 40, 0),
        ] {
            objects
                .execute(
                    "INSERT INTO db_block (oid, version, data) VALUES (?1, 1, ?2)",
                    rusqlite::params![id, block(id, view, idle, lines)],
                )
                .unwrap();
        }
    }

    let plan = json(&data, &["plan", "--json"]);
    let mut planned: Vec<String> = planned_archives(&plan).into_iter().map(|p| p.0).collect();
    planned.sort();
    assert_eq!(planned, ["blk-plain", "blk-ring"], "{plan}");

    let sweep = json(&data, &["sweep", "--json"]);
    assert_eq!(sweep["archived"], 2, "{sweep}");
    assert_eq!(sweep["failed"].as_array().unwrap().len(), 0, "{sweep}");

    let status = json(&data, &["status", "--json"]);
    assert_eq!(status["objects"], 4);
    assert_eq!(status["agent_sessions"]["archived"], 2);
    assert_eq!(status["agent_sessions"]["live"], 1);
    assert_eq!(
        status["live_files"], 1,
        "only the recent session stays live"
    );

    // The archived bytes come back exactly: all of the plain file, what the ring still held.
    let export = |id: &str| {
        let mut c = archiver(&data);
        c.args(["export", id]);
        let out = run(c);
        assert!(out.status.success(), "{}", stderr(&out));
        out.stdout
    };
    assert_eq!(export("blk-plain"), plain);
    let held = &ring[ring.len() - ring_max..];
    let ring_out = export("blk-ring");
    assert!(
        held.ends_with(&ring_out) && ring_out.len() + PART > held.len(),
        "the ring's held bytes (maybe less a cut first line): {} of {}",
        ring_out.len(),
        held.len()
    );

    // Restore writes the app's layout back: 64 KiB parts that concatenate to the original.
    let mut c = archiver(&data);
    c.args(["restore", "blk-plain"]);
    ok(c);
    let files = rusqlite::Connection::open(data.join("filestore.db")).unwrap();
    let mut stmt = files
        .prepare(
            "SELECT data FROM db_file_data WHERE zoneid = 'blk-plain' AND name = 'output' \
             ORDER BY partidx",
        )
        .unwrap();
    let parts: Vec<Vec<u8>> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(parts[..parts.len() - 1].iter().all(|p| p.len() == PART));
    assert_eq!(parts.concat(), plain);
    let size: i64 = files
        .query_row(
            "SELECT size FROM db_wave_file WHERE zoneid = 'blk-plain' AND name = 'output'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(size as usize, plain.len());
    // The schema is the app's, unaltered: no table of ours appeared.
    let objects = rusqlite::Connection::open(data.join("objects.db")).unwrap();
    let tables: Vec<String> = objects
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tables, ["db_block", "schema_migrations"]);
}

#[test]
fn a_sweep_over_the_cap_prunes_and_restoring_a_pruned_session_says_when() {
    let (_tmp, data) = demo();
    let cap = ["--config", r#"{"max_total_bytes":1000}"#];
    let sweep = json(&data, &[&cap[..], &["sweep", "--json"]].concat());
    let prune = &sweep["prune"];
    let pruned = prune["pruned"].as_u64().unwrap();
    let tombstoned = prune["tombstoned"].as_u64().unwrap();
    assert!(pruned > 0 && tombstoned > 0, "{sweep}");
    assert!(prune["bytes_freed"].as_u64().unwrap() > 0);

    let status = json(&data, &[&cap[..], &["status", "--json"]].concat());
    assert_eq!(status["archive_cap"], 1000);
    assert!(
        status["archive_bytes"].as_u64().unwrap() <= 1000,
        "{status}"
    );
    assert_eq!(
        status["agent_sessions"]["pruned"].as_u64().unwrap(),
        tombstoned
    );

    let conn = rusqlite::Connection::open(data.join("objects.db")).unwrap();
    let id: String = conn
        .query_row(
            "SELECT oid FROM db_block \
             WHERE json_extract(data, '$.meta.\"session:archive_pruned_at\"') > 0 LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut c = archiver(&data);
    c.args(["restore", &id]);
    let out = run(c);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "error: restoring {id}: its only archive was pruned at 20"
        )),
        "{err}"
    );

    // Nothing was interrupted, so recovery finds nothing.
    let rec = json(&data, &["recover", "--json"]);
    assert_eq!(rec["examined"], 0);
    assert_eq!(rec["failed"].as_array().unwrap().len(), 0);
}

#[test]
fn a_sweep_skips_a_session_another_process_holds_instead_of_waiting_or_racing() {
    let (_tmp, data) = demo();
    let plan = json(&data, &["plan", "--json"]);
    let planned = planned_archives(&plan);
    let (held, _) = planned[0].clone();

    // Hold the session's lock the way another archiver process would (flock on its lock file).
    let locks = data.join("archives/.locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock = std::fs::File::create(locks.join(format!("{held}.lock"))).unwrap();
    lock.lock().unwrap();

    let started = std::time::Instant::now();
    let sweep = json(&data, &["sweep", "--json"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(sweep["skipped"]["locked"], 1, "{sweep}");
    assert_eq!(
        sweep["archived"].as_u64().unwrap(),
        planned.len() as u64 - 1
    );
    let m = meta(&data, &held);
    assert!(
        m.get("session:archived_at").is_none_or(Value::is_null),
        "the held session was left alone: {m}"
    );

    // Other sessions are not blocked by it either.
    let (other, _) = planned[1].clone();
    let mut c = archiver(&data);
    c.args(["restore", &other]);
    ok(c);

    drop(lock);
    let a = json(&data, &["archive", &held, "--json"]);
    assert!(a["raw_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn plan_lists_only_what_it_would_do_unless_asked_for_all() {
    // On a real store most candidates are skipped: the default table must not drown the actions.
    let (_tmp, data) = demo();
    let mut c = archiver(&data);
    c.arg("plan");
    let short = ok(c);
    assert!(short.contains("archive "), "{short}");
    assert!(
        !short.lines().any(|l| l.starts_with("skip ")),
        "skips listed without --all:\n{short}"
    );
    assert!(short.contains("skipped candidates not listed"), "{short}");

    let mut c = archiver(&data);
    c.args(["plan", "--all"]);
    let all = ok(c);
    assert!(all.lines().any(|l| l.starts_with("skip ")), "{all}");
    assert!(all.lines().count() > short.lines().count());
}
