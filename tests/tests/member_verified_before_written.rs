//! A member is verified (inflated by the policy's `verify-member`) on the helper that compressed
//! it, before it is written: one the encoder got wrong never reaches the archive. A test binary
//! of its own, because the seam that damages the member is process-wide.

use session_archiver::archiver::{Archiver, ArchiverOptions};
use session_archiver::host::members::TAMPER_MEMBER;
use session_archiver::locks::SessionLocks;
use session_archiver_testkit::{load_policy, shared_runtime, MockHost};

#[test]
fn a_member_that_does_not_verify_is_never_written_and_the_live_copy_stays() {
    let host = MockHost::new();
    host.session("s").idle_days(10).lines(3000).create();
    let original = host.output("s").expect("output");
    let a = Archiver::new(
        host.stores(),
        shared_runtime(),
        load_policy("inactivity"),
        ArchiverOptions {
            config: r#"{"parallel_min_bytes":1,"member_bytes":65536}"#.to_string(),
            workers: Some(2),
            locks: SessionLocks::in_process(),
        },
    )
    .expect("archiver");
    // Member 2's deflate data loses a byte in the middle, as an encoder bug might.
    *TAMPER_MEMBER.lock().unwrap() = Some(|i, bytes| {
        if i == 2 {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x55;
        }
    });
    let err = a.archive("s").expect_err("a member that does not verify");
    *TAMPER_MEMBER.lock().unwrap() = None;
    let err = err.to_string();
    assert!(err.contains("does not verify"), "{err}");
    assert!(
        host.output("s").as_deref() == Some(&original[..]),
        "the live copy is kept"
    );
    assert!(host.archive_bytes("s.jsonl.gz").is_none(), "no archive");
    assert!(
        host.calls_to("archive-dir.open").is_empty(),
        "nothing was committed to read back"
    );
    assert!(host.meta("s").get("session:archive_intent").is_none());
    assert!(host.meta("s").get("session:archived_at").is_none());

    // Undamaged, the same archive goes through, and its read-back finds the bytes written.
    a.archive("s").expect("archive");
    assert_eq!(host.output("s"), None);
    let mut out = Vec::new();
    a.export("s", &mut out).expect("export");
    assert!(out == original);
}
