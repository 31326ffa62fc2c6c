//! The seed's own three tests, re-expressed on the kit's fake host with this policy's decisions.

use archiver_kit::decide::DAY_MS;
use archiver_kit::decisions::{ArchiveClass, ArchiveInfo};
use archiver_kit::fake::FakeHost;
use archiver_kit::host::Entry;
use archiver_kit::meta::keys;
use archiver_kit::ops;
use serde_json::json;

use super::*;

#[test]
fn archiving_what_the_plan_selects_frees_an_inactive_sessions_live_file_and_sets_archived_at() {
    let now = 1_000 * DAY_MS;
    let h = FakeHost::new(now);
    h.add_object(
        "b1",
        json!({"view":"agent","session:last_activity_ms": now - 10 * DAY_MS, "session:line_count": 2}),
    );
    h.put_file("b1", "output", b"line1\nline2\n");
    h.add_object(
        "b2",
        json!({"view":"agent","session:last_activity_ms": now - DAY_MS / 2, "session:line_count": 2}),
    );
    h.put_file("b2", "output", b"recent\n");
    let p = Inactivity::from_config(r#"{"inactive_days":1}"#).unwrap();
    let done = h.archive_planned(&p).unwrap();
    assert_eq!(done.len(), 1);
    let (id, outcome) = &done[0];
    let outcome = outcome.as_ref().unwrap();
    assert_eq!(id, "b1");
    assert_eq!(outcome.raw_bytes, 12);
    assert!(outcome.archive_bytes > 0);
    assert!(h.file("b1", "output").is_none());
    assert!(h.archive("b1.jsonl.gz").is_some());
    assert!(h.meta("b1")[keys::ARCHIVED_AT].as_i64().unwrap() > 0);
    assert!(
        h.file("b2", "output").is_some(),
        "a session active half a day ago stays live"
    );
}

#[test]
fn export_counts_non_blank_lines_like_the_seed() {
    let h = FakeHost::new(0);
    h.add_object("b", json!({}));
    h.put_file("b", "output", b"  \n\nline3\n");
    let out = ops::export(&h, "b", u64::MAX).unwrap();
    assert_eq!(out.lines, 1);
}

#[test]
fn gzip_round_trip_through_archive_and_restore() {
    let h = FakeHost::new(1_000 * DAY_MS);
    h.add_object("b", json!({"view":"agent"}));
    let data = b"hello compressed world\nline2\n";
    h.put_file("b", "output", data);
    ops::archive(&h, "b", 6).unwrap();
    ops::restore(&h, "b", u64::MAX).unwrap();
    assert_eq!(h.file("b", "output").unwrap(), data);
}

#[test]
fn archiving_what_the_plan_selects_leaves_the_pinned_session_and_the_config_is_checked_first() {
    let now = 1_000 * DAY_MS;
    let h = FakeHost::new(now);
    h.add_object(
        "idle",
        json!({"view":"agent","session:last_activity_ms": now - 30 * DAY_MS, "session:line_count": 2}),
    );
    h.put_file("idle", "output", b"a\nb\n");
    h.add_object("pinned", json!({"view":"agent","session:last_activity_ms": now - 30 * DAY_MS, "session:line_count": 2, "session:archive_pinned": true}));
    h.put_file("pinned", "output", b"keep\n");
    let p = Inactivity::from_config("{}").unwrap();
    let plan = ops::plan(&h, &p, api::PlanScope::Full).unwrap();
    let to_archive: Vec<_> = plan
        .decisions
        .iter()
        .filter(|d| d.action == api::Action::Archive)
        .map(|d| d.target.as_str())
        .collect();
    assert_eq!(to_archive, ["idle"]);
    assert!(plan
        .decisions
        .iter()
        .any(|d| d.target == "pinned" && d.reason == "pinned"));
    let done = h.archive_planned(&p).unwrap();
    assert_eq!(done.len(), 1);
    assert!(done[0].1.is_ok());
    assert!(h.file("idle", "output").is_none());
    assert!(h.file("pinned", "output").is_some());
    assert!(
        matches!(Inactivity::from_config(r#"{"inactive_days":0}"#), Err(api::Error::InvalidConfig(m)) if m.contains("inactive_days"))
    );
}

// The prune order (the kit's default, which this policy keeps). The seed deleted the oldest files
// whatever they were, leaving sessions whose meta pointed at a deleted archive. Here archives
// whose data is safe elsewhere (backups of restored sessions) and archives nobody refers to
// (orphans) go first, oldest first; a session's only copy only if that was not enough; a pinned
// session's archive, or one whose session is busy or unreadable, never.

fn policy() -> Inactivity {
    Inactivity::from_config("{}").unwrap()
}

fn a(name: &str, size: u64, t: i64, class: ArchiveClass) -> ArchiveInfo {
    ArchiveInfo {
        entry: Entry {
            name: name.into(),
            size,
            modified_ms: t,
        },
        class,
    }
}

fn names(archives: &[ArchiveInfo], cap: u64) -> Vec<String> {
    policy()
        .prune_plan(archives, cap, 0)
        .into_iter()
        .map(|p| archives[p.index].entry.name.clone())
        .collect()
}

#[test]
fn nothing_is_pruned_under_the_cap() {
    let v = vec![a("x.jsonl.gz", 10, 1, ArchiveClass::OnlyCopy)];
    assert!(policy().prune_plan(&v, 10, 0).is_empty());
}

#[test]
fn backups_and_orphans_go_oldest_first_before_any_only_copy() {
    let v = vec![
        a("old-only.jsonl.gz", 10, 1, ArchiveClass::OnlyCopy),
        a("new-backup.jsonl.gz", 10, 9, ArchiveClass::Backup),
        a("mid-orphan.gz", 10, 5, ArchiveClass::Orphan),
        a("new-only.jsonl.gz", 10, 8, ArchiveClass::OnlyCopy),
    ];
    assert_eq!(names(&v, 25), vec!["mid-orphan.gz", "new-backup.jsonl.gz"]);
    assert_eq!(
        names(&v, 15),
        vec!["mid-orphan.gz", "new-backup.jsonl.gz", "old-only.jsonl.gz"]
    );
    let p = policy().prune_plan(&v, 15, 0);
    assert_eq!(p[2].reason, "cap exceeded: oldest");
    assert!(p[1].reason.contains("backup of restored session"));
}

#[test]
fn pinned_busy_and_unknown_archives_are_never_pruned_even_over_the_cap() {
    let v = vec![
        a("p.jsonl.gz", 100, 1, ArchiveClass::Pinned),
        a("b.jsonl.gz", 100, 1, ArchiveClass::InProgress),
        a("u.jsonl.gz", 100, 1, ArchiveClass::Unknown),
        a("o.jsonl.gz", 1, 2, ArchiveClass::OnlyCopy),
    ];
    // Over a cap the pinned archive alone meets: only the unpinned only copy may go.
    assert_eq!(names(&v, 100), vec!["o.jsonl.gz"]);
    // Under a cap the pinned archive alone exceeds, no prune can reach it: the only copy stays.
    assert!(names(&v, 0).is_empty());
}
