//! Archives in an S3 bucket (`--archive-dir s3://bucket/prefix`), through the `archiver`
//! command, against a real S3-compatible server (moto, started on a loopback port by each test;
//! see `session_archiver_testkit::moto`): archive, restore, export, sweep and prune; an object
//! downloaded with an ordinary client (boto3) passes `gzip -t`; a killed archiver at every S3
//! request of an archive and of a prune loses nothing once recovered; two data directories
//! sharing one prefix never prune each other's archives.

mod cli_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cli_support::{archiver, meta, ok, run};
use serde_json::Value;
use session_archiver_testkit::moto::{Gate, Hold, Moto};
use tempfile::TempDir;

const BUCKET: &str = "team";
/// The crash tests' data directories: small, and the same session ids in each copy.
const CRASH_SEED: u64 = 5;
const CRASH_SESSIONS: usize = 4;

/// One data directory archiving into `url` on `endpoint`.
struct Machine<'a> {
    moto: &'a Moto,
    _tmp: TempDir,
    data: PathBuf,
    url: String,
}

impl<'a> Machine<'a> {
    /// A small demo data directory (seed `seed`) whose archives go to `s3://team/<prefix>`.
    fn new(moto: &'a Moto, prefix: &str, seed: u64) -> Self {
        Self::with_sessions(moto, prefix, seed, 12)
    }

    /// [`new`](Self::new) with `sessions` agent sessions.
    fn with_sessions(moto: &'a Moto, prefix: &str, seed: u64, sessions: usize) -> Self {
        Self::with_demo(moto, prefix, seed, sessions, 0.01)
    }

    /// A demo data directory of `sessions` agent sessions at `scale`.
    fn with_demo(moto: &'a Moto, prefix: &str, seed: u64, sessions: usize, scale: f64) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let m = Machine {
            moto,
            data: tmp.path().join("data"),
            _tmp: tmp,
            url: format!("s3://{BUCKET}/{prefix}"),
        };
        let mut c = m.cmd(&moto.endpoint);
        c.args(["demo", "--seed", &seed.to_string()])
            .args(["--sessions", &sessions.to_string()])
            .args(["--scale", &scale.to_string()]);
        ok(c);
        m
    }

    /// `archiver --data-dir DATA --archive-dir URL --s3-endpoint ENDPOINT` with moto's
    /// credentials.
    fn cmd(&self, endpoint: &str) -> Command {
        let mut c = archiver(&self.data);
        self.moto.env(&mut c);
        c.arg("--archive-dir")
            .arg(&self.url)
            .arg("--s3-endpoint")
            .arg(endpoint);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let mut c = self.cmd(&self.moto.endpoint);
        c.args(args);
        ok(c)
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
    }

    /// `export ID` to stdout; `None` when it fails.
    fn export(&self, id: &str) -> Option<Vec<u8>> {
        let mut c = self.cmd(&self.moto.endpoint);
        c.args(["export", id]);
        let out = run(c);
        out.status.success().then_some(out.stdout)
    }

    /// Every agent session's id (from `plan --json --all`).
    fn agent_sessions(&self) -> Vec<String> {
        let plan = self.json(&["plan", "--json", "--all"]);
        plan["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["action"] != "prune")
            .map(|d| d["target"].as_str().unwrap().to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// What `export` gives for each session now (sessions with nothing to export left out).
    fn exports(&self) -> BTreeMap<String, Vec<u8>> {
        self.exports_of(&self.agent_sessions())
    }

    /// What `export` gives for each of `ids` now (those with nothing to export left out).
    fn exports_of(&self, ids: &[String]) -> BTreeMap<String, Vec<u8>> {
        ids.iter()
            .filter_map(|id| self.export(id).map(|b| (id.clone(), b)))
            .collect()
    }

    /// `(name, size)` of the objects under this machine's prefix, listed with boto3.
    fn objects(&self) -> Vec<(String, u64)> {
        let prefix = self.url.strip_prefix(&format!("s3://{BUCKET}/")).unwrap();
        self.moto
            .list(BUCKET, &format!("{prefix}/"))
            .into_iter()
            .map(|(k, s)| (k.rsplit('/').next().unwrap().to_string(), s))
            .collect()
    }
}

fn started_moto() -> Moto {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    moto
}

fn planned_archives(plan: &Value) -> Vec<String> {
    plan["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "archive")
        .map(|d| d["target"].as_str().unwrap().to_string())
        .collect()
}

fn gzip_test(path: &Path) {
    let st = Command::new("gzip").arg("-t").arg(path).status().unwrap();
    assert!(st.success(), "gzip -t {}", path.display());
}

fn gunzip(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn sweep_archive_restore_export_and_prune_work_against_an_s3_server() {
    let moto = started_moto();
    let m = Machine::new(&moto, "archives", 1);
    let before = m.exports();
    assert!(before.len() >= 10, "{:?}", before.keys());

    let plan = m.json(&["plan", "--json"]);
    let planned = planned_archives(&plan);
    assert!(planned.len() >= 3, "{plan}");
    let text = m.ok(&["plan"]);
    assert!(text.contains("archives in s3://team/archives"), "{text}");

    let sweep = m.json(&["sweep", "--json"]);
    assert_eq!(sweep["failed"].as_array().unwrap().len(), 0, "{sweep}");
    assert_eq!(sweep["archived"].as_u64().unwrap(), planned.len() as u64);

    // One object per archived session, named as on disk; meta records its URL.
    let objects = m.objects();
    let names: BTreeSet<_> = objects.iter().map(|(n, _)| n.clone()).collect();
    let want: BTreeSet<_> = planned.iter().map(|id| format!("{id}.jsonl.gz")).collect();
    assert_eq!(names, want);
    for id in &planned {
        let meta = meta(&m.data, id);
        assert_eq!(
            meta["session:archive_path"],
            format!("s3://team/archives/{id}.jsonl.gz"),
            "{meta}"
        );
        assert!(meta["session:archived_at"].as_i64().unwrap() > 0, "{meta}");
    }

    // An ordinary client downloads a valid gzip holding the session's output.
    let id = &planned[0];
    let dl = tempfile::tempdir().unwrap();
    let file = dl.path().join("a.jsonl.gz");
    moto.download(BUCKET, &format!("archives/{id}.jsonl.gz"), &file);
    gzip_test(&file);
    assert_eq!(&gunzip(&file), &before[id]);

    // status counts exactly the bucket's objects under the prefix.
    let status = m.json(&["status", "--json"]);
    assert_eq!(status["archive_files"], objects.len() as u64, "{status}");
    let total: u64 = objects.iter().map(|(_, s)| s).sum();
    assert_eq!(status["archive_bytes"], total, "{status}");
    assert_eq!(status["agent_sessions"]["archived"], planned.len() as u64);
    let text = m.ok(&["status"]);
    assert!(text.contains("archives in s3://team/archives"), "{text}");

    // Export reads from the bucket; restore brings the output back; archive puts it back.
    assert_eq!(m.exports(), before);
    let restored = m.json(&["restore", id, "--json"]);
    assert!(
        restored["archived_bytes"].as_u64().unwrap() > 0,
        "{restored}"
    );
    assert!(meta(&m.data, id)["session:archived_at"].is_null());
    assert_eq!(m.export(id).as_deref(), Some(&before[id][..]));
    let archived = m.json(&["archive", id, "--json"]);
    assert_eq!(
        archived["archive_path"],
        format!("s3://team/archives/{id}.jsonl.gz")
    );
    assert_eq!(m.exports(), before);

    // A bucket that does not exist fails at once, naming it, before anything is written.
    let mut c = archiver(&m.data);
    moto.env(&mut c);
    c.args(["--archive-dir", "s3://no-such-bucket/x", "--s3-endpoint"])
        .arg(&moto.endpoint)
        .arg("sweep");
    let out = run(c);
    assert!(!out.status.success());
    let err = cli_support::stderr(&out);
    assert!(err.contains("s3://no-such-bucket/x"), "{err}");
    assert_eq!(m.exports(), before, "nothing changed");

    // A cap of half the bucket's usage: the sweep prunes down to it, tombstoning only copies.
    let cap = total / 2;
    let config = format!(r#"{{"max_total_bytes":{cap}}}"#);
    let swept = m.json(&["--config", &config, "sweep", "--json"]);
    assert!(swept["prune"]["pruned"].as_u64().unwrap() > 0, "{swept}");
    let left = m.objects();
    assert!(left.iter().map(|(_, s)| s).sum::<u64>() <= cap, "{left:?}");
    let left: BTreeSet<_> = left.into_iter().map(|(n, _)| n).collect();
    for id in &planned {
        let meta = meta(&m.data, id);
        let has = left.contains(&format!("{id}.jsonl.gz"));
        if meta["session:archived_at"].as_i64().is_some_and(|t| t > 0) {
            assert!(has, "{id}: meta says archived but the object is gone");
            assert_eq!(m.export(id).as_deref(), Some(&before[id][..]));
        } else {
            assert!(!has, "{id}: pruned but the object stayed");
            assert!(
                meta["session:archive_pruned_at"].as_i64().unwrap() > 0,
                "{meta}"
            );
        }
    }
}

#[test]
fn two_archivers_sharing_a_prefix_sweep_and_prune_at_once_without_losing_each_others_archives() {
    let moto = started_moto();
    let a = Machine::new(&moto, "shared", 11);
    let b = Machine::new(&moto, "shared", 22);
    let before_a = a.exports();
    let before_b = b.exports();
    assert!(before_a.keys().all(|id| !before_b.contains_key(id)));

    // Both archive everything idle at once, then prune under a tight cap at once: each sees
    // the other's archives as foreign, never as orphans to prune.
    let sweep_both = |config: &str| {
        let spawn = |m: &Machine| {
            let mut c = m.cmd(&moto.endpoint);
            c.args(["--config", config, "sweep", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        };
        let (ca, cb) = (spawn(&a), spawn(&b));
        [(ca, "a"), (cb, "b")].map(|(child, who)| {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "sweep of {who}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["failed"].as_array().unwrap().len(), 0, "{who}: {v}");
            v
        })
    };
    let [first_a, first_b] = sweep_both("{}");
    assert!(first_a["archived"].as_u64().unwrap() > 0, "{first_a}");
    assert!(first_b["archived"].as_u64().unwrap() > 0, "{first_b}");
    let status_a = a.json(&["status", "--json"]);
    let status_b = b.json(&["status", "--json"]);
    let files = |s: &Value| s["archive_files"].as_u64().unwrap();
    assert!(files(&status_a) > 0 && files(&status_b) > 0);
    assert_eq!(
        a.objects().len() as u64,
        files(&status_a) + files(&status_b),
        "each counts only its own archives"
    );
    assert_eq!(status_a["foreign_files_ignored"], files(&status_b));
    let bytes = |s: &Value| s["archive_bytes"].as_u64().unwrap();
    let cap = bytes(&status_a).min(bytes(&status_b)) / 2;
    let pruned = sweep_both(&format!(r#"{{"max_total_bytes":{cap}}}"#));
    for p in &pruned {
        assert!(p["prune"]["pruned"].as_u64().unwrap() > 0, "{p}");
    }

    for (m, before) in [(&a, &before_a), (&b, &before_b)] {
        let objects: BTreeSet<_> = m.objects().into_iter().map(|(n, _)| n).collect();
        for (id, bytes) in before {
            let meta = meta(&m.data, id);
            if meta["session:archive_pruned_at"]
                .as_i64()
                .is_some_and(|t| t > 0)
            {
                continue;
            }
            if meta["session:archived_at"].as_i64().is_some_and(|t| t > 0) {
                assert!(objects.contains(&format!("{id}.jsonl.gz")), "{id} lost");
            }
            assert_eq!(m.export(id).as_ref(), Some(bytes), "{id}");
        }
    }
    // Each pruned only its own: the other's archived sessions all still have their objects.
    for m in [&a, &b] {
        let s = m.json(&["status", "--json"]);
        assert!(s["archive_bytes"].as_u64().unwrap() <= cap, "{s}");
    }
}

/// Kills the archiver at each S3 request `args` makes (held before it reaches the server and,
/// for each request that changes the bucket, in a second pass after the server did it but
/// before the archiver heard), then recovers
/// and checks nothing was lost: every session exports what it did before (or, when `args`
/// may prune, was pruned with its tombstone recorded), no meta says archived without its
/// object, and `finish` completes the operation.
fn killed_at_every_request(
    prefix: &str,
    setup: impl Fn(&Machine),
    args: &[&str],
    watched: &[String],
    may_prune: bool,
    finish: impl Fn(&Machine),
) -> usize {
    let moto = started_moto();
    let gate = Gate::start(&moto.endpoint);

    // The clean run: how many requests, and what it pruned.
    let clean = Machine::with_sessions(
        &moto,
        &format!("{prefix}-clean"),
        CRASH_SEED,
        CRASH_SESSIONS,
    );
    setup(&clean);
    let before = clean.exports_of(watched);
    assert_eq!(before.len(), watched.len(), "every watched session exports");
    gate.pass();
    let mut c = clean.cmd(&gate.endpoint);
    c.args(args);
    ok(c);
    let total = gate.requests();
    assert!(total > 2, "{args:?} made {total} requests");
    let log = gate.log();
    // Only a request that changes the bucket can be done without the archiver hearing it.
    eprintln!("{args:?} makes these S3 requests: {log:#?}");
    let changes = |n: usize| !log[n - 1].starts_with("GET ") && !log[n - 1].starts_with("HEAD ");
    let pruned_by_clean: BTreeSet<_> = before
        .keys()
        .filter(|id| {
            meta(&clean.data, id)["session:archive_pruned_at"]
                .as_i64()
                .is_some_and(|t| t > 0)
        })
        .cloned()
        .collect();
    assert_eq!(
        !pruned_by_clean.is_empty(),
        may_prune,
        "{pruned_by_clean:?}"
    );

    for how in [Hold::Before, Hold::After] {
        for n in (1..=total).filter(|&n| how == Hold::Before || changes(n)) {
            let what = format!("{args:?} killed at request {n}/{total} ({how:?})");
            let m = Machine::with_sessions(
                &moto,
                &format!("{prefix}-{how:?}-{n}"),
                CRASH_SEED,
                CRASH_SESSIONS,
            );
            setup(&m);
            gate.hold(n, how);
            let mut c = m.cmd(&gate.endpoint);
            c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
            let mut child = c.spawn().unwrap();
            let held = gate.wait_held(|| child.try_wait().unwrap().is_some());
            let _ = child.kill();
            let _ = child.wait();
            gate.pass();
            // The run is the clean run's until the kill: it must reach request n.
            assert!(
                held.is_some(),
                "{what}: the archiver ended before request {n}"
            );
            m.ok(&["recover"]);
            let status = m.json(&["status", "--json"]);
            assert_eq!(status["pending_intents"], 0, "{what}: {status}");
            let names: Vec<_> = m.objects().into_iter().map(|(n, _)| n).collect();
            for (id, bytes) in &before {
                let meta = meta(&m.data, id);
                match m.export(id) {
                    Some(got) => assert_eq!(&got, bytes, "{what}: {id} changed"),
                    // Which archives a prune picks depends on their ages, which the bucket
                    // stamps (the clean run's may differ by a second): an archive pruned here
                    // is no loss if its session records the tombstone.
                    None => assert!(
                        may_prune
                            && meta["session:archive_pruned_at"]
                                .as_i64()
                                .is_some_and(|t| t > 0)
                            && meta["session:archived_at"].is_null(),
                        "{what}: {id} lost without a tombstone: {meta}"
                    ),
                }
                if meta["session:archived_at"].as_i64().is_some_and(|t| t > 0) {
                    assert!(
                        names.contains(&format!("{id}.jsonl.gz")),
                        "{what}: {id} archived without its object"
                    );
                }
            }
            finish(&m);
        }
    }
    total
}

#[test]
fn an_archive_killed_at_any_s3_request_is_recovered_with_nothing_lost() {
    let planned_first = |m: &Machine| planned_archives(&m.json(&["plan", "--json"]))[0].clone();
    // The id is the same in every copy (same seed): take it from a throwaway plan.
    let moto = started_moto();
    let probe = Machine::with_sessions(&moto, "probe", CRASH_SEED, CRASH_SESSIONS);
    let id = planned_first(&probe);
    drop(probe);
    drop(moto);
    let finish = |m: &Machine| {
        // Recovery finished the archive or rolled it back; in the second case it runs again.
        if meta(&m.data, &id)["session:archived_at"].is_null() {
            m.ok(&["archive", &id]);
        }
        assert!(m
            .objects()
            .iter()
            .any(|(n, _)| *n == format!("{id}.jsonl.gz")));
    };
    let t = killed_at_every_request(
        "archive",
        |_| {},
        &["archive", &id],
        std::slice::from_ref(&id),
        false,
        finish,
    );
    eprintln!("archive makes {t} S3 requests; the archiver was killed at each");
}

#[test]
fn a_prune_killed_at_any_s3_request_is_recovered_with_nothing_lost() {
    // Everything idle archived first; then a sweep under a cap of one byte only prunes, and
    // prunes every archive: how many it prunes (so which request does what) never depends on
    // the archives' ages, which the bucket stamps to the second.
    let setup = |m: &Machine| {
        m.json(&["sweep", "--json"]);
    };
    let moto = started_moto();
    let probe = Machine::with_sessions(&moto, "probe", CRASH_SEED, CRASH_SESSIONS);
    setup(&probe);
    // Only archived sessions can lose anything to a prune.
    let archived: Vec<String> = probe
        .agent_sessions()
        .into_iter()
        .filter(|id| {
            meta(&probe.data, id)["session:archived_at"]
                .as_i64()
                .is_some()
        })
        .collect();
    assert!(archived.len() >= 2, "{archived:?}");
    drop(probe);
    drop(moto);
    let args = ["--config", r#"{"max_total_bytes":1}"#, "sweep", "--json"];
    let finish = |m: &Machine| {
        let s = m.json(&args);
        assert_eq!(s["failed"].as_array().unwrap().len(), 0, "{s}");
        let status = m.json(&["status", "--json"]);
        assert_eq!(status["archive_bytes"], 0, "{status}");
        assert_eq!(status["pending_intents"], 0, "{status}");
        assert!(m.objects().is_empty());
    };
    let t = killed_at_every_request("prune", setup, &args, &archived, true, finish);
    eprintln!("the pruning sweep makes {t} S3 requests; the archiver was killed at each");
}

#[test]
fn a_large_archive_is_a_multipart_upload_invisible_until_complete_and_a_kill_mid_upload_loses_nothing(
) {
    let moto = started_moto();
    let gate = Gate::start(&moto.endpoint);
    // At scale 2 the demo's large session is ~40 MB: its archive (~9 MB) takes two 5 MiB parts.
    let m = Machine::with_demo(&moto, "big", 7, 20, 2.0);
    let plan = m.json(&["plan", "--json"]);
    let (id, raw) = plan["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "archive")
        .map(|d| {
            (
                d["target"].as_str().unwrap().to_string(),
                d["bytes"].as_u64().unwrap(),
            )
        })
        .max_by_key(|(_, b)| *b)
        .unwrap();
    assert!(raw > 35_000_000, "the largest session has {raw} bytes");
    let before = m.export(&id).unwrap();
    let key = format!("big/{id}.jsonl.gz");

    // Killed while its second part is on the way: nothing visible, the session intact.
    gate.hold_first(|line| line.contains("partNumber=2"), Hold::Before);
    let mut c = m.cmd(&gate.endpoint);
    c.args(["archive", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let held = gate.wait_held(|| child.try_wait().unwrap().is_some());
    assert!(held.is_some(), "the archive never sent a second part");
    assert!(
        moto.list(BUCKET, "big/").is_empty(),
        "visible before complete"
    );
    assert_eq!(
        moto.open_uploads(BUCKET, "big/"),
        std::slice::from_ref(&key)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    gate.pass();
    m.ok(&["recover"]);
    assert!(meta(&m.data, &id)["session:archived_at"].is_null());
    assert_eq!(m.export(&id).as_deref(), Some(&before[..]));
    // The killed process's upload stays open (README: a lifecycle rule aborts it).
    assert_eq!(
        moto.open_uploads(BUCKET, "big/"),
        std::slice::from_ref(&key)
    );

    // Archived again in full: one object of several parts, a valid gzip of the session.
    let archived = m.json(&["archive", &id, "--json"]);
    let size = archived["archive_bytes"].as_u64().unwrap();
    assert!(size > 5 << 20, "{archived}");
    assert_eq!(moto.list(BUCKET, "big/"), [(key.clone(), size)]);
    let dl = tempfile::tempdir().unwrap();
    let file = dl.path().join("big.jsonl.gz");
    moto.download(BUCKET, &key, &file);
    gzip_test(&file);
    assert_eq!(gunzip(&file), before);
    assert_eq!(m.export(&id).as_deref(), Some(&before[..]));

    // A prune finds it unchanged (the multipart ETag of the listing is the HEAD's) and removes
    // it, tombstoning the session.
    let swept = m.json(&[
        "--config",
        r#"{"inactive_days":36500,"max_total_bytes":1}"#,
        "sweep",
        "--json",
    ]);
    assert_eq!(swept["prune"]["pruned"], 1, "{swept}");
    assert!(moto.list(BUCKET, "big/").is_empty());
    assert!(
        meta(&m.data, &id)["session:archive_pruned_at"]
            .as_i64()
            .unwrap()
            > 0
    );
}
