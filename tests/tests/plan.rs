//! `plan`: a dry run that writes nothing and predicts exactly what `sweep` and `prune` then do,
//! with reasons people can read; pins; and config validation naming the offending field.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use session_archiver::archiver::{Archiver, ArchiverOptions};
use session_archiver::bindings::guest::{Action, Decision, Error as PolicyError, SweepPlan};
use session_archiver::locks::SessionLocks;
use session_archiver::store::ObjectStore;
use session_archiver_testkit::fixtures::DAY_MS;
use session_archiver_testkit::{expect_policy_error, load_policy, shared_runtime, MockHost};

/// A store with one session of every kind a sweep meets.
fn mixed_store(host: &MockHost) {
    host.session("idle-12").idle_days(12).lines(5).create();
    host.session("idle-30").idle_days(30).lines(3).create();
    host.session("recent").idle_days(2).lines(4).create();
    host.session("pinned")
        .idle_days(20)
        .lines(4)
        .pinned()
        .create();
    host.session("no-lines")
        .idle_days(20)
        .output(&b"\n"[..])
        .meta("session:line_count", json!(0))
        .create();
    host.session("terminal")
        .idle_days(20)
        .lines(2)
        .meta("view", json!("term"))
        .create();
}

fn decision<'p>(plan: &'p SweepPlan, target: &str) -> &'p Decision {
    plan.decisions
        .iter()
        .find(|d| d.target == target)
        .unwrap_or_else(|| panic!("no decision for {target}: {:#?}", plan.decisions))
}

fn targets(plan: &SweepPlan, action: Action) -> BTreeSet<String> {
    plan.decisions
        .iter()
        .filter(|d| d.action == action)
        .map(|d| d.target.clone())
        .collect()
}

fn is_archived(host: &MockHost, id: &str) -> bool {
    host.meta_value(id, "session:archived_at")
        .as_i64()
        .is_some_and(|t| t > 0)
}

/// Puts an archived session `id` whose only copy is an archive last modified `age_days` ago.
fn archived_session(host: &MockHost, id: &str, age_days: i64) -> usize {
    let raw = format!("{{\"id\":\"{id}\"}}\n").repeat(50).into_bytes();
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&raw).unwrap();
        e.finish().unwrap()
    };
    host.session(id)
        .meta("session:line_count", json!(50))
        .create();
    host.put_archived(id, &gz, &raw);
    host.archive_file(
        &format!("{id}.jsonl.gz"),
        &gz,
        host.now_ms() - age_days * DAY_MS,
    );
    gz.len()
}

#[test]
fn a_plan_writes_nothing_and_lists_what_the_sweep_then_archives() {
    // Guards "plan is the same selection code as sweep, with no side effects".
    let host = MockHost::new();
    mixed_store(&host);
    let archiver = host.archiver("inactivity", "{}");
    let metas: Vec<_> = [
        "idle-12", "idle-30", "recent", "pinned", "no-lines", "terminal",
    ]
    .iter()
    .map(|id| (id.to_string(), host.meta(id), host.output(id)))
    .collect();
    host.rec.reset_log();

    let plan = archiver.plan().expect("plan").value;

    assert_eq!(host.rec.any_write(), None, "a plan writes nothing");
    assert!(!host.calls().is_empty(), "the plan did read the stores");
    for (id, meta, output) in &metas {
        assert_eq!(&host.meta(id), meta, "{id}");
        assert_eq!(&host.output(id), output, "{id}");
    }
    assert_eq!(plan.scanned, 6);
    let planned = targets(&plan, Action::Archive);
    assert_eq!(
        planned,
        BTreeSet::from(["idle-12".to_string(), "idle-30".to_string()])
    );
    let idle12 = decision(&plan, "idle-12");
    assert_eq!(idle12.bytes, metas[0].2.as_ref().unwrap().len() as u64);
    assert!(
        targets(&plan, Action::Prune).is_empty(),
        "under the 2 GiB cap"
    );

    let report = archiver.sweep(|_| {}).expect("sweep").value;

    let swept: BTreeSet<String> = metas
        .iter()
        .map(|(id, ..)| id.clone())
        .filter(|id| is_archived(&host, id))
        .collect();
    assert_eq!(swept, planned, "the sweep did what the plan said");
    assert_eq!(report.archived as usize, planned.len());
    assert_eq!(
        report.bytes_archived,
        plan.decisions
            .iter()
            .filter(|d| d.action == Action::Archive)
            .map(|d| d.bytes)
            .sum::<u64>()
    );
    assert_eq!(report.scanned, plan.scanned);
}

#[test]
fn plan_reasons_say_why_in_words() {
    // Guards the plan's reasons: "idle … d", "pinned", "no lines", "cap exceeded".
    let host = MockHost::new();
    mixed_store(&host);
    archived_session(&host, "old", 40);
    let archiver = host.archiver("inactivity", r#"{"max_total_bytes":1}"#);

    let plan = archiver.plan().expect("plan").value;

    let d = decision(&plan, "idle-12");
    assert_eq!(
        (d.action, d.reason.as_str()),
        (Action::Archive, "idle 12 d >= 7 d")
    );
    assert_eq!(decision(&plan, "idle-30").reason, "idle 30 d >= 7 d");
    let d = decision(&plan, "recent");
    assert_eq!(
        (d.action, d.reason.as_str()),
        (Action::Skip, "idle 2 d < 7 d")
    );
    let d = decision(&plan, "pinned");
    assert_eq!((d.action, d.reason.as_str()), (Action::Skip, "pinned"));
    let d = decision(&plan, "no-lines");
    assert_eq!((d.action, d.reason.as_str()), (Action::Skip, "no lines"));
    let d = decision(&plan, "old");
    assert_eq!(
        (d.action, d.reason.as_str()),
        (Action::Skip, "already archived")
    );
    let d = decision(&plan, "old.jsonl.gz");
    assert_eq!(d.action, Action::Prune);
    assert!(d.reason.starts_with("cap exceeded"), "{}", d.reason);
    assert!(
        plan.decisions.iter().all(|d| d.target != "terminal"),
        "non-agent sessions are only counted"
    );
    let skipped: std::collections::BTreeMap<_, _> = plan
        .skipped
        .iter()
        .map(|s| (s.reason.as_str(), s.count))
        .collect();
    assert_eq!(skipped.get("not-agent"), Some(&1), "{skipped:?}");
    assert_eq!(skipped.get("pinned"), Some(&1), "{skipped:?}");
    assert_eq!(plan.archive_cap, 1);
}

#[test]
fn a_plans_prune_decisions_are_what_prune_then_removes() {
    // Guards plan/prune agreement and prune order: orphans and backups first, then the oldest
    // only copy, and pinned archives never.
    let host = MockHost::new();
    archived_session(&host, "oldest", 40);
    let b = archived_session(&host, "middle", 20);
    let c = archived_session(&host, "newest", 10);
    let p = archived_session(&host, "pinned-old", 90);
    host.objects
        .inner
        .update_meta(
            "pinned-old",
            &serde_json::from_value(json!({"session:archive_pinned": true})).unwrap(),
        )
        .unwrap();
    host.archive_file("orphan.jsonl.gz", &[0x1f, 0x8b, 0, 0], host.now_ms());
    host.session("restored").create();
    host.archive_file("restored.jsonl.gz", &[0x1f; 30], host.now_ms() - DAY_MS);
    // Over the cap by less than `oldest` plus the non-session files: two only copies survive.
    let cap = (b + c + p) as u64;
    let archiver = host.archiver("inactivity", &format!(r#"{{"max_total_bytes":{cap}}}"#));
    host.rec.reset_log();

    let plan = archiver.plan().expect("plan").value;

    assert_eq!(host.rec.any_write(), None);
    let order: Vec<&str> = plan
        .decisions
        .iter()
        .filter(|d| d.action == Action::Prune)
        .map(|d| d.target.as_str())
        .collect();
    assert_eq!(
        order,
        ["restored.jsonl.gz", "orphan.jsonl.gz", "oldest.jsonl.gz"],
        "{:#?}",
        plan.decisions
    );
    assert!(decision(&plan, "restored.jsonl.gz")
        .reason
        .contains("backup"));
    assert!(decision(&plan, "orphan.jsonl.gz").reason.contains("orphan"));

    let report = archiver.prune().expect("prune").value;

    assert_eq!((report.pruned, report.tombstoned), (3, 1), "{report:?}");
    for name in order {
        assert!(host.archive_bytes(name).is_none(), "{name} pruned");
    }
    for id in ["middle", "newest", "pinned-old"] {
        assert!(
            host.archive_bytes(&format!("{id}.jsonl.gz")).is_some(),
            "{id} kept"
        );
        assert!(is_archived(&host, id), "{id} still archived");
    }
    assert!(host
        .meta_value("oldest", "session:archive_pruned_at")
        .is_i64());
}

#[test]
fn a_pin_keeps_a_session_out_of_archive_and_its_archive_out_of_prune() {
    // Guards `session:archive_pinned`: neither sweep, archive nor prune touches a pinned session.
    let host = MockHost::new();
    host.session("pinned-live")
        .idle_days(100)
        .lines(5)
        .pinned()
        .create();
    archived_session(&host, "pinned-archived", 100);
    host.objects
        .inner
        .update_meta(
            "pinned-archived",
            &serde_json::from_value(json!({"session:archive_pinned": true})).unwrap(),
        )
        .unwrap();
    let live = host.output("pinned-live");
    let gz = host.archive_bytes("pinned-archived.jsonl.gz");
    let archiver = host.archiver("inactivity", r#"{"max_total_bytes":1}"#);

    let plan = archiver.plan().expect("plan").value;
    assert!(targets(&plan, Action::Archive).is_empty(), "{plan:#?}");
    assert!(targets(&plan, Action::Prune).is_empty(), "{plan:#?}");

    let report = archiver.sweep(|_| {}).expect("sweep").value;

    assert_eq!(report.archived, 0, "{report:?}");
    let prune = report.prune.expect("prune ran");
    assert_eq!(prune.pruned, 0, "{prune:?}");
    assert_eq!(host.output("pinned-live"), live);
    assert_eq!(host.archive_bytes("pinned-archived.jsonl.gz"), gz);
    let err = expect_policy_error(archiver.archive("pinned-live"));
    assert!(
        matches!(&err, PolicyError::Invalid(m) if m.contains("pinned")),
        "an explicit archive of a pinned session is refused: {err:?}"
    );
    assert_eq!(host.output("pinned-live"), live);

    // Unpinned, the same session is archived by the next sweep.
    host.objects
        .inner
        .update_meta(
            "pinned-live",
            &serde_json::from_value(json!({"session:archive_pinned": false})).unwrap(),
        )
        .unwrap();
    let plan = archiver.plan().expect("plan").value;
    assert_eq!(
        targets(&plan, Action::Archive),
        BTreeSet::from(["pinned-live".to_string()])
    );
}

#[test]
fn a_bad_config_is_rejected_naming_the_field() {
    // Guards config validation: 0 or negative days, wrong types, unknown keys and a 0 cap.
    let host = MockHost::new();
    let archiver = host.archiver("inactivity", r#"{"inactive_days":3}"#);
    for (config, field) in [
        (r#"{"inactive_days":0}"#, "inactive_days"),
        (r#"{"inactive_days":-1}"#, "inactive_days"),
        (r#"{"inactive_days":"7"}"#, "inactive_days"),
        (r#"{"inactive_days":1.5}"#, "inactive_days"),
        (r#"{"inactive_dayz":7}"#, "inactive_dayz"),
        (r#"{"max_total_bytes":0}"#, "max_total_bytes"),
        (r#"{"max_total_bytes":-1}"#, "max_total_bytes"),
        (r#"{"max_restore_bytes":0}"#, "max_restore_bytes"),
        (r#"{"level":10}"#, "level"),
    ] {
        let err = expect_policy_error(archiver.set_config(config));
        match &err {
            PolicyError::InvalidConfig(m) => assert!(m.contains(field), "{config}: {m}"),
            other => panic!("{config}: expected invalid-config, got {other:?}"),
        }
        assert_eq!(
            archiver.config(),
            r#"{"inactive_days":3}"#,
            "old config kept"
        );
    }
    for config in ["[]", "7", "not json", r#"{"inactive_days":7"#] {
        let err = expect_policy_error(archiver.set_config(config));
        assert!(
            matches!(err, PolicyError::InvalidConfig(_)),
            "{config}: {err:?}"
        );
    }

    let built = Archiver::new(
        host.stores(),
        shared_runtime(),
        load_policy("inactivity"),
        ArchiverOptions {
            config: r#"{"inactive_days":0}"#.into(),
            workers: Some(1),
            locks: SessionLocks::in_process(),
        },
    );
    assert!(
        matches!(
            built.as_ref().err().and_then(|e| e.policy_error()),
            Some(PolicyError::InvalidConfig(_))
        ),
        "an archiver is never built with a bad config"
    );
}

#[test]
fn an_empty_config_is_completed_with_the_seed_defaults() {
    // Guards the defaults: 7 days, 2 GiB, exactly the seed's.
    let host = MockHost::new();
    let archiver = host.archiver("inactivity", "{}");

    let normalised: Value =
        serde_json::from_str(&archiver.set_config("{}").expect("valid").value).unwrap();

    assert_eq!(normalised["inactive_days"], json!(7));
    assert_eq!(normalised["max_total_bytes"], json!(2u64 << 30));
    let again = archiver
        .set_config(&normalised.to_string())
        .expect("the normalised form is itself valid")
        .value;
    assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), normalised);
}
