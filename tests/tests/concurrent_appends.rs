//! Concurrent appends: a model test. The app appends to a session's output
//! between operations *and during them* (a kit hook fires just before the k-th call of some
//! import, e.g. between the policy's read and its conditional delete), interleaved with
//! archive, restore, export and both kinds of sweep. Guards: after every step, the
//! concatenation of everything ever appended, in order, is exactly what `export` returns; and
//! an export racing an append returns a prefix of it that holds at least what was there before.
//! Any operation may fail (a conflict with the app is expected); none may lose or reorder bytes.
//!
//! `CONCURRENT_APPENDS_CASES` overrides the case count (default 10 000).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use session_archiver::policy::LoadedPolicy;
use session_archiver_testkit::{append_to, load_policy, shared_runtime, MockHost};

/// Imports a hook can fire before: every call archive, restore, export and sweep make on the
/// session's data.
const HOOK_OPS: [&str; 15] = [
    "objects.get",
    "objects.update-meta",
    "objects.update-meta-if",
    "objects.list",
    "files.stat",
    "files.read",
    "files.create",
    "files.append",
    "files.delete-if-unchanged",
    "files.rename-if-unchanged",
    "archive-dir.create",
    "archive-dir.write",
    "archive-dir.commit",
    "archive-dir.open",
    "archive-dir.read",
];

/// An app append during an operation: before the `nth` call to `HOOK_OPS[op]`.
#[derive(Debug, Clone)]
struct During {
    op: usize,
    nth: usize,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Step {
    /// The app appends between operations.
    Append(Vec<u8>),
    Archive(Option<During>),
    Restore(Option<During>),
    Export(Option<During>),
    /// The sweep (recover pending, archive due, prune).
    Sweep(Option<During>),
}

/// Small appends: JSONL-ish lines, sometimes without a trailing newline, sometimes binary.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (0u32..1000).prop_map(|n| format!("{{\"seq\":{n}}}\n").into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 1..24),
    ]
}

fn during() -> impl Strategy<Value = Option<During>> {
    prop_oneof![
        1 => Just(None),
        3 => (0..HOOK_OPS.len(), prop_oneof![3 => Just(1usize), 1 => 2usize..=3], bytes())
            .prop_map(|(op, nth, bytes)| Some(During { op, nth, bytes })),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => bytes().prop_map(Step::Append),
        3 => during().prop_map(Step::Archive),
        3 => during().prop_map(Step::Restore),
        1 => during().prop_map(Step::Export),
        3 => during().prop_map(Step::Sweep),
    ]
}

/// The inactivity policy, loaded once for every case.
fn policy() -> LoadedPolicy {
    static P: OnceLock<LoadedPolicy> = OnceLock::new();
    P.get_or_init(|| load_policy("inactivity")).clone()
}

const ID: &str = "s";

/// What the cases did, to show the test exercises the races it claims to.
#[derive(Debug, Default)]
struct Stats {
    cases: AtomicUsize,
    steps: AtomicUsize,
    /// Appends made by a hook in the middle of an operation.
    appends_during: AtomicUsize,
    /// Operations that failed with a conflict in a step where the app appended meanwhile (the
    /// app won a race; nothing may be lost).
    raced_conflicts: AtomicUsize,
    /// Other conflicts (e.g. archiving a session already archived).
    conflicts: AtomicUsize,
    /// Operations that failed otherwise (e.g. restore of a session not archived).
    other_errors: AtomicUsize,
}

impl Stats {
    /// Counts the result of one operation; `raced`: a hook appended during it.
    fn count<T>(&self, r: Result<T, session_archiver::error::ArchiverError>, raced: bool) {
        if let Err(e) = r {
            let conflict = matches!(
                e.policy_error(),
                Some(session_archiver::error::PolicyError::Conflict(_))
            );
            let counter = match (conflict, raced) {
                (true, true) => &self.raced_conflicts,
                (true, false) => &self.conflicts,
                (false, _) => &self.other_errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Registers the hook of `d` (if any): it appends once, at the `nth` matching call, and
/// records what it appended in `model`.
fn arm(host: &MockHost, d: &Option<During>, model: &Arc<Mutex<Vec<u8>>>, stats: &Arc<Stats>) {
    let Some(d) = d.clone() else { return };
    let (files, model, stats) = (host.files.clone(), model.clone(), stats.clone());
    let seen = AtomicUsize::new(0);
    host.on_call(HOOK_OPS[d.op], move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) + 1 == d.nth {
            append_to(&files, ID, &d.bytes);
            model.lock().unwrap().extend_from_slice(&d.bytes);
            stats.appends_during.fetch_add(1, Ordering::Relaxed);
        }
    });
}

fn export(a: &session_archiver::archiver::Archiver) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    a.export(ID, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Runs one case; `Err` says which step broke the model.
fn run_case(initial: &[u8], steps: &[Step], stats: &Arc<Stats>) -> Result<(), String> {
    stats.cases.fetch_add(1, Ordering::Relaxed);
    let host = MockHost::new();
    host.session(ID)
        .idle_days(30)
        .meta("session:line_count", serde_json::json!(1))
        .output(initial.to_vec())
        .create();
    let a = host.archiver_with(policy(), shared_runtime(), "{}");
    let model = Arc::new(Mutex::new(initial.to_vec()));

    for (i, step) in steps.iter().enumerate() {
        stats.steps.fetch_add(1, Ordering::Relaxed);
        let before = model.lock().unwrap().clone();
        let fired = || stats.appends_during.load(Ordering::Relaxed);
        let fired_before = fired();
        let mut exported = None;
        match step {
            Step::Append(b) => {
                append_to(&host.files, ID, b);
                model.lock().unwrap().extend_from_slice(b);
            }
            Step::Archive(d) => {
                arm(&host, d, &model, stats);
                let r = a.archive(ID);
                stats.count(r, fired() > fired_before);
            }
            Step::Restore(d) => {
                arm(&host, d, &model, stats);
                let r = a.restore(ID);
                stats.count(r, fired() > fired_before);
            }
            Step::Export(d) => {
                arm(&host, d, &model, stats);
                exported = Some(export(&a));
            }
            Step::Sweep(d) => {
                arm(&host, d, &model, stats);
                let r = a.sweep(|_| {});
                stats.count(r, fired() > fired_before);
            }
        }
        host.rec.clear_call_hooks();
        let want = model.lock().unwrap().clone();
        if let Some(got) = exported {
            let got = got.map_err(|e| format!("step {i} {step:?}: export failed: {e}"))?;
            if !(want.starts_with(&got) && got.len() >= before.len()) {
                return Err(format!(
                    "step {i} {step:?}: a racing export returned {} bytes, not a prefix of the {} \
                     appended holding the {} there before",
                    got.len(),
                    want.len(),
                    before.len()
                ));
            }
        }
        let got = export(&a).map_err(|e| format!("after step {i} {step:?}: export failed: {e}"))?;
        if got != want {
            return Err(format!(
                "after step {i} {step:?}: export gives {} bytes, {} were appended (first difference at {})",
                got.len(),
                want.len(),
                got.iter().zip(&want).position(|(x, y)| x != y).unwrap_or(got.len().min(want.len()))
            ));
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("CONCURRENT_APPENDS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

#[test]
fn everything_ever_appended_is_exported_in_order_whatever_runs_meanwhile() {
    let cases = cases();
    let stats = Arc::new(Stats::default());
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    });
    let strategy = (
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::collection::vec(step(), 1..7),
    );
    let result = runner.run(&strategy, |(initial, steps)| {
        run_case(&initial, &steps, &stats).map_err(TestCaseError::fail)
    });
    eprintln!("concurrent appends: {cases} cases, {stats:?}");
    if let Err(e) = result {
        panic!("{e}");
    }
    // The races really happened: appends inside operations, and conflicts they caused.
    assert!(
        stats.appends_during.load(Ordering::Relaxed) * 3 >= cases as usize,
        "{stats:?}"
    );
    assert!(
        stats.raced_conflicts.load(Ordering::Relaxed) > 0,
        "{stats:?}"
    );
}

#[test]
fn an_append_between_the_archive_read_and_the_delete_survives() {
    // The one interleaving the seed got wrong (logrotate's copytruncate bug), pinned down.
    let steps = [Step::Archive(Some(During {
        op: HOOK_OPS
            .iter()
            .position(|o| *o == "files.delete-if-unchanged")
            .unwrap(),
        nth: 1,
        bytes: b"{\"late\":true}\n".to_vec(),
    }))];
    let stats = Arc::new(Stats::default());
    run_case(b"{\"first\":1}\n", &steps, &stats).unwrap();
    assert_eq!(
        stats.appends_during.load(Ordering::Relaxed),
        1,
        "the hook fired"
    );
    assert_eq!(
        stats.raced_conflicts.load(Ordering::Relaxed),
        1,
        "the archive backed off"
    );
}
