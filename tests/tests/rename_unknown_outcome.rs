//! A restore's final rename that fails with an I/O error may or may not have committed: the
//! restore intent stays, and recovery reads `output` to decide. Either way the session's bytes
//! end up exactly once, in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use session_archiver::store::{FileStore, StoreError};
use session_archiver_testkit::{Fault, MockHost};

const RENAME: &str = "files.rename-if-unchanged";

/// An archived session `s` with output written after archiving; returns (archived, newer).
fn archived_with_newer_output(host: &MockHost) -> (Vec<u8>, Vec<u8>) {
    host.session("s").idle_days(10).lines(40).create();
    let archived = host.output("s").expect("output");
    host.archiver("inactivity", "{}")
        .archive("s")
        .expect("archive");
    let newer = b"{\"after\":\"archiving\"}\n".to_vec();
    host.append_output("s", &newer);
    (archived, newer)
}

fn export(host: &MockHost) -> Vec<u8> {
    let mut out = Vec::new();
    host.archiver("inactivity", "{}")
        .export("s", &mut out)
        .expect("export");
    out
}

fn io_error_on_the_rename(host: &MockHost) {
    host.inject(Fault::FailOp {
        op: RENAME.into(),
        error: StoreError::Io("connection reset while committing".into()),
        times: Some(1),
    });
}

#[test]
fn a_restore_rename_that_committed_but_reported_an_io_error_is_finished_by_recovery() {
    let host = MockHost::new();
    let (archived, newer) = archived_with_newer_output(&host);
    // The store commits the rename, then the reply is lost: the call reports an I/O error.
    let files = host.files.inner.clone();
    let once = Arc::new(AtomicBool::new(false));
    host.on_call(RENAME, move |_| {
        if !once.swap(true, Ordering::SeqCst) {
            let live = files.stat("s", "output").unwrap();
            files
                .rename_if_unchanged("s", "outnew", "output", live.as_ref())
                .unwrap();
        }
    });
    io_error_on_the_rename(&host);
    let archiver = host.archiver("inactivity", "{}");

    assert!(archiver.restore("s").is_err());
    assert!(
        !host.meta_value("s", "session:archive_intent").is_null(),
        "the intent stays for recovery"
    );

    let report = archiver.recover("s").expect("recover").value;
    assert_eq!(report.finished, 1, "{report:?}");
    assert!(host.meta_value("s", "session:archive_intent").is_null());
    assert!(host.meta_value("s", "session:archived_at").is_null());
    assert!(host.meta_value("s", "session:restored_at").as_i64() > Some(0));
    let whole = [archived.as_slice(), newer.as_slice()].concat();
    assert_eq!(host.output("s"), Some(whole.clone()));
    assert_eq!(export(&host), whole, "every byte once, in order");
}

#[test]
fn a_restore_rename_that_failed_with_an_io_error_is_rolled_back_by_recovery() {
    let host = MockHost::new();
    let (archived, newer) = archived_with_newer_output(&host);
    io_error_on_the_rename(&host);
    let archiver = host.archiver("inactivity", "{}");

    assert!(archiver.restore("s").is_err());
    assert!(!host.meta_value("s", "session:archive_intent").is_null());
    assert_eq!(host.output("s"), Some(newer.clone()), "output untouched");

    let report = archiver.recover("s").expect("recover").value;
    assert_eq!(report.rolled_back, 1, "{report:?}");
    assert!(host.meta_value("s", "session:archive_intent").is_null());
    assert!(host.meta_value("s", "session:archived_at").as_i64() > Some(0));
    assert!(host.files.inner.stat("s", "outnew").unwrap().is_none());

    archiver.restore("s").expect("restore after recovery");
    let whole = [archived.as_slice(), newer.as_slice()].concat();
    assert_eq!(host.output("s"), Some(whole));
}
