//! Fault sweep: for archive, restore and whole sweeps over a mixed store,
//! fail call N with an I/O error for every N from 1 to the number of calls T the operation
//! makes. Guards: whatever call fails, every session's bytes stay recoverable byte-exact (live,
//! or archive + live), meta never says archived without an archive that decompresses (with
//! flate2, not the policy's gzip) to the recorded length and CRC-32, and `recover` + the
//! operation again reach the operation's goal.

mod reliability;

use reliability::{break_each_call_on, check, mixed_store_on, Backend, Mixed, Operation, Phase};
use session_archiver::store::StoreError;
use session_archiver_testkit::{Fault, MockHost};

/// Fails each call of `op` in turn; after each, recovers and runs `op` again. Returns T.
fn sweep_faults(op: Operation) -> usize {
    sweep_faults_on(Backend::Memory, op)
}

/// [`sweep_faults`] with the archives in `backend`.
fn sweep_faults_on(backend: Backend, op: Operation) -> usize {
    break_each_call_on(
        backend,
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
                .recover_pending()
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
fn a_sweep_failing_at_any_call_loses_nothing_and_completes_after_recovery() {
    let t = sweep_faults(Operation::Sweep);
    eprintln!("fault sweep: the sweep makes {t} calls; each failed in turn");
}

// The object-store backend: every archive-dir call and every object-store request under it
// (PUT, multipart start, each part, completion, GET, HEAD, DELETE, LIST) failed in turn.

#[test]
fn the_object_store_fault_sweeps_meet_single_puts_multipart_uploads_reads_and_deletes() {
    // Guards the sweeps below: they fail every kind of request only if the operations make it.
    let calls = |backend: Backend, op: Operation| {
        let m = mixed_store_on("inactivity", backend, false);
        op.run(&m).expect("the operation without faults");
        assert_eq!(m.host.archives.temp_count(), 0, "an upload left open");
        m.host.calls()
    };
    let has = |calls: &[session_archiver_testkit::Call], op: &str| {
        assert!(calls.iter().any(|c| c.op == op), "no {op} in {calls:?}");
    };
    let single = calls(Backend::OBJECT_SINGLE_PUT, Operation::Archive);
    has(&single, "object-store.put");
    let multi = calls(Backend::OBJECT_MULTIPART, Operation::Sweep);
    for op in [
        "object-store.put-multipart",
        "object-store.put-part",
        "object-store.complete",
        "object-store.get",
        "object-store.head",
        "object-store.delete",
        "object-store.list",
    ] {
        has(&multi, op);
    }
}

#[test]
fn an_archive_to_an_object_store_failing_at_any_call_loses_nothing_and_completes_after_recovery() {
    for backend in [Backend::OBJECT_SINGLE_PUT, Backend::OBJECT_MULTIPART] {
        let t = sweep_faults_on(backend, Operation::Archive);
        eprintln!("fault sweep ({backend:?}): archive makes {t} calls; each failed in turn");
    }
}

#[test]
fn a_restore_from_an_object_store_failing_at_any_call_loses_nothing_and_completes_after_recovery() {
    let t = sweep_faults_on(Backend::OBJECT_MULTIPART, Operation::Restore);
    eprintln!("fault sweep (object store): restore makes {t} calls; each failed in turn");
}

#[test]
fn a_sweep_on_an_object_store_failing_at_any_call_loses_nothing_and_completes_after_recovery() {
    let t = sweep_faults_on(Backend::OBJECT_MULTIPART, Operation::Sweep);
    eprintln!("fault sweep (object store): the sweep makes {t} calls; each failed in turn");
}

#[test]
fn an_archive_written_as_parallel_members_failing_at_any_call_loses_nothing_and_completes() {
    let t = sweep_faults(Operation::ArchiveMembers);
    eprintln!("fault sweep: archive as members makes {t} calls; each failed in turn");
}

#[test]
fn a_sweep_writing_parallel_members_failing_at_any_call_loses_nothing_and_completes() {
    let t = sweep_faults(Operation::SweepMembers);
    eprintln!("fault sweep: the sweep with members makes {t} calls; each failed in turn");
}

#[test]
fn one_failing_session_never_stops_the_sweep() {
    // The first archive the sweep starts cannot create its file; the sweep reports that session,
    // archives the other, and the failed archive leaves no intent behind.
    let host = MockHost::new();
    host.session("s1").idle_days(10).lines(3).create();
    host.session("s2").idle_days(10).lines(3).create();
    let archiver = host.archiver("inactivity", "{}");
    host.inject(Fault::FailOp {
        op: "archive-dir.create".into(),
        error: StoreError::Io("injected: cannot create the archive".into()),
        times: Some(1),
    });
    let report = archiver.sweep(|_| {}).expect("sweep").value;
    assert_eq!(report.archived, 1, "{report:?}");
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    let failed = report.failed[0].target.clone();
    assert!(failed == "s1" || failed == "s2", "{failed}");
    assert!(host.output(&failed).is_some(), "{failed}: live copy kept");
    for id in ["s1", "s2"] {
        assert!(
            host.meta(id).get("session:archive_intent").is_none(),
            "{id}: a failed archive clears its intent"
        );
    }
}

#[test]
fn the_invariant_checker_rejects_lost_bytes_unverified_claims_and_leftovers() {
    // The sweeps are only as strong as their checker: show it catches each seed-like failure.
    use reliability::{archive_name, gzip, violation, Expect};
    use serde_json::json;
    use session_archiver::store::{FileStore, ObjectStore};

    let expect = |id: &str, original: &[u8]| Expect {
        id: id.into(),
        original: original.to_vec(),
        may_be_pruned: false,
    };
    let h = session_archiver_testkit::MockHost::new();
    let data = b"{\"a\":1}\n{\"b\":2}\n";
    let patch = |id: &str, v: serde_json::Value| {
        h.objects
            .inner
            .update_meta(id, v.as_object().unwrap())
            .unwrap();
    };
    let archived_meta = |raw: &[u8]| {
        json!({
            "session:archived_at": 5,
            "session:archived_bytes": raw.len(),
            "session:archive_crc32": reliability::crc32(raw),
            "session:archive_path": "/memory/archives/x",
        })
    };

    // Intact: live only.
    h.session("ok").output(data.to_vec()).create();
    assert_eq!(violation(&h, &expect("ok", data), Phase::Settled), None);
    // Live file deleted with no archive (the seed's crash window).
    h.session("lost").create();
    assert!(violation(&h, &expect("lost", data), Phase::Settled).is_some());
    // Meta says archived, archive missing.
    h.session("missing").create();
    patch("missing", archived_meta(data));
    assert!(violation(&h, &expect("missing", data), Phase::Interrupted).is_some());
    // Archive truncated (a torn write).
    h.session("torn").create();
    let gz = gzip(data);
    h.archive_file(&archive_name("torn"), &gz[..gz.len() - 3], 1);
    patch("torn", archived_meta(data));
    assert!(violation(&h, &expect("torn", data), Phase::Interrupted).is_some());
    // Recorded CRC wrong.
    h.session("crc").create();
    h.archive_file(&archive_name("crc"), &gz, 1);
    patch("crc", archived_meta(b"{\"a\":1}\n{\"b\":3}\n"));
    assert!(violation(&h, &expect("crc", data), Phase::Interrupted).is_some());
    // Archived bytes duplicated by a restore whose meta was not updated, with no intent.
    h.session("dup").output(data.to_vec()).create();
    h.archive_file(&archive_name("dup"), &gz, 1);
    patch("dup", archived_meta(data));
    assert!(violation(&h, &expect("dup", data), Phase::Interrupted).is_some());
    // A scratch file left over after settling.
    h.session("scratch").output(data.to_vec()).create();
    h.files
        .inner
        .create("scratch", "leftover", Default::default())
        .unwrap();
    assert!(violation(&h, &expect("scratch", data), Phase::Settled).is_some());
    assert_eq!(
        violation(&h, &expect("scratch", data), Phase::Interrupted),
        None
    );
}
