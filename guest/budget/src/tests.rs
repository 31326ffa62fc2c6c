//! The budget policy's plan and sweep on the kit's fake host: the same selection, real effects.

use archiver_kit::decide::{DAY_MS, MINUTE_MS};
use archiver_kit::fake::FakeHost;
use archiver_kit::host::Host;
use archiver_kit::meta::keys;
use archiver_kit::ops;
use serde_json::json;

use super::*;

fn session(h: &FakeHost, id: &str, idle_min: i64, bytes: usize) {
    let now = h.now_ms();
    h.add_object(
        id,
        json!({"view":"agent","session:last_activity_ms": now - idle_min * MINUTE_MS, "session:line_count": 1}),
    );
    let mut data = vec![b'x'; bytes.saturating_sub(1)];
    data.push(b'\n');
    h.put_file(id, "output", &data);
}

#[test]
fn plan_and_sweep_archive_the_same_least_recently_active_sessions() {
    let h = FakeHost::new(1_000 * DAY_MS);
    session(&h, "a-new", 90, 400);
    session(&h, "b-old", 3 * 24 * 60, 400);
    session(&h, "c-mid", 24 * 60, 400);
    session(&h, "d-hot", 5, 4_000);
    // The fake host stamps archives with a small tick, not the clock: keep the age rule out.
    let p = Budget::from_config(
        r#"{"max_live_bytes":4500,"min_idle_minutes":30,"max_archive_age_days":100000}"#,
    )
    .unwrap();
    let plan = ops::plan(&h, &p, api::PlanScope::Full).unwrap();
    let planned: Vec<_> = plan
        .decisions
        .iter()
        .filter(|d| d.action == api::Action::Archive)
        .map(|d| d.target.clone())
        .collect();
    // 5200 live, 4500 budget: "d-hot" is too recent, so "b-old" then "c-mid" go.
    assert_eq!(planned, ["b-old", "c-mid"]);
    assert!(h.file("b-old", "output").is_some(), "a plan writes nothing");

    let done = h.archive_planned(&p).unwrap();
    assert_eq!(done.len(), 2);
    let raw: u64 = done
        .iter()
        .map(|(_, o)| o.as_ref().unwrap().raw_bytes)
        .sum();
    assert_eq!(raw, 800);
    let mut archived: Vec<_> = ["a-new", "b-old", "c-mid", "d-hot"]
        .into_iter()
        .filter(|id| h.file(id, "output").is_none())
        .collect();
    archived.sort();
    assert_eq!(archived, planned);
    assert!(h.meta("b-old")[keys::ARCHIVED_AT].as_i64().unwrap() > 0);
    // A second plan finds nothing more to do: 4400 <= 4500.
    let again = ops::plan(&h, &p, api::PlanScope::Full).unwrap();
    assert!(again
        .decisions
        .iter()
        .all(|d| d.action != api::Action::Archive));
}

#[test]
fn old_archives_are_pruned_with_a_tombstone_and_restore_then_says_pruned() {
    let h = FakeHost::new(1_000 * DAY_MS);
    session(&h, "s", 10_000, 100);
    let p = Budget::from_config(r#"{"max_live_bytes":1,"max_archive_age_days":30}"#).unwrap();
    ops::archive(&h, "s", p.level()).unwrap();
    // The fake host stamps archives with a tick; make it the clock, as a real directory would.
    let now = h.now_ms();
    h.state
        .borrow_mut()
        .archives
        .get_mut("s.jsonl.gz")
        .unwrap()
        .1 = now;
    assert!(
        ops::prune(&h, &p).unwrap().pruned == 0,
        "a new archive is kept"
    );
    h.state.borrow_mut().now += 31 * DAY_MS;
    let rep = ops::prune(&h, &p).unwrap();
    assert_eq!((rep.pruned, rep.tombstoned), (1, 1));
    assert!(h.archive("s.jsonl.gz").is_none());
    assert!(matches!(
        ops::restore(&h, "s", u64::MAX),
        Err(api::Error::Pruned(_))
    ));
}

#[test]
fn the_component_glue_checks_the_config_first() {
    assert!(matches!(
        archiver_kit::policy::validate_config::<Budget>(r#"{"max_live_bytes":0}"#),
        Err(api::Error::InvalidConfig(m)) if m.contains("max_live_bytes")
    ));
    let normalised = archiver_kit::policy::validate_config::<Budget>("{}").unwrap();
    assert!(normalised.contains(r#""level":9"#), "{normalised}");
}
