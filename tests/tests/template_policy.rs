//! The template policy (`guest/template`) on the mock host: the few lines a policy author copies
//! to test a new policy (docs/writing-a-policy.md).

use session_archiver_testkit::MockHost;

#[test]
fn the_template_archives_sessions_idle_past_its_limit_and_keeps_the_rest() {
    let host = MockHost::new();
    let idle = host.session("idle").idle_days(2).lines(10).create();
    let busy = host.session("busy").idle_days(0).lines(10).create();
    let original = host.output(&idle).unwrap();
    let archiver = host.archiver("template", r#"{"idle_hours": 24}"#);

    let plan = archiver.plan().unwrap().value;
    assert!(plan
        .decisions
        .iter()
        .any(|d| d.target == idle && d.reason == "idle 48 h >= 24 h"));

    let report = archiver.sweep(|_| {}).unwrap().value;
    assert_eq!(report.archived, 1);
    assert!(host.output(&idle).is_none(), "archived: live copy freed");
    assert!(host.archive_bytes("idle.jsonl.gz").is_some());
    assert!(host.output(&busy).is_some(), "recent: left alone");

    archiver.restore(&idle).unwrap();
    assert_eq!(
        host.output(&idle).unwrap(),
        original,
        "restored byte for byte"
    );
}

#[test]
fn the_template_rejects_a_bad_config_naming_the_field() {
    let host = MockHost::new();
    let archiver = host.archiver("template", "{}");
    let err = archiver.set_config(r#"{"idle_hours": 0}"#).unwrap_err();
    assert!(err.to_string().contains("idle_hours"), "{err}");
}
