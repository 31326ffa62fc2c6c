//! The seed's own three tests, re-expressed on the kit's fake host with this policy's decisions.

use archiver_kit::fake::FakeHost;
use archiver_kit::meta::keys;
use archiver_kit::ops;
use serde_json::json;

use super::*;

const DAY: i64 = 86_400_000;

#[test]
fn sweep_archives_an_inactive_session_frees_the_live_file_and_sets_archived_at() {
    let now = 1_000 * DAY;
    let h = FakeHost::new(now);
    h.add_object(
        "b1",
        json!({"view":"agent","session:last_activity_ms": now - 10 * DAY, "session:line_count": 2}),
    );
    h.put_file("b1", "output", b"line1\nline2\n");
    h.add_object(
        "b2",
        json!({"view":"agent","session:last_activity_ms": now - DAY / 2, "session:line_count": 2}),
    );
    h.put_file("b2", "output", b"recent\n");
    let p = Inactivity::from_config(r#"{"inactive_days":1}"#).unwrap();
    let rep = ops::sweep(&h, &p).unwrap();
    assert_eq!(rep.archived, 1);
    assert_eq!(rep.bytes_archived, 12);
    assert!(rep.bytes_written > 0);
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
    let h = FakeHost::new(1_000 * DAY);
    h.add_object("b", json!({"view":"agent"}));
    let data = b"hello compressed world\nline2\n";
    h.put_file("b", "output", data);
    ops::archive(&h, "b", 6).unwrap();
    ops::restore(&h, "b", u64::MAX).unwrap();
    assert_eq!(h.file("b", "output").unwrap(), data);
}

#[test]
fn plan_and_sweep_agree_and_the_config_is_checked_first() {
    let now = 1_000 * DAY;
    let h = FakeHost::new(now);
    h.add_object(
        "idle",
        json!({"view":"agent","session:last_activity_ms": now - 30 * DAY, "session:line_count": 2}),
    );
    h.put_file("idle", "output", b"a\nb\n");
    h.add_object("pinned", json!({"view":"agent","session:last_activity_ms": now - 30 * DAY, "session:line_count": 2, "session:archive_pinned": true}));
    h.put_file("pinned", "output", b"keep\n");
    let p = Inactivity::from_config("{}").unwrap();
    let plan = ops::plan(&h, &p).unwrap();
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
    let rep = ops::sweep(&h, &p).unwrap();
    assert_eq!(rep.archived, 1);
    assert!(h.file("pinned", "output").is_some());
    assert!(
        matches!(Inactivity::from_config(r#"{"inactive_days":0}"#), Err(api::Error::InvalidConfig(m)) if m.contains("inactive_days"))
    );
}
