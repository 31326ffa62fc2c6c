//! The `budget` policy on the mock host: its plan and sweep, and proof that its decisions really
//! differ from `inactivity`'s on the same store (a byte budget, not an age rule, picks sessions;
//! age, not only the cap, prunes archives; level 9 by default).

use std::io::{Read, Write};

use serde_json::json;
use session_archiver::archiver::Archiver;
use session_archiver::bindings::guest::Action;
use session_archiver_testkit::fixtures::DAY_MS;
use session_archiver_testkit::MockHost;

const MIN_MS: i64 = 60_000;

/// Calls that change something; a plan must make none of them.
const WRITES: [&str; 13] = [
    "objects.update-meta",
    "objects.update-meta-if",
    "objects.insert",
    "files.create",
    "files.append",
    "files.delete",
    "files.delete-if-unchanged",
    "files.rename-if-unchanged",
    "archive-dir.create",
    "archive-dir.write",
    "archive-dir.commit",
    "archive-dir.remove",
    "archive-dir.remove-if-unchanged",
];

/// An agent session idle `idle_min` minutes with `bytes` of output in 100-byte lines.
fn session(host: &MockHost, id: &str, idle_min: i64, bytes: usize) -> String {
    let line = format!("{}\n", "x".repeat(99));
    let out = line.repeat(bytes / 100);
    host.session(id)
        .meta(
            "session:last_activity_ms",
            json!(host.now_ms() - idle_min * MIN_MS),
        )
        .meta("session:line_count", json!(bytes / 100))
        .output(out)
        .create()
}

/// The same store every comparison runs on: sizes chosen so a 310 KB budget and a 7-day age
/// rule pick different sessions.
fn store() -> MockHost {
    let host = MockHost::new();
    session(&host, "a-month-old-small", 30 * 24 * 60, 1_000);
    session(&host, "b-three-days-big", 3 * 24 * 60, 200_000);
    session(&host, "c-two-hours-big", 120, 200_000);
    session(&host, "d-hot", 5, 100_000);
    host.session("e-pinned-old")
        .idle_days(60)
        .lines(10)
        .pinned()
        .create();
    host
}

const BUDGET: &str = r#"{"max_live_bytes":310000,"min_idle_minutes":30}"#;

fn planned(archiver: &Archiver) -> Vec<String> {
    let plan = archiver.plan().expect("plan").value;
    plan.decisions
        .iter()
        .filter(|d| d.action == Action::Archive)
        .map(|d| d.target.clone())
        .collect()
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

#[test]
fn budget_and_inactivity_pick_different_sessions_from_the_same_store() {
    let host = store();
    let budget = host.archiver("budget", BUDGET);
    let inactivity = host.archiver("inactivity", "{}");
    assert_eq!(budget.info().value.name, "budget");

    // 501 000 live bytes (the pinned session's ~1.5 KB too) over a 310 000 budget: the least
    // recently active eligible sessions go until it fits, whatever their age.
    assert_eq!(
        planned(&budget),
        ["a-month-old-small", "b-three-days-big"],
        "budget"
    );
    // The age rule takes only what is 7 days idle, however big the rest is.
    assert_eq!(planned(&inactivity), ["a-month-old-small"], "inactivity");

    let plan = budget.plan().unwrap().value;
    let reason = |id: &str| {
        plan.decisions
            .iter()
            .find(|d| d.target == id)
            .map(|d| d.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        reason("b-three-days-big").starts_with("over budget: live"),
        "{}",
        reason("b-three-days-big")
    );
    assert_eq!(reason("d-hot"), "active 5 min ago < 30 min");
    assert_eq!(reason("e-pinned-old"), "pinned");
    assert!(
        reason("c-two-hours-big").contains("budget met"),
        "{}",
        reason("c-two-hours-big")
    );
}

#[test]
fn a_budget_plan_writes_nothing() {
    let host = store();
    let budget = host.archiver("budget", BUDGET);
    let before = host.calls().len();
    budget.plan().expect("plan");
    let calls = host.calls();
    let writes: Vec<_> = calls[before..]
        .iter()
        .filter(|c| WRITES.contains(&c.op.as_str()))
        .collect();
    assert!(writes.is_empty(), "a plan wrote: {writes:?}");
    assert!(
        calls[before..].iter().any(|c| c.op == "files.stat"),
        "the budget is measured with files.stat"
    );
}

#[test]
fn a_budget_sweep_does_what_its_plan_said_and_leaves_live_output_under_budget() {
    let host = store();
    let budget = host.archiver("budget", BUDGET);
    let plan = planned(&budget);
    let r = budget.sweep(|_| {}).expect("sweep").value;
    assert_eq!((r.archived, r.failed.len()), (2, 0));
    for id in [
        "a-month-old-small",
        "b-three-days-big",
        "c-two-hours-big",
        "d-hot",
    ] {
        let live = host.output(id).is_some();
        assert_eq!(live, !plan.contains(&id.to_string()), "{id}");
    }
    let live: usize = ["c-two-hours-big", "d-hot", "e-pinned-old"]
        .iter()
        .map(|id| host.output(id).map_or(0, |o| o.len()))
        .sum();
    assert!(live <= 310_000, "{live}");
    // The archive holds exactly the bytes, and a second plan has nothing left to archive.
    let gz = host
        .archive_bytes("b-three-days-big.jsonl.gz")
        .expect("archive");
    assert_eq!(gunzip(&gz).len(), 200_000);
    assert!(planned(&budget).is_empty());
    // Restore works as with any policy.
    budget.restore("b-three-days-big").expect("restore");
    assert_eq!(host.output("b-three-days-big").unwrap().len(), 200_000);
}

#[test]
fn budget_compresses_at_level_9_by_default_and_inactivity_at_6() {
    for (policy, config, xfl) in [
        ("budget", "{}", 2u8),
        ("inactivity", "{}", 0u8),
        ("budget", r#"{"level":1}"#, 4u8),
    ] {
        let host = MockHost::new();
        let id = host.session("s").idle_days(30).lines(5_000).create();
        let archiver = host.archiver(policy, config);
        archiver.archive(&id).expect("archive");
        let gz = host.archive_bytes("s.jsonl.gz").unwrap();
        // RFC 1952 XFL records the level class: 2 = best (9), 4 = fastest (0-1), 0 = other.
        assert_eq!(gz[8], xfl, "{policy} {config}");
        assert_eq!(
            gunzip(&gz),
            session_archiver_testkit::fixtures::jsonl_lines(115, 5_000)
        );
    }
}

#[test]
fn budget_prunes_archives_past_their_age_which_inactivity_keeps() {
    let gz = |raw: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(raw).unwrap();
        e.finish().unwrap()
    };
    let raw = b"{\"old\":true}\n";
    let run = |policy: &str, config: &str| {
        let host = MockHost::new();
        let now = host.now_ms();
        host.session("old").idle_days(200).create();
        host.put_archived("old", &gz(raw), raw);
        // Re-stamp the only copy as written 100 days ago; add a young orphan.
        host.archive_file("old.jsonl.gz", &gz(raw), now - 100 * DAY_MS);
        host.archive_file("young-orphan.jsonl.gz", &gz(raw), now - DAY_MS);
        let archiver = host.archiver(policy, config);
        let report = archiver.prune().expect("prune").value;
        (host, report)
    };

    let (host, report) = run("budget", r#"{"max_archive_age_days":90}"#);
    assert_eq!((report.pruned, report.tombstoned), (1, 1), "{report:?}");
    assert!(host.archive_bytes("old.jsonl.gz").is_none());
    assert!(host.archive_bytes("young-orphan.jsonl.gz").is_some());
    assert!(
        host.meta_value("old", "session:archive_pruned_at")
            .as_i64()
            .unwrap()
            > 0
    );
    assert!(host.meta_value("old", "session:archived_at").is_null());

    let (host, report) = run("inactivity", "{}");
    assert_eq!(report.pruned, 0, "under its cap inactivity prunes nothing");
    assert!(host.archive_bytes("old.jsonl.gz").is_some());
}

#[test]
fn budget_prunes_by_the_cap_after_the_age_rule_orphans_first() {
    let host = MockHost::new();
    let now = host.now_ms();
    host.session("only").idle_days(10).create();
    let blob = vec![7u8; 1_000];
    host.put_archived("only", &blob, b"unused");
    host.archive_file("only.jsonl.gz", &blob, now - 2 * DAY_MS);
    host.archive_file("orphan.jsonl.gz", &blob, now - DAY_MS);
    let archiver = host.archiver("budget", r#"{"max_total_bytes":1500}"#);
    let plan = archiver.plan().unwrap().value;
    let prunes: Vec<_> = plan
        .decisions
        .iter()
        .filter(|d| d.action == Action::Prune)
        .map(|d| (d.target.as_str(), d.reason.as_str()))
        .collect();
    assert_eq!(
        prunes,
        [(
            "orphan.jsonl.gz",
            "cap exceeded: orphan (no session refers to it)"
        )]
    );
    assert_eq!(plan.archive_cap, 1500);
}

#[test]
fn a_config_for_the_other_policy_is_rejected_naming_the_field() {
    let host = MockHost::new();
    let archiver = host.archiver("budget", "{}");
    let err = archiver
        .set_config(r#"{"inactive_days":3}"#)
        .expect_err("unknown key");
    assert!(err.to_string().contains("inactive_days"), "{err}");
    let err = archiver
        .set_config(r#"{"max_live_bytes":0}"#)
        .expect_err("zero budget");
    assert!(err.to_string().contains("max_live_bytes"), "{err}");
    let normalised = archiver.set_config(r#"{"level":4}"#).unwrap().value;
    assert!(normalised.contains(r#""level":4"#) && normalised.contains("max_live_bytes"));
}
