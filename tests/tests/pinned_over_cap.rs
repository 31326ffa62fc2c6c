//! Pinned archives that alone exceed the cap: the cap cannot be reached, so a sweep must not
//! destroy every unpinned session's only copy (its own fresh archives included) chasing it.

use serde_json::json;
use session_archiver::bindings::guest::Action;
use session_archiver::store::ObjectStore;
use session_archiver_testkit::fixtures::DAY_MS;
use session_archiver_testkit::MockHost;

const CAP: u64 = 2_000;

/// A pinned, archived session whose archive is twice the cap.
fn pinned_archive(host: &MockHost) {
    host.session("pinned").pinned().create();
    let gz = vec![0x1f; 2 * CAP as usize];
    host.put_archived("pinned", &gz, b"raw");
    // The oldest archive in the directory.
    host.archive_file("pinned.jsonl.gz", &gz, host.now_ms() - 30 * DAY_MS);
}

#[test]
fn a_sweep_with_pinned_archives_over_the_cap_keeps_every_fresh_archive() {
    let host = MockHost::new();
    pinned_archive(&host);
    let ids: Vec<String> = (0..24)
        .map(|i| {
            host.session(&format!("s{i:02}"))
                .idle_days(10 + i)
                .lines(50)
                .create()
        })
        .collect();
    // A backup (a restored session's old archive) loses nothing when pruned: it still goes.
    host.session("restored").create();
    host.archive_file("restored.jsonl.gz", &[0x1f; 30], host.now_ms() - DAY_MS);
    let archiver = host.archiver("inactivity", &format!(r#"{{"max_total_bytes":{CAP}}}"#));

    let report = archiver.sweep(|_| {}).expect("sweep").value;

    assert_eq!(report.archived, 24, "{report:?}");
    let prune = report.prune.expect("prune ran");
    assert_eq!((prune.pruned, prune.tombstoned), (1, 0), "{prune:?}");
    assert!(prune.failed.is_empty(), "{prune:?}");
    assert_eq!(host.archive_bytes("restored.jsonl.gz"), None);
    for id in &ids {
        assert!(
            host.archive_bytes(&format!("{id}.jsonl.gz")).is_some(),
            "{id}'s only copy was pruned"
        );
        assert!(host.meta_value(id, "session:archived_at").as_i64() > Some(0));
        assert!(host.meta_value(id, "session:archive_pruned_at").is_null());
    }
    assert!(host.archive_bytes("pinned.jsonl.gz").is_some());

    // The plan agrees: nothing left to prune while the pin holds the cap out of reach.
    let plan = archiver.plan().expect("plan").value;
    assert!(
        plan.decisions.iter().all(|d| d.action != Action::Prune),
        "{:#?}",
        plan.decisions
    );
}

#[test]
fn once_the_pin_goes_the_cap_is_reachable_and_only_copies_are_pruned_oldest_first() {
    let host = MockHost::new();
    pinned_archive(&host);
    for i in 0..3 {
        host.session(&format!("s{i}"))
            .idle_days(10 + i)
            .lines(50)
            .create();
    }
    let archiver = host.archiver("inactivity", &format!(r#"{{"max_total_bytes":{CAP}}}"#));
    let report = archiver.sweep(|_| {}).expect("sweep").value;
    assert_eq!(report.prune.expect("prune ran").pruned, 0);

    host.objects
        .inner
        .update_meta(
            "pinned",
            &serde_json::from_value(json!({"session:archive_pinned": false})).unwrap(),
        )
        .unwrap();
    let report = archiver.sweep(|_| {}).expect("sweep").value;
    let prune = report.prune.expect("prune ran");
    // The unpinned archive is the oldest only copy, and pruning it alone meets the cap.
    assert_eq!((prune.pruned, prune.tombstoned), (1, 1), "{prune:?}");
    assert_eq!(host.archive_bytes("pinned.jsonl.gz"), None);
    assert!(
        host.meta_value("pinned", "session:archive_pruned_at")
            .as_i64()
            > Some(0)
    );
}
