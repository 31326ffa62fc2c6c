//! Fault sweep (issue 5, group 1): for archive, restore and whole sweeps over a mixed store,
//! fail call N with an I/O error for every N from 1 to the number of calls T the operation
//! makes. Guards: whatever call fails, every session's bytes stay recoverable byte-exact (live,
//! or archive + live), meta never says archived without an archive that decompresses (with
//! flate2, not the policy's gzip) to the recorded length and CRC-32, and `recover` + the
//! operation again reach the operation's goal.

mod reliability;

use reliability::{break_each_call, check, Mixed, Operation, Phase};
use session_archiver::store::StoreError;
use session_archiver_testkit::Fault;

/// Fails each call of `op` in turn; after each, recovers and runs `op` again. Returns T.
fn sweep_faults(op: Operation) -> usize {
    break_each_call(
        op,
        "failing call",
        |total| 1..=total,
        |n| Fault::FailNth {
            n,
            error: StoreError::Io(format!("injected failure of call {n}")),
        },
        |m: &Mixed, context: &str| {
            let report = m
                .archiver
                .recover(None)
                .unwrap_or_else(|e| panic!("{context}: recover failed: {e}"))
                .value;
            assert!(
                report.failed.is_empty(),
                "{context}: recover failed on {:?}",
                report.failed
            );
            check(
                &m.host,
                &m.expects,
                Phase::Settled,
                &format!("{context}, after recover"),
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
fn an_archive_failing_at_any_call_loses_nothing_and_completes_after_recovery() {
    let t = sweep_faults(Operation::Archive);
    eprintln!("fault sweep: archive makes {t} calls; each failed in turn");
}

#[test]
fn a_restore_failing_at_any_call_loses_nothing_and_completes_after_recovery() {
    let t = sweep_faults(Operation::Restore);
    eprintln!("fault sweep: restore makes {t} calls; each failed in turn");
}

#[test]
fn a_host_driven_sweep_failing_at_any_call_loses_nothing_and_completes_after_recovery() {
    let t = sweep_faults(Operation::Sweep);
    eprintln!("fault sweep: host-driven sweep makes {t} calls; each failed in turn");
}

#[test]
fn a_policy_sweep_failing_at_any_call_loses_nothing_and_completes_after_recovery() {
    let t = sweep_faults(Operation::SweepInGuest);
    eprintln!("fault sweep: in-guest sweep makes {t} calls; each failed in turn");
}
