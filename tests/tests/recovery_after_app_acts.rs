//! An archive interrupted after its delete committed, and the app acting before recovery runs:
//! it appends (making a new `output`), re-creates `output`, or deletes it. Recovery must tell the
//! file the archive read (still there: undo the archive) from a new file (finish the archive and
//! keep the new file as output written after archiving), so the archived bytes are never lost.

use session_archiver::store::FileStore;
use session_archiver_testkit::{Fault, MockHost};

const NEW: &[u8] = b"{\"written\":\"after the crash\"}\n";

#[derive(Debug, Clone, Copy)]
enum AppAct {
    /// Appends to `output`, creating it when it is gone.
    Appends,
    /// Deletes `output` and writes a new one.
    Recreates,
    /// Deletes `output`.
    Deletes,
}

fn host_with_session() -> (MockHost, Vec<u8>) {
    let host = MockHost::new();
    host.session("s").idle_days(10).lines(60).create();
    let orig = host.output("s").expect("output");
    (host, orig)
}

fn act(host: &MockHost, what: AppAct) {
    let files = &host.files.inner;
    match what {
        AppAct::Appends => host.append_output("s", NEW),
        AppAct::Recreates => {
            if files.stat("s", "output").unwrap().is_some() {
                files.delete("s", "output").unwrap();
            }
            host.append_output("s", NEW);
        }
        AppAct::Deletes => {
            if files.stat("s", "output").unwrap().is_some() {
                files.delete("s", "output").unwrap();
            }
        }
    }
}

fn export(host: &MockHost) -> Vec<u8> {
    let mut out = Vec::new();
    host.archiver("inactivity", "{}")
        .export("s", &mut out)
        .expect("export");
    out
}

/// The sequence number of the archive's conditional delete of `output`.
fn delete_call() -> usize {
    let (host, _) = host_with_session();
    host.archiver("inactivity", "{}")
        .archive("s")
        .expect("archive");
    host.calls_to("files.delete-if-unchanged")[0].seq
}

#[test]
fn recovery_finishes_an_archive_whose_output_the_app_re_created_after_the_delete() {
    let (host, orig) = host_with_session();
    host.inject(Fault::CrashAfter { n: delete_call() });
    assert!(host.archiver("inactivity", "{}").archive("s").is_err());
    host.rec.clear_faults();
    assert_eq!(
        host.output("s"),
        None,
        "the delete committed before the crash"
    );
    act(&host, AppAct::Recreates);

    let report = host
        .archiver("inactivity", "{}")
        .recover_pending()
        .expect("recover")
        .value;
    assert_eq!((report.finished, report.rolled_back), (1, 0), "{report:?}");
    assert!(
        host.archive_bytes("s.jsonl.gz").is_some(),
        "the archive stays"
    );
    assert!(host.meta_value("s", "session:archived_at").as_i64() > Some(0));
    assert_eq!(
        host.output("s"),
        Some(NEW.to_vec()),
        "the new output is kept"
    );
    assert_eq!(export(&host), [orig.as_slice(), NEW].concat());

    host.archiver("inactivity", "{}")
        .restore("s")
        .expect("restore");
    assert_eq!(host.output("s"), Some([orig.as_slice(), NEW].concat()));
}

#[test]
fn the_app_acting_between_an_archive_crash_and_recovery_never_loses_the_archived_bytes() {
    let total = {
        let (host, _) = host_with_session();
        host.archiver("inactivity", "{}")
            .archive("s")
            .expect("archive");
        host.calls().len()
    };
    for what in [AppAct::Appends, AppAct::Recreates, AppAct::Deletes] {
        for n in 0..total {
            let context = format!("{what:?} after a crash after call {n}");
            let (host, orig) = host_with_session();
            host.inject(Fault::CrashAfter { n });
            let _ = host.archiver("inactivity", "{}").archive("s");
            host.rec.clear_faults();
            // Where the bytes were when the process died.
            let deleted = host.output("s").is_none();
            let recorded = host.meta_value("s", "session:archived_at").as_i64() > Some(0);
            act(&host, what);

            let report = host
                .archiver("inactivity", "{}")
                .recover_pending()
                .unwrap_or_else(|e| panic!("{context}: recover: {e}"))
                .value;
            assert!(report.failed.is_empty(), "{context}: {report:?}");
            assert!(
                host.meta_value("s", "session:archive_intent").is_null(),
                "{context}: intent left"
            );
            // An archive recorded in meta is there and is the session's bytes.
            if host.meta_value("s", "session:archived_at").as_i64() > Some(0) {
                assert!(
                    host.archive_bytes("s.jsonl.gz").is_some(),
                    "{context}: meta names a missing archive"
                );
            }
            let archived_only_copy = deleted || recorded;
            let expected: Vec<u8> = match what {
                // The file the archive read, appended to; or a new one after the archive.
                AppAct::Appends => [orig.as_slice(), NEW].concat(),
                AppAct::Recreates if archived_only_copy => [orig.as_slice(), NEW].concat(),
                // The app replaced its own output before any archive was recorded.
                AppAct::Recreates => NEW.to_vec(),
                AppAct::Deletes if archived_only_copy => orig.clone(),
                AppAct::Deletes => Vec::new(),
            };
            let got = export(&host);
            assert!(
                got == expected,
                "{context}: deleted {deleted}, recorded {recorded}: exported {} bytes, expected {}",
                got.len(),
                expected.len()
            );
        }
    }
}
