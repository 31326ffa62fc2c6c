//! Hostile input: session ids that are paths, NULs, huge or empty; meta of the
//! wrong JSON types. Every case ends in a typed error or a skip with a reason — never a trap,
//! never a wrong archive, never a byte read or written outside the archive directory.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use session_archiver::archiver::Archiver;
use session_archiver::bindings::guest::{Action, Error as PolicyError, SweepPlan};
use session_archiver::error::ArchiverError;
use session_archiver::store::{Meta, ObjectStore};
use session_archiver_testkit::{expect_policy_error, MockHost};

/// Ids no archive name can be built from (they are fine object ids for the store).
fn hostile_ids() -> Vec<String> {
    vec![
        "../x".into(),
        "../../etc/passwd".into(),
        "/etc/passwd".into(),
        "a\0b".into(),
        "x".repeat(10_000),
        "..".into(),
        ".".into(),
        ".hidden".into(),
        "x/../../etc".into(),
        "tab\there".into(),
        "é".into(),
    ]
}

/// Archive-dir operations that touch a named file (everything but `list`, `stat` and `path`,
/// which the mock validates and which read nothing).
const TOUCHING: [&str; 7] = [
    "archive-dir.create",
    "archive-dir.open",
    "archive-dir.remove",
    "archive-dir.remove-if-unchanged",
    "archive-dir.write",
    "archive-dir.commit",
    "archive-dir.read",
];

fn assert_no_archive_file_touched(host: &MockHost, what: &str) {
    for op in TOUCHING {
        let calls = host.calls_to(op);
        assert!(calls.is_empty(), "{what}: unexpected {op}: {calls:?}");
    }
    assert!(
        host.archives.inner.list_names().is_empty(),
        "{what}: archive dir stays empty"
    );
}

fn short(id: &str) -> String {
    format!("{:?}", id.chars().take(20).collect::<String>())
}

trait ListNames {
    fn list_names(&self) -> Vec<String>;
}

impl ListNames for session_archiver::archive_dir::memory::MemoryArchiveDir {
    fn list_names(&self) -> Vec<String> {
        session_archiver::archive_dir::ArchiveDir::list(self)
            .expect("list")
            .into_iter()
            .map(|e| e.name)
            .collect()
    }
}

#[test]
fn hostile_ids_give_typed_errors_and_touch_no_archive_file() {
    // Guards the archive name boundary: an id becomes a file name only through validation.
    let host = MockHost::new();
    let ids = hostile_ids();
    for id in &ids {
        host.session(id).idle_days(10).lines(3).create();
    }
    let archiver = host.archiver("inactivity", "{}");
    host.rec.reset_log();

    for id in &ids {
        let what = short(id);
        let meta = host.meta(id);
        let output = host.output(id);

        let err = expect_policy_error(archiver.archive(id));
        assert!(
            matches!(&err, PolicyError::Invalid(m) if m.contains("name")),
            "archive {what}: {err:?}"
        );
        assert_eq!(
            expect_policy_error(archiver.restore(id)),
            PolicyError::NotArchived(id.clone()),
            "restore {what}"
        );
        assert_eq!(host.meta(id), meta, "{what}: meta untouched");
        assert_eq!(host.output(id), output, "{what}: live output untouched");
    }
    assert_no_archive_file_touched(&host, "hostile ids");
}

#[test]
fn hostile_ids_marked_archived_are_refused_without_reading_anything() {
    // Guards restore and export when meta claims an archive for an id no archive can have.
    let host = MockHost::new();
    let ids = hostile_ids();
    for id in &ids {
        host.session(id)
            .meta("session:archived_at", json!(host.now_ms()))
            .meta("session:archived_bytes", json!(10))
            .meta(
                "session:archive_path",
                json!(format!("/memory/archives/{id}.jsonl.gz")),
            )
            .create();
    }
    let archiver = host.archiver("inactivity", "{}");
    host.rec.reset_log();

    for id in &ids {
        let what = short(id);
        for (op, result) in [
            ("restore", archiver.restore(id).map(|_| ())),
            ("export", archiver.export(id, std::io::sink()).map(|_| ())),
        ] {
            let err = expect_policy_error(result);
            assert!(
                matches!(err, PolicyError::Invalid(_) | PolicyError::InvalidMeta(_)),
                "{op} {what}: {err:?}"
            );
        }
    }
    assert_no_archive_file_touched(&host, "archived hostile ids");
    assert_eq!(host.rec.any_write(), None);
}

#[test]
fn unknown_and_empty_ids_are_not_found() {
    // Guards the simplest hostile input: ids that name nothing.
    let host = MockHost::new();
    let archiver = host.archiver("inactivity", "{}");
    for id in ["", "nope", "../nope"] {
        for (op, result) in [
            ("archive", archiver.archive(id).map(|_| ())),
            ("restore", archiver.restore(id).map(|_| ())),
            ("export", archiver.export(id, std::io::sink()).map(|_| ())),
        ] {
            let err = expect_policy_error(result);
            assert!(
                matches!(err, PolicyError::NotFound(_) | PolicyError::Invalid(_)),
                "{op} {id:?}: {err:?}"
            );
        }
        let err = expect_policy_error(archiver.recover(id));
        assert!(
            matches!(err, PolicyError::NotFound(_) | PolicyError::Invalid(_)),
            "recover {id:?}: {err:?}"
        );
    }
    assert_eq!(host.rec.any_write(), None);
}

#[test]
fn a_sweep_over_hostile_ids_archives_the_good_sessions_and_reports_the_rest() {
    // Guards "one session failing never stops the sweep" with ids that cannot be archived.
    let host = MockHost::new();
    let ids = hostile_ids();
    for id in &ids {
        host.session(id).idle_days(10).lines(3).create();
    }
    host.session("good-1").idle_days(10).lines(3).create();
    host.session("good-2").idle_days(10).lines(3).create();

    let label = "sweep";
    let archiver = host.archiver("inactivity", "{}");
    host.rec.reset_log();
    let r = archiver.sweep(|_| {}).expect("sweep").value;
    let failed: Vec<(String, PolicyError)> = r
        .failed
        .into_iter()
        .map(|f| match f.error {
            ArchiverError::Policy { error, .. } => (f.target, error),
            other => panic!("{label}: {}: not a typed error: {other}", f.target),
        })
        .collect();

    let failed_ids: Vec<&String> = failed.iter().map(|(t, _)| t).collect();
    assert_eq!(failed.len(), ids.len(), "{label}: {failed_ids:?}");
    for (target, err) in &failed {
        assert!(ids.contains(target), "{label}: {}", short(target));
        assert!(matches!(err, PolicyError::Invalid(_)), "{label}: {err:?}");
    }
    for id in ["good-1", "good-2"] {
        assert!(
            host.meta_value(id, "session:archived_at").as_i64() > Some(0),
            "{label}: {id} archived"
        );
    }
    for id in &ids {
        assert!(host.output(id).is_some(), "{label}: {} kept", short(id));
    }
    let names = host.archives.inner.list_names();
    assert_eq!(
        names,
        ["good-1.jsonl.gz", "good-2.jsonl.gz"],
        "{label}: only the good archives exist"
    );
}

/// Sessions whose meta holds the wrong JSON types, each otherwise idle with output.
fn wrong_types() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("la-string", "session:last_activity_ms", json!("yesterday")),
        ("la-object", "session:last_activity_ms", json!({"ms": 5})),
        ("la-array", "session:last_activity_ms", json!([1, 2])),
        ("la-huge", "session:last_activity_ms", json!(1e300)),
        ("la-float", "session:last_activity_ms", json!(1.5e12)),
        ("la-negative", "session:last_activity_ms", json!(-5)),
        ("la-bool", "session:last_activity_ms", json!(true)),
        ("lc-bool", "session:line_count", json!(true)),
        ("lc-negative", "session:line_count", json!(-3)),
        ("lc-string", "session:line_count", json!("12")),
        ("lc-huge", "session:line_count", json!(1e300)),
        ("view-number", "view", json!(7)),
        ("view-object", "view", json!({"agent": true})),
        ("archived-string", "session:archived_at", json!("yes")),
        ("archived-huge", "session:archived_at", json!(1e300)),
        ("archived-object", "session:archived_at", json!({})),
        ("pinned-string", "session:archive_pinned", json!("yes")),
        ("pinned-number", "session:archive_pinned", json!(1)),
    ]
}

fn reason<'p>(plan: &'p SweepPlan, id: &str) -> Option<(&'p Action, &'p str)> {
    plan.decisions
        .iter()
        .find(|d| d.target == id)
        .map(|d| (&d.action, d.reason.as_str()))
}

#[test]
fn meta_of_the_wrong_json_types_is_skipped_never_archived_and_never_traps() {
    // Guards selection against meta written by other tools: strings for numbers, objects, 1e300.
    let host = MockHost::new();
    let cases = wrong_types();
    for (id, key, value) in &cases {
        host.session(id)
            .idle_days(30)
            .lines(4)
            .meta(key, value.clone())
            .create();
    }
    host.session("control").idle_days(30).lines(4).create();
    let outputs: BTreeMap<_, _> = cases
        .iter()
        .map(|(id, ..)| (*id, host.output(id)))
        .collect();
    let archiver = host.archiver("inactivity", "{}");

    let plan = archiver.plan().expect("plan never fails on bad meta").value;
    let report = archiver.sweep(|_| {}).expect("sweep").value;

    assert_eq!(report.archived, 1, "only the control session: {report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(host.meta_value("control", "session:archived_at").as_i64() > Some(0));
    for (id, key, value) in &cases {
        assert_eq!(host.output(id), outputs[id], "{id}: live output untouched");
        assert_eq!(&host.meta_value(id, key), value, "{id}: meta untouched");
        assert!(
            host.archive_bytes(&format!("{id}.jsonl.gz")).is_none(),
            "{id}"
        );
        if let Some((action, why)) = reason(&plan, id) {
            assert_eq!(*action, Action::Skip, "{id}: {why}");
        }
    }
    let archive_targets: Vec<_> = plan
        .decisions
        .iter()
        .filter(|d| d.action == Action::Archive)
        .map(|d| d.target.as_str())
        .collect();
    assert_eq!(archive_targets, ["control"]);
}

#[test]
fn plan_reasons_name_the_meta_key_that_holds_the_wrong_type() {
    // Guards the plan's explanation: a session skipped because of bad meta says which key and
    // what it holds, not a misleading "no last activity" (people must be able to fix it).
    let host = MockHost::new();
    let cases: Vec<_> = wrong_types()
        .into_iter()
        .filter(|(id, ..)| !id.starts_with("view-") && *id != "la-negative")
        .collect();
    for (id, key, value) in &cases {
        host.session(id)
            .idle_days(30)
            .lines(4)
            .meta(key, value.clone())
            .create();
    }
    let archiver = host.archiver("inactivity", "{}");

    let plan = archiver.plan().expect("plan").value;

    let mut unclear = Vec::new();
    for (id, key, _) in &cases {
        let (action, why) = reason(&plan, id).unwrap_or_else(|| panic!("{id}: no decision"));
        assert_eq!(*action, Action::Skip, "{id}");
        if !why.contains(key) {
            unclear.push(format!("{id}: {why:?}"));
        }
    }
    assert!(
        unclear.is_empty(),
        "reasons that do not name the bad key:\n{}",
        unclear.join("\n")
    );
}

fn archived(host: &MockHost, archiver: &Archiver, id: &str) {
    host.session(id).idle_days(30).lines(4).create();
    archiver.archive(id).expect("archive");
}

#[test]
fn restore_refuses_archive_meta_of_the_wrong_types_without_reading() {
    // Guards restore's trust in meta: each archive key of a wrong type is `invalid-meta`.
    let host = MockHost::new();
    let archiver = host.archiver("inactivity", "{}");
    for (i, (key, value)) in [
        ("session:archived_bytes", json!("lots")),
        ("session:archived_bytes", json!(-5)),
        ("session:archived_bytes", json!(1e300)),
        ("session:archive_crc32", json!(1u64 << 40)),
        ("session:archive_crc32", json!("crc")),
        ("session:archive_path", json!({"path": "/etc/passwd"})),
        (
            "session:archive_path",
            json!(["/memory/archives/x.jsonl.gz"]),
        ),
        ("session:archived_at", json!("yes")),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("s{i}");
        archived(&host, &archiver, &id);
        let mut patch = Meta::new();
        patch.insert(key.into(), value.clone());
        host.objects.inner.update_meta(&id, &patch).unwrap();
        let meta = host.meta(&id);
        host.rec.reset_log();

        let err = expect_policy_error(archiver.restore(&id));

        assert!(
            matches!(&err, PolicyError::InvalidMeta(m) if m.contains(key)),
            "{key} = {value}: {err:?}"
        );
        assert!(
            host.calls_to("archive-dir.open").is_empty(),
            "{key} = {value}"
        );
        assert_eq!(host.rec.any_write(), None, "{key} = {value}");
        assert_eq!(host.meta(&id), meta);
    }
}
