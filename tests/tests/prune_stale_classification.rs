//! A prune acting on a stale classification never removes an archive another archiver (another
//! process: its own lock map) committed since: the removal is conditional on the file being the
//! one classified.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use session_archiver_testkit::MockHost;

#[test]
fn a_prune_never_removes_an_archive_committed_after_it_classified_the_old_one() {
    let host = MockHost::new();
    host.session("s").idle_days(10).lines(40).create();
    let original = host.output("s").unwrap();
    // Archiver B (another process): archive, then restore; the archive stays as a backup.
    let b = Arc::new(host.archiver("inactivity", "{}"));
    b.archive("s").expect("archive");
    b.restore("s").expect("restore");
    host.append_output("s", b"{\"more\":\"written after the restore\"}\n");
    let mut all = original.clone();
    all.extend_from_slice(b"{\"more\":\"written after the restore\"}\n");
    let backup = host.archive_bytes("s.jsonl.gz").expect("backup kept");

    // Archiver A prunes everything it may (cap of 1 byte). It classified `s.jsonl.gz` as a
    // backup; just before it removes it, B archives the session again, replacing that file
    // with the session's only copy.
    let a = host.archiver("inactivity", r#"{"max_total_bytes":1}"#);
    let fired = Arc::new(AtomicBool::new(false));
    let (b2, fired2) = (b.clone(), fired.clone());
    host.on_call("archive-dir.remove-if-unchanged", move |_| {
        if !fired2.swap(true, Ordering::SeqCst) {
            b2.archive("s").expect("archive again");
        }
    });
    let report = a.prune().expect("prune").value;
    host.rec.clear_call_hooks();

    assert!(fired.load(Ordering::SeqCst), "B archived during A's prune");
    let now = host
        .archive_bytes("s.jsonl.gz")
        .expect("the new archive is still there");
    assert_ne!(now, backup, "it is B's new archive");
    assert!(
        !host.meta_value("s", "session:archived_at").is_null(),
        "meta still says archived"
    );
    assert!(host.output("s").is_none(), "B's archive removed the output");
    let mut exported = Vec::new();
    b.export("s", &mut exported).expect("export");
    assert_eq!(exported, all, "every byte is still there, once");
    assert_eq!((report.pruned, report.tombstoned), (0, 0), "{report:?}");
}
