//! A user's own files in the archive directory are not this tool's archives: a policy never sees
//! them, so a sweep that prunes over the cap never deletes them, however old or large.

use session_archiver::bindings::guest::Action;
use session_archiver_testkit::fixtures::DAY_MS;
use session_archiver_testkit::MockHost;

/// Names and bytes a user might keep next to the archives, all older and larger than any archive.
fn foreign() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("notes-2026.tar.gz", vec![0x1f; 4096]),
        ("backup.gz", vec![0x1f; 2048]),
        ("todo.txt", b"buy milk".to_vec()),
        ("s1.jsonl.gz.bak", vec![7; 1000]),
        ("Old.JSONL.GZ", vec![8; 1000]),
    ]
}

#[test]
fn a_sweep_that_prunes_over_the_cap_never_sees_or_removes_the_users_own_files() {
    let host = MockHost::new();
    for (name, bytes) in foreign() {
        host.archive_file(name, &bytes, host.now_ms() - 400 * DAY_MS);
    }
    // An orphan archive (no session has it) is still ours, and pruned first.
    host.archive_file("ghost.jsonl.gz", &[0x1f, 0x8b, 0, 0], host.now_ms());
    for i in 0..4i64 {
        host.session(&format!("s{i}"))
            .idle_days(10 + i)
            .lines(200)
            .create();
    }
    let archiver = host.archiver("inactivity", r#"{"max_total_bytes":1}"#);

    let plan = archiver.plan().expect("plan").value;
    for (name, _) in foreign() {
        assert!(
            plan.decisions.iter().all(|d| d.target != name),
            "{name} in the plan: {:#?}",
            plan.decisions
        );
    }

    let report = archiver.sweep(|_| {}).expect("sweep").value;
    assert_eq!(report.archived, 4, "{report:?}");
    let prune = report.prune.expect("prune ran");
    // Every archive of ours goes (the cap is 1 byte): the orphan and the four only copies.
    assert_eq!((prune.pruned, prune.tombstoned), (5, 4), "{prune:?}");
    assert!(prune.failed.is_empty(), "{prune:?}");
    assert_eq!(host.archive_bytes("ghost.jsonl.gz"), None);

    for (name, bytes) in foreign() {
        assert_eq!(host.archive_bytes(name), Some(bytes), "{name} was touched");
    }
    for call in host.calls() {
        let named_foreign = foreign().iter().any(|(n, _)| call.args.contains(n));
        assert!(!named_foreign, "a call named a user's file: {call:?}");
    }
    // The listing a policy gets holds none of them, and nothing is left to prune.
    let plan = archiver.plan().expect("plan").value;
    assert!(
        plan.decisions.iter().all(|d| d.action != Action::Prune),
        "{:#?}",
        plan.decisions
    );
}
