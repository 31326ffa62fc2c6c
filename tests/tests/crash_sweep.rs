//! Crash sweep (issue 5, group 2), in process: for archive, restore and whole sweeps over a
//! mixed store, "crash" after call N (every later call traps, so the operation dies where it
//! stands and its uncommitted archive writes vanish) for every N from 0 to T-1. Guards: after
//! the crash the bytes are still all somewhere and meta claims no unverified archive; after a
//! restart, `recover` settles every session, a second `recover` finds nothing to do and writes
//! nothing, and the operation then completes.

mod reliability;

use reliability::{break_each_call, check, Mixed, Operation, Phase};
use session_archiver_testkit::recorder::is_write;
use session_archiver_testkit::Fault;

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
                .recover(None)
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
                .recover(None)
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
fn a_host_driven_sweep_crashing_after_any_call_is_recovered_idempotently_without_loss() {
    let t = sweep_crashes(Operation::Sweep);
    eprintln!("crash sweep: host-driven sweep makes {t} calls; crashed after each of 0..{t}");
}

#[test]
fn a_policy_sweep_crashing_after_any_call_is_recovered_idempotently_without_loss() {
    let t = sweep_crashes(Operation::SweepInGuest);
    eprintln!("crash sweep: in-guest sweep makes {t} calls; crashed after each of 0..{t}");
}
