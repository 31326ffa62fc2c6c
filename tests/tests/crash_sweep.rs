//! Crash sweep, in process: for archive, restore and whole sweeps over a
//! mixed store, "crash" after call N (every later call traps, so the operation dies where it
//! stands and its uncommitted archive writes vanish) for every N from 0 to T-1. Guards: after
//! the crash the bytes are still all somewhere and meta claims no unverified archive; after a
//! restart, `recover` settles every session, a second `recover` finds nothing to do and writes
//! nothing, and the operation then completes.

mod reliability;

use reliability::{break_each_call, check, Mixed, Operation, Phase};
use serde_json::json;
use session_archiver::archiver::Archiver;
use session_archiver_testkit::fixtures::jsonl_lines;
use session_archiver_testkit::recorder::is_write;
use session_archiver_testkit::{Fault, MockHost};

/// Crashes `op` after each of its calls in turn. Returns T.
fn sweep_crashes(op: Operation) -> usize {
    break_each_call(
        op,
        "crash after call",
        |total| 0..=total - 1,
        |n| Fault::CrashAfter { n },
        |m: &Mixed, context: &str| {
            let first = m
                .archiver
                .recover_pending()
                .unwrap_or_else(|e| panic!("{context}: recover failed: {e}"))
                .value;
            assert!(
                first.failed.is_empty(),
                "{context}: recover failed on {:?}",
                first.failed
            );
            check(
                &m.host,
                &m.expects,
                Phase::Settled,
                &format!("{context}, after recover"),
            );

            m.host.rec.reset_log();
            let second = m
                .archiver
                .recover_pending()
                .unwrap_or_else(|e| panic!("{context}: second recover failed: {e}"))
                .value;
            assert_eq!(
                (
                    second.examined,
                    second.finished,
                    second.rolled_back,
                    second.failed.len()
                ),
                (0, 0, 0, 0),
                "{context}: the second recover found work: {second:?}"
            );
            // Cleaning temp files is housekeeping the host always asks for; nothing else may write.
            let writes: Vec<_> = m
                .host
                .calls()
                .into_iter()
                .filter(|c| is_write(&c.op) && c.op != "archive-dir.clean-temps")
                .collect();
            assert!(
                writes.is_empty(),
                "{context}: the second recover wrote: {writes:?}"
            );
            check(
                &m.host,
                &m.expects,
                Phase::Settled,
                &format!("{context}, after recover twice"),
            );

            op.finish(m, context);
            check(
                &m.host,
                &m.expects,
                Phase::Settled,
                &format!("{context}, after the operation again"),
            );
        },
    )
}

#[test]
fn an_archive_crashing_after_any_call_is_recovered_idempotently_without_loss() {
    let t = sweep_crashes(Operation::Archive);
    eprintln!("crash sweep: archive makes {t} calls; crashed after each of 0..{t}");
}

#[test]
fn a_restore_crashing_after_any_call_is_recovered_idempotently_without_loss() {
    let t = sweep_crashes(Operation::Restore);
    eprintln!("crash sweep: restore makes {t} calls; crashed after each of 0..{t}");
}

#[test]
fn a_sweep_crashing_after_any_call_is_recovered_idempotently_without_loss() {
    let t = sweep_crashes(Operation::Sweep);
    eprintln!("crash sweep: the sweep makes {t} calls; crashed after each of 0..{t}");
}

#[test]
fn an_archive_written_as_parallel_members_crashing_after_any_call_is_recovered_without_loss() {
    let t = sweep_crashes(Operation::ArchiveMembers);
    eprintln!("crash sweep: archive as members makes {t} calls; crashed after each of 0..{t}");
}

#[test]
fn a_sweep_writing_parallel_members_crashing_after_any_call_is_recovered_without_loss() {
    let t = sweep_crashes(Operation::SweepMembers);
    eprintln!("crash sweep: the sweep with members makes {t} calls; crashed after each of 0..{t}");
}

/// A `term` session archived by hand (`archiver archive ID`), crashed right after its archive
/// intent was recorded. Returns the host, an archiver on it, and the session's output.
fn hand_archived_term_session_crashed_mid_archive() -> (MockHost, Archiver, Vec<u8>) {
    let data = jsonl_lines(3, 5);
    for n in 1..64 {
        let host = MockHost::new();
        host.session("t")
            .idle_days(10)
            .output(data.clone())
            .meta("view", json!("term"))
            .create();
        let archiver = host.archiver("inactivity", "{}");
        host.rec.reset_log();
        host.inject(Fault::CrashAfter { n });
        let crashed = archiver.archive("t").is_err();
        host.rec.clear_faults();
        let pending = host
            .meta("t")
            .get("session:archive_intent")
            .is_some_and(|v| !v.is_null());
        if crashed && pending {
            return (host, archiver, data);
        }
    }
    panic!("no crash of the archive left its intent in meta");
}

#[test]
fn a_hand_archived_term_session_interrupted_mid_archive_is_recovered_by_the_sweep_too() {
    // The policy's plan only judges agent sessions, so recovery that followed the plan never saw
    // a `term` session a person archived by hand and a crash interrupted: its intent stayed, and
    // the session stayed busy for ever. The host now finds intents in meta itself.
    let (host, archiver, data) = hand_archived_term_session_crashed_mid_archive();
    let plan = archiver.plan().expect("plan").value;
    assert!(
        !plan.decisions.iter().any(|d| d.target == "t"),
        "the plan never lists a term session: {:?}",
        plan.decisions
    );
    let sweep = archiver.sweep(|_| {}).expect("sweep").value;
    assert_eq!(sweep.recovered, 1, "{sweep:?}");
    assert!(sweep.failed.is_empty(), "{:?}", sweep.failed);
    assert!(host.meta("t").get("session:archive_intent").is_none());
    assert_eq!(
        host.output("t"),
        Some(data.clone()),
        "the live copy is intact"
    );
    // Recovered, the session can be archived by hand again.
    assert_eq!(
        archiver.archive("t").expect("archive").value.raw_bytes,
        data.len() as u64
    );

    // And `recover` with no id (recover every pending session) finds it the same way.
    let (host, archiver, data) = hand_archived_term_session_crashed_mid_archive();
    let report = archiver.recover_pending().expect("recover").value;
    assert_eq!((report.examined, report.failed.len()), (1, 0), "{report:?}");
    assert_eq!(report.finished + report.rolled_back, 1);
    assert!(host.meta("t").get("session:archive_intent").is_none());
    assert_eq!(host.output("t"), Some(data));
}

/// Crashes `op` after call `n`, then crashes the recovery after each of its calls in turn, then
/// recovers cleanly (twice) and finishes `op`. Returns how many recovery crashes were tried.
fn crash_the_recovery_too(op: Operation) -> usize {
    let clean = reliability::mixed_store_with("inactivity", op.members());
    op.run(&clean).expect("clean run");
    let total = clean.host.rec.count();
    let crashed = |n: usize| {
        let m = reliability::mixed_store_with("inactivity", op.members());
        m.host.inject(Fault::CrashAfter { n });
        let _ = op.run(&m);
        m.host.rec.clear_faults();
        m.host.rec.reset_log();
        m
    };
    let mut tried = 0;
    let mut failures = Vec::new();
    for n in 0..total {
        // How many calls the recovery of this crash makes.
        let probe = crashed(n);
        probe.archiver.recover_pending().expect("recover");
        let recovery_calls = probe.host.rec.count();
        for r in 0..recovery_calls {
            tried += 1;
            let outcome = std::panic::catch_unwind(|| {
                let m = crashed(n);
                m.host.inject(Fault::CrashAfter { n: r });
                let result = m.archiver.recover_pending();
                let context = format!(
                    "{op:?} crashed after call {n}/{total}, its recovery after call {r}/{recovery_calls} \
                     ({:?})",
                    result.as_ref().map(|s| &s.value)
                );
                check(&m.host, &m.expects, Phase::Interrupted, &context);
                m.host.rec.clear_faults();
                let again = m.archiver.recover_pending().expect("recover");
                assert!(
                    again.value.failed.is_empty(),
                    "{context}: {:?}",
                    again.value.failed
                );
                check(
                    &m.host,
                    &m.expects,
                    Phase::Settled,
                    &format!("{context}, recovered"),
                );
                let idle = m.archiver.recover_pending().expect("recover").value;
                assert_eq!(idle.examined, 0, "{context}: a third recover found work");
                op.finish(&m, &context);
                check(
                    &m.host,
                    &m.expects,
                    Phase::Settled,
                    &format!("{context}, finished"),
                );
            });
            if outcome.is_err() {
                failures.push(format!("crash after {n}, recovery crash after {r}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{op:?}: recovery crashes broke the invariant (details above):\n  {}",
        failures.join("\n  ")
    );
    tried
}

#[test]
fn an_archive_whose_recovery_also_crashes_at_any_call_still_loses_nothing() {
    let k = crash_the_recovery_too(Operation::Archive);
    eprintln!("crash sweep: archive, {k} (crash, recovery crash) pairs");
}

#[test]
fn an_archive_as_parallel_members_whose_recovery_also_crashes_at_any_call_still_loses_nothing() {
    let k = crash_the_recovery_too(Operation::ArchiveMembers);
    eprintln!("crash sweep: archive as members, {k} (crash, recovery crash) pairs");
}

#[test]
fn a_restore_whose_recovery_also_crashes_at_any_call_still_loses_nothing() {
    let k = crash_the_recovery_too(Operation::Restore);
    eprintln!("crash sweep: restore, {k} (crash, recovery crash) pairs");
}

#[test]
fn a_sweep_whose_recovery_also_crashes_at_any_call_still_loses_nothing() {
    let k = crash_the_recovery_too(Operation::Sweep);
    eprintln!("crash sweep: the sweep, {k} (crash, recovery crash) pairs");
}

// ---------------------------------------------------------------------------------------------
// Process level: the real SQLite host in a child process that aborts after call N.

mod process {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use serde_json::json;
    use session_archiver::archive_dir::{ArchiveDir, ArchiveReader, ArchiveWriter, Entry};
    use session_archiver::archiver::{Archiver, ArchiverOptions};
    use session_archiver::data_dir::DataDirPaths;
    use session_archiver::host::Stores;
    use session_archiver::store::{
        FileOpts, FileStat, FileStore, Meta, Object, ObjectStore, Page, StoreError, OUTPUT_FILE,
    };
    use session_archiver_testkit::fixtures::jsonl_lines;
    use session_archiver_testkit::{load_policy, shared_runtime};

    use super::reliability::{check, Expect, Phase, StoresView, View};

    /// Set in the child: the data directory to work on.
    pub const DIR_ENV: &str = "ARCHIVER_CRASH_CHILD_DIR";
    /// Set in the child: abort the process before call number N+1.
    pub const ABORT_ENV: &str = "ARCHIVER_CRASH_ABORT_AFTER";
    /// Set in the child: `archive` or `restore`.
    pub const OP_ENV: &str = "ARCHIVER_CRASH_OP";
    /// The child writes how many calls it made here when it was not aborted.
    const CALLS_FILE: &str = "calls";
    /// The test the child process runs (this binary re-executed).
    pub const CHILD_TEST: &str =
        "process::the_crash_child_runs_only_when_spawned_by_the_process_crash_test";

    /// Counts every store call and aborts the whole process at call `limit + 1`.
    struct Failpoint {
        calls: AtomicUsize,
        limit: usize,
    }

    impl Failpoint {
        fn step(&self) {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n > self.limit {
                // No unwinding, no destructors, no flushes: the closest thing to `kill -9`.
                std::process::abort();
            }
        }
    }

    struct Objects(Arc<dyn ObjectStore>, Arc<Failpoint>);
    struct Files(Arc<dyn FileStore>, Arc<Failpoint>);
    struct Dir(Arc<dyn ArchiveDir>, Arc<Failpoint>);
    struct Writer(Box<dyn ArchiveWriter>, Arc<Failpoint>);
    struct Reader(Box<dyn ArchiveReader>, Arc<Failpoint>);

    impl ObjectStore for Objects {
        fn list(&self, after: Option<&str>, limit: u32) -> Result<Page, StoreError> {
            self.1.step();
            self.0.list(after, limit)
        }
        fn get(&self, id: &str) -> Result<Object, StoreError> {
            self.1.step();
            self.0.get(id)
        }
        fn update_meta(&self, id: &str, patch: &Meta) -> Result<Object, StoreError> {
            self.1.step();
            self.0.update_meta(id, patch)
        }
        fn update_meta_if(
            &self,
            id: &str,
            patch: &Meta,
            version: u64,
        ) -> Result<Object, StoreError> {
            self.1.step();
            self.0.update_meta_if(id, patch, version)
        }
        fn insert(&self, id: &str, meta: &Meta) -> Result<Object, StoreError> {
            self.1.step();
            self.0.insert(id, meta)
        }
    }

    impl FileStore for Files {
        fn stat(&self, zone: &str, name: &str) -> Result<Option<FileStat>, StoreError> {
            self.1.step();
            self.0.stat(zone, name)
        }
        fn read(
            &self,
            zone: &str,
            name: &str,
            offset: u64,
            len: u32,
        ) -> Result<Vec<u8>, StoreError> {
            self.1.step();
            self.0.read(zone, name, offset, len)
        }
        fn create(&self, zone: &str, name: &str, opts: FileOpts) -> Result<FileStat, StoreError> {
            self.1.step();
            self.0.create(zone, name, opts)
        }
        fn append(&self, zone: &str, name: &str, data: &[u8]) -> Result<FileStat, StoreError> {
            self.1.step();
            self.0.append(zone, name, data)
        }
        fn delete_if_unchanged(
            &self,
            zone: &str,
            name: &str,
            expected: &FileStat,
        ) -> Result<(), StoreError> {
            self.1.step();
            self.0.delete_if_unchanged(zone, name, expected)
        }
        fn delete(&self, zone: &str, name: &str) -> Result<(), StoreError> {
            self.1.step();
            self.0.delete(zone, name)
        }
        fn rename_if_unchanged(
            &self,
            zone: &str,
            source: &str,
            target: &str,
            expected: Option<&FileStat>,
        ) -> Result<(), StoreError> {
            self.1.step();
            self.0.rename_if_unchanged(zone, source, target, expected)
        }
        fn list_files(&self) -> Result<Vec<(String, String, FileStat)>, StoreError> {
            self.0.list_files()
        }
        fn meta(&self, zone: &str, name: &str) -> Result<Meta, StoreError> {
            self.1.step();
            self.0.meta(zone, name)
        }
        fn set_meta(&self, zone: &str, name: &str, meta: &Meta) -> Result<(), StoreError> {
            self.1.step();
            self.0.set_meta(zone, name, meta)
        }
    }

    impl ArchiveDir for Dir {
        fn list(&self) -> Result<Vec<Entry>, StoreError> {
            self.1.step();
            self.0.list()
        }
        fn stat(&self, name: &str) -> Result<Option<Entry>, StoreError> {
            self.1.step();
            self.0.stat(name)
        }
        fn create(&self, name: &str) -> Result<Box<dyn ArchiveWriter>, StoreError> {
            self.1.step();
            Ok(Box::new(Writer(self.0.create(name)?, self.1.clone())))
        }
        fn open(&self, name: &str) -> Result<Box<dyn ArchiveReader>, StoreError> {
            self.1.step();
            Ok(Box::new(Reader(self.0.open(name)?, self.1.clone())))
        }
        fn remove(&self, name: &str) -> Result<(), StoreError> {
            self.1.step();
            self.0.remove(name)
        }
        fn path(&self, name: &str) -> Result<String, StoreError> {
            self.1.step();
            self.0.path(name)
        }
        fn clean_temps(&self, min_age_ms: i64) -> Result<u32, StoreError> {
            self.1.step();
            self.0.clean_temps(min_age_ms)
        }
    }

    impl ArchiveWriter for Writer {
        fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
            self.1.step();
            self.0.write(chunk)
        }
        fn commit(self: Box<Self>) -> Result<Entry, StoreError> {
            self.1.step();
            self.0.commit()
        }
        fn abort(self: Box<Self>) {
            self.0.abort()
        }
    }

    impl ArchiveReader for Reader {
        fn read(&mut self, max: usize) -> Result<Vec<u8>, StoreError> {
            self.1.step();
            self.0.read(max)
        }
        fn size(&self) -> u64 {
            self.0.size()
        }
    }

    fn open(dir: &Path) -> (Stores, DataDirPaths) {
        let paths = DataDirPaths::under(dir);
        (paths.open(false).expect("open the data directory"), paths)
    }

    fn archiver(stores: Stores, paths: &DataDirPaths) -> Archiver {
        Archiver::new(
            stores,
            shared_runtime(),
            load_policy("inactivity"),
            ArchiverOptions {
                config: "{}".into(),
                workers: Some(1),
                locks: paths.locks(),
            },
        )
        .expect("archiver")
    }

    /// The child's work: the operation named in the environment, through the failpoint.
    pub fn child(dir: &Path) {
        let limit = std::env::var(ABORT_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX);
        let fp = Arc::new(Failpoint {
            calls: AtomicUsize::new(0),
            limit,
        });
        let (real, paths) = open(dir);
        let stores = Stores {
            objects: Arc::new(Objects(real.objects, fp.clone())),
            files: Arc::new(Files(real.files, fp.clone())),
            archive_dir: Arc::new(Dir(real.archive_dir, fp.clone())),
            clock: real.clock,
        };
        let a = archiver(stores, &paths);
        match std::env::var(OP_ENV).as_deref() {
            Ok("archive") => drop(a.archive("live").expect("archive")),
            Ok("restore") => drop(a.restore("archived").expect("restore")),
            other => panic!("unknown {OP_ENV} {other:?}"),
        }
        let calls = fp.calls.load(Ordering::SeqCst);
        std::fs::write(dir.join(CALLS_FILE), calls.to_string()).expect("write call count");
    }

    /// A data directory with a live session (`live`, ~2.5 MB so the archive takes several
    /// chunks) and an archived one with newer output (`archived`).
    fn fixture(dir: &Path) -> Vec<Expect> {
        let (stores, paths) = open(dir);
        let mut expects = Vec::new();
        for (id, lines) in [("live", 20_000), ("archived", 300)] {
            let mut meta = Meta::new();
            meta.insert("view".into(), json!("agent"));
            meta.insert("session:line_count".into(), json!(lines));
            stores.objects.insert(id, &meta).unwrap();
            stores
                .files
                .create(id, OUTPUT_FILE, FileOpts::default())
                .unwrap();
            let bytes = jsonl_lines(id.len() as u64, lines);
            for chunk in bytes.chunks(1 << 20) {
                stores.files.append(id, OUTPUT_FILE, chunk).unwrap();
            }
            expects.push(Expect {
                id: id.into(),
                original: bytes,
                may_be_pruned: false,
            });
        }
        let a = archiver(stores.clone(), &paths);
        a.archive("archived").expect("archive the fixture");
        let newer = jsonl_lines(99, 7);
        stores
            .files
            .create("archived", OUTPUT_FILE, FileOpts::default())
            .unwrap();
        stores
            .files
            .append("archived", OUTPUT_FILE, &newer)
            .unwrap();
        expects[1].original.extend_from_slice(&newer);
        expects
    }

    /// Runs the child on `dir`; returns whether it was aborted (as opposed to finishing).
    fn run_child(dir: &Path, op: &str, abort_after: usize) -> bool {
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(DIR_ENV, dir)
            .env(OP_ENV, op)
            .env(ABORT_ENV, abort_after.to_string())
            .output()
            .expect("spawn the child");
        let finished = dir.join(CALLS_FILE).exists();
        assert!(
            finished == out.status.success(),
            "child {op} N={abort_after}: status {:?}, finished {finished}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        !finished
    }

    /// Every N: a fresh directory, a child aborted after call N, then (in this process, as a
    /// restart) recover twice, check, and run the operation to completion. Returns T.
    pub fn crash_every_step(op: &str) -> usize {
        let base = tempfile::tempdir().unwrap();
        let clean = base.path().join("clean");
        fixture(&clean);
        assert!(
            !run_child(&clean, op, usize::MAX),
            "the clean child was aborted"
        );
        let total: usize = std::fs::read_to_string(clean.join(CALLS_FILE))
            .unwrap()
            .parse()
            .unwrap();
        assert!(total > 0);
        let mut temps_left = 0;
        for n in 0..total {
            let dir = base.path().join(format!("n{n}"));
            let expects = fixture(&dir);
            assert!(
                run_child(&dir, op, n),
                "{op}: the child with N={n} of {total} was not aborted"
            );
            let context = format!("process-level {op} aborted after call {n}/{total}");

            let (stores, paths) = open(&dir);
            let view = StoresView {
                stores: stores.clone(),
                dir: paths.archive_dir.clone(),
            };
            // Writer temp files of the dead process stay until they are old enough for
            // `clean_temps`; everything else must already hold.
            temps_left += view.temp_count();
            let a = archiver(stores.clone(), &paths);
            let first = a
                .recover_pending()
                .unwrap_or_else(|e| panic!("{context}: recover: {e}"))
                .value;
            assert!(first.failed.is_empty(), "{context}: {:?}", first.failed);
            let second = a
                .recover_pending()
                .unwrap_or_else(|e| panic!("{context}: recover: {e}"))
                .value;
            assert_eq!(
                (second.examined, second.finished, second.rolled_back),
                (0, 0, 0),
                "{context}: the second recover found work"
            );
            // A restart long after the crash: stale temps are removed.
            stores.archive_dir.clean_temps(0).expect("clean temps");
            check(
                &view,
                &expects,
                Phase::Settled,
                &format!("{context}, after recover"),
            );

            match op {
                "archive" => {
                    if let Err(e) = a.archive("live") {
                        assert!(e.to_string().contains("already archived"), "{context}: {e}");
                    }
                    assert_eq!(view.output("live"), None, "{context}");
                }
                _ => {
                    if let Err(e) = a.restore("archived") {
                        assert!(e.to_string().contains("not archived"), "{context}: {e}");
                    }
                    assert_eq!(
                        view.output("archived"),
                        Some(expects[1].original.clone()),
                        "{context}"
                    );
                }
            }
            check(
                &view,
                &expects,
                Phase::Settled,
                &format!("{context}, after the operation"),
            );
            drop(a);
            std::fs::remove_dir_all(&dir).ok();
        }
        eprintln!("process-level crash sweep: {op} makes {total} store calls; aborted after each of 0..{total}; {temps_left} writer temp file(s) left by dead children, removed by clean_temps");
        total
    }

    #[test]
    fn the_crash_child_runs_only_when_spawned_by_the_process_crash_test() {
        // In a normal test run this does nothing; re-executed with DIR_ENV it is the child.
        if let Some(dir) = std::env::var_os(DIR_ENV) {
            child(&PathBuf::from(dir));
        }
    }

    #[test]
    fn a_process_aborted_at_any_step_of_an_archive_restarts_recovers_and_loses_nothing() {
        crash_every_step("archive");
    }

    #[test]
    fn a_process_aborted_at_any_step_of_a_restore_restarts_recovers_and_loses_nothing() {
        crash_every_step("restore");
    }
}
