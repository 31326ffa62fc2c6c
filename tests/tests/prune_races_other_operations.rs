//! A prune never destroys what another operation on the same session made, wherever that
//! operation lands among the prune's steps. Two archived sessions, `s` (older) and `t`, and a cap
//! that one pruned archive satisfies: the prune picks `s`. Another process (an archiver with its
//! own lock map, so no lock excludes the two) makes `s` the newest archive meanwhile — before
//! each call the prune makes, in turn. A prune judging afresh would then pick `t`; one acting on
//! its stale judgement must leave `s` alone. Whatever the order, every byte of `s` the other
//! process handled is still there at the end, and no intent is left behind. With a shared lock
//! map, a prune leaves a session another operation holds for the next prune.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use session_archiver::archiver::Archiver;
use session_archiver::error::PolicyError;
use session_archiver::locks::SessionLocks;
use session_archiver::ArchiverOptions;
use session_archiver_testkit::{expect_policy_error, load_policy, shared_runtime, MockHost};

/// Every import a prune can make.
const PRUNE_CALLS: [&str; 7] = [
    "objects.get",
    "objects.update-meta",
    "objects.update-meta-if",
    "archive-dir.list",
    "archive-dir.stat",
    "archive-dir.remove",
    "archive-dir.remove-if-unchanged",
];

const APPENDED: &[u8] = b"{\"more\":\"written after the restore\"}\n";

/// What the other process did to `s`.
#[derive(Debug, Clone, PartialEq)]
enum Other {
    /// Nothing (the prune made fewer calls than the step it waited for).
    NotRun,
    /// It handled `s` (restored or appended, then archived again): `s` must keep every byte.
    Handled,
    /// Its first step was refused (the prune had pruned, or was pruning, `s`'s only copy).
    Refused(PolicyError),
}

/// How the other process acts on `s`: restore first when `restore` (the archive is the only
/// copy), else `s` is live beside a backup; then the app appends and it archives again.
fn act(host: &MockHost, b: &Archiver, restore: bool) -> Other {
    host.clock.advance(60_000);
    if restore {
        if let Err(e) = b.restore("s") {
            return Other::Refused(expect_policy_error(Err::<(), _>(e)));
        }
    }
    session_archiver_testkit::append_to(&host.files, "s", APPENDED);
    host.clock.advance(60_000);
    b.archive("s").expect("archive s again");
    Other::Handled
}

/// The fixture: `s` archived, then `t` a minute later; with `restore == false`, `s` is then
/// restored (its archive a backup). Returns the prune cap (one archive less than there is).
fn setup(host: &MockHost, restore: bool) -> u64 {
    host.session("s").idle_days(10).lines(30).create();
    host.session("t").idle_days(10).lines(30).create();
    let b = host.archiver("inactivity", "{}");
    b.archive("s").expect("archive s");
    host.clock.advance(60_000);
    b.archive("t").expect("archive t");
    if !restore {
        b.restore("s")
            .expect("restore s: its archive stays as a backup");
    }
    let size = |n: &str| host.archive_bytes(n).expect(n).len() as u64;
    // Pruning any one archive is enough; `s` grows by a line when archived again.
    size("s.jsonl.gz").max(size("t.jsonl.gz")) + APPENDED.len() as u64
}

/// One run: before the prune's `step`-th call (0: never), the other process acts on `s`.
fn race(restore: bool, step: usize) -> (MockHost, Other, [Vec<u8>; 2], usize) {
    let host = Arc::new(MockHost::new());
    let cap = setup(&host, restore);
    let originals = ["s", "t"].map(|id| {
        let b = host.archiver("inactivity", "{}");
        let mut out = Vec::new();
        b.export(id, &mut out).expect("export before");
        out
    });
    let b = Arc::new(host.archiver("inactivity", "{}"));
    let a = host.archiver("inactivity", &format!(r#"{{"max_total_bytes":{cap}}}"#));

    let seen = Arc::new(AtomicUsize::new(0));
    let in_b = Arc::new(AtomicBool::new(false));
    let other = Arc::new(Mutex::new(Other::NotRun));
    for call in PRUNE_CALLS {
        let (seen, in_b, other, b, h) = (
            seen.clone(),
            in_b.clone(),
            other.clone(),
            b.clone(),
            host.clone(),
        );
        host.on_call(call, move |_| {
            if in_b.load(Ordering::SeqCst) {
                return;
            }
            if seen.fetch_add(1, Ordering::SeqCst) + 1 != step {
                return;
            }
            in_b.store(true, Ordering::SeqCst);
            *other.lock().unwrap() = act(&h, &b, restore);
            in_b.store(false, Ordering::SeqCst);
        });
    }
    a.prune().expect("prune runs");
    host.rec.clear_call_hooks();
    // Both processes restart and recover whatever they left.
    a.recover_pending().expect("recover A");
    b.recover_pending().expect("recover B");
    let other = other.lock().unwrap().clone();
    let calls = seen.load(Ordering::SeqCst);
    drop((a, b));
    let host = Arc::try_unwrap(host).unwrap_or_else(|_| panic!("hooks still hold the host"));
    (host, other, originals, calls)
}

fn export(host: &MockHost, id: &str) -> Result<Vec<u8>, PolicyError> {
    let mut out = Vec::new();
    host.archiver("inactivity", "{}")
        .export(id, &mut out)
        .map(|_| out)
        .map_err(|e| expect_policy_error(Err::<(), _>(e)))
}

fn check(host: &MockHost, other: &Other, originals: &[Vec<u8>; 2], step: usize) {
    for id in ["s", "t"] {
        let meta = host.meta(id);
        assert!(
            meta.get("session:archive_intent").is_none(),
            "step {step}: an intent was left behind in {id}: {meta:?}"
        );
    }
    let mut all = originals[0].clone();
    all.extend_from_slice(APPENDED);
    match (other, export(host, "s")) {
        (Other::Handled, Ok(bytes)) => assert_eq!(bytes, all, "step {step}: bytes of s lost"),
        (Other::Handled, Err(e)) => panic!(
            "step {step}: s was made the newest archive, yet a prune acting on its stale \
             judgement destroyed it: {e:?}"
        ),
        (_, Ok(bytes)) => assert_eq!(bytes, originals[0], "step {step}: bytes of s changed"),
        (_, Err(e)) => assert!(
            matches!(e, PolicyError::Pruned(_)),
            "step {step}: s is either whole or pruned with a tombstone, not {e:?}"
        ),
    }
    match export(host, "t") {
        Ok(bytes) => assert_eq!(bytes, originals[1], "step {step}: bytes of t changed"),
        Err(e) => assert!(
            matches!(e, PolicyError::Pruned(_)),
            "step {step}: t is either whole or pruned with a tombstone, not {e:?}"
        ),
    }
}

/// Races the other process against every step of the prune; returns what it did at each.
fn every_step(restore: bool) -> Vec<Other> {
    let (host, other, originals, steps) = race(restore, 0);
    check(&host, &other, &originals, 0);
    assert!(steps >= 4, "the prune made {steps} calls");
    assert!(
        export(&host, "s").is_err() || !restore,
        "undisturbed, the prune picks s, the oldest"
    );
    (1..=steps)
        .map(|step| {
            let (host, other, originals, _) = race(restore, step);
            check(&host, &other, &originals, step);
            other
        })
        .collect()
}

#[test]
fn a_prune_never_destroys_an_only_copy_another_process_restored_and_archived_meanwhile() {
    let outcomes = every_step(true);
    assert!(
        outcomes.contains(&Other::Handled),
        "at some step the other process got s back before the prune acted: {outcomes:?}"
    );
}

#[test]
fn a_prune_never_destroys_an_archive_that_replaced_the_backup_it_picked() {
    let outcomes = every_step(false);
    assert!(
        outcomes.iter().all(|o| *o == Other::Handled),
        "the other process archived s at every step: {outcomes:?}"
    );
}

#[test]
fn a_prune_leaves_a_session_another_operation_holds_for_the_next_prune() {
    let host = MockHost::new();
    host.session("s").idle_days(10).lines(30).create();
    let locks = SessionLocks::in_process();
    let archiver = Archiver::new(
        host.stores(),
        shared_runtime(),
        load_policy("inactivity"),
        ArchiverOptions {
            config: r#"{"max_total_bytes":1}"#.into(),
            workers: Some(1),
            locks: locks.clone(),
        },
    )
    .expect("archiver");
    archiver.archive("s").expect("archive");
    let held = locks.lock("s").expect("another operation holds s");
    let report = archiver.prune().expect("prune").value;
    assert_eq!(report.pruned, 0, "{report:?}");
    assert!(report.failed.is_empty(), "a busy session is not a failure");
    assert!(host.archive_bytes("s.jsonl.gz").is_some(), "left alone");
    assert!(!host.meta_value("s", "session:archived_at").is_null());
    drop(held);
    let report = archiver.prune().expect("prune").value;
    assert_eq!((report.pruned, report.tombstoned), (1, 1), "{report:?}");
}
