//! `plan`: the policy's selection for every session and (scope `full`) the archives a prune
//! would delete, with reasons. Only reads. The host's sweep archives what it selects.

use std::collections::BTreeMap;

use super::{classify_archives, first_held, for_each_object, Error, OUTPUT_FILE};
use crate::bindings::exports::session_archiver::policy::policy as api;
use crate::decisions::{skip_code, Candidate, Decisions, Selection};
use crate::host::{dir_err, Host, Level, Object};
use crate::meta::Meta;

fn skip_counts(counts: BTreeMap<String, u32>) -> Vec<api::SkipCount> {
    counts
        .into_iter()
        .map(|(reason, count)| api::SkipCount { reason, count })
        .collect()
}

/// Readable bytes of a session's live output; 0 when there is none or it cannot be stat'ed
/// (logged: under-counting only makes a budget policy archive less, never lose data).
fn live_bytes<H: Host>(h: &H, id: &str) -> u64 {
    match h.stat_file(id, OUTPUT_FILE) {
        Ok(Some(s)) => s.size - first_held(&s),
        Ok(None) => 0,
        Err(e) => {
            h.log(
                Level::Warn,
                &format!("session {id}: cannot stat live output: {e:?}"),
            );
            0
        }
    }
}

/// The policy's selection for every object, in order, with unreadable meta as its own skip
/// reason (never shown to the policy). Returns each object with its selection and its measured
/// live bytes (`None` when not measured).
fn select_objects<H: Host, D: Decisions>(
    h: &H,
    d: &D,
    objects: Vec<Object>,
    now: i64,
) -> Vec<(Object, Selection, Option<u64>)> {
    let measure = d.needs_live_bytes();
    let mut candidates = Vec::new();
    let mut slots: Vec<(Object, Result<usize, Selection>)> = Vec::with_capacity(objects.len());
    for obj in objects {
        match Meta::parse(&obj.meta) {
            Ok(meta) => {
                candidates.push(Candidate {
                    id: obj.id.clone(),
                    live_bytes: if measure { live_bytes(h, &obj.id) } else { 0 },
                    meta,
                });
                slots.push((obj, Ok(candidates.len() - 1)));
            }
            Err(e) => slots.push((
                obj,
                Err(Selection::Skip {
                    code: skip_code::INVALID_META.into(),
                    reason: e.to_string(),
                    candidate: true,
                }),
            )),
        }
    }
    let mut chosen = d.select_all(&candidates, now).into_iter();
    slots
        .into_iter()
        .map(|(obj, slot)| match slot {
            Ok(i) => {
                let sel = chosen.next().unwrap_or_else(|| Selection::Skip {
                    code: skip_code::POLICY_ERROR.into(),
                    reason: "the policy returned no decision for this session".into(),
                    candidate: true,
                });
                let bytes = measure.then(|| candidates[i].live_bytes);
                (obj, sel, bytes)
            }
            Err(sel) => (obj, sel, None),
        })
        .collect()
}

/// A dry run of a sweep: see the WIT `policy.plan`. Only reads.
pub fn plan<H: Host, D: Decisions>(
    h: &H,
    d: &D,
    scope: api::PlanScope,
) -> Result<api::SweepPlan, Error> {
    let now = h.now_ms();
    let mut scanned = 0u32;
    let mut decisions = Vec::new();
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    let mut objects = Vec::new();
    for_each_object(h, &mut |o| objects.push(o))?;
    for (obj, selection, measured) in select_objects(h, d, objects, now) {
        scanned += 1;
        match selection {
            Selection::Archive { reason } => {
                let bytes = measured.unwrap_or_else(|| live_bytes(h, &obj.id));
                decisions.push(api::Decision {
                    target: obj.id,
                    action: api::Action::Archive,
                    reason,
                    bytes,
                });
            }
            Selection::Skip {
                code,
                reason,
                candidate,
            } => {
                *counts.entry(code).or_default() += 1;
                if candidate {
                    decisions.push(api::Decision {
                        target: obj.id,
                        action: api::Action::Skip,
                        reason,
                        bytes: 0,
                    });
                }
            }
            Selection::Recover { reason } => {
                decisions.push(api::Decision {
                    target: obj.id,
                    action: api::Action::Recover,
                    reason,
                    bytes: 0,
                });
            }
        }
    }
    let total = match scope {
        api::PlanScope::Full => {
            let archives = classify_archives(h)?;
            for pick in d.prune_plan(&archives, d.cap(), now) {
                if let Some(a) = archives.get(pick.index) {
                    decisions.push(api::Decision {
                        target: a.entry.name.clone(),
                        action: api::Action::Prune,
                        reason: pick.reason,
                        bytes: a.entry.size,
                    });
                }
            }
            archives.iter().map(|a| a.entry.size).sum()
        }
        // Only the listing: judging each archive costs a meta read per archive.
        api::PlanScope::Sessions => h
            .list_archives()
            .map_err(|e| dir_err("list archives", e))?
            .iter()
            .filter(|e| e.name.ends_with(".gz"))
            .map(|e| e.size)
            .sum(),
    };
    Ok(api::SweepPlan {
        scanned,
        decisions,
        skipped: skip_counts(counts),
        archive_bytes: total,
        archive_cap: d.cap(),
    })
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::super::test_fixtures::*;
    use crate::bindings::exports::session_archiver::policy::policy as api;

    use crate::decisions::Decisions;
    use crate::meta::keys;
    use crate::ops::{self, OUTPUT_FILE};

    #[test]
    fn plan_has_no_side_effects_and_archiving_what_it_selects_archives_exactly_that() {
        let h = host_with_session(&body(10));
        h.add_object("s0", json!({"view":"term"}));
        h.add_object("s2", json!({"view":"agent", keys::ARCHIVED_AT: 5}));
        h.put_archive("junk.gz", vec![1; 100], 1);
        h.state.borrow_mut().page_cap = 1;
        let plan = ops::plan(&h, &Simple { cap: 10 }, api::PlanScope::Full).unwrap();
        let mutating = [
            "update-meta",
            "create",
            "append",
            "delete",
            "rename",
            "remove",
            "commit",
            "export-sink",
        ];
        assert!(
            !h.calls()
                .iter()
                .any(|c| mutating.iter().any(|m| c.contains(m))),
            "{:?}",
            h.calls()
        );
        assert_eq!(plan.scanned, 3);
        assert!(plan
            .skipped
            .iter()
            .any(|s| s.reason == "not-agent" && s.count == 1));
        assert!(plan
            .decisions
            .iter()
            .any(|d| d.action == api::Action::Prune && d.target == "junk.gz"));
        let archive = archive_targets(&plan);
        assert_eq!(archive, vec![ID.to_string()]);
        // What the host's sweep then does with the plan: archive each selected session.
        let out = ops::archive(&h, &archive[0], Simple { cap: 10 }.level()).unwrap();
        assert_eq!(out.raw_bytes, body(10).len() as u64);
        let again = ops::plan(&h, &Simple { cap: 10_000 }, api::PlanScope::Full).unwrap();
        assert!(
            archive_targets(&again).is_empty(),
            "nothing left to archive"
        );
    }

    #[test]
    fn a_sessions_plan_selects_the_same_sessions_without_judging_the_archives() {
        let h = host_with_session(&body(10));
        h.add_object("s2", json!({"view":"agent", keys::ARCHIVED_AT: 5}));
        h.put_archive("junk.gz", vec![1; 100], 1);
        let full = ops::plan(&h, &Simple { cap: 10 }, api::PlanScope::Full).unwrap();
        let before = h.calls().len();
        let sessions = ops::plan(&h, &Simple { cap: 10 }, api::PlanScope::Sessions).unwrap();
        let calls = &h.calls()[before..];
        // A full plan reads each archive's session; a sessions plan only lists the directory.
        let reads_per_object = |c: &[String]| c.iter().filter(|c| *c == "objects.get").count();
        assert_eq!(reads_per_object(calls), 0, "{calls:?}");
        assert_eq!(archive_targets(&sessions), archive_targets(&full));
        assert_eq!(sessions.skipped, full.skipped);
        assert_eq!(sessions.archive_bytes, full.archive_bytes);
        assert!(!sessions
            .decisions
            .iter()
            .any(|d| d.action == api::Action::Prune));
    }

    #[test]
    fn an_archive_that_cannot_create_its_file_fails_alone_and_clears_its_intent() {
        let h = host_with_session(&body(10));
        h.add_object("s2", json!({"view":"agent"}));
        h.put_file("s2", OUTPUT_FILE, b"two\n");
        h.state
            .borrow_mut()
            .fail_next
            .push("archive-dir.create".into());
        assert!(ops::archive(&h, ID, 6).is_err());
        assert!(
            h.meta(ID).get(keys::INTENT).is_none(),
            "a failed archive clears its intent"
        );
        assert_eq!(ops::archive(&h, "s2", 6).unwrap().raw_bytes, 4);
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), body(10), "live copy kept");
    }

    fn archive_targets(plan: &api::SweepPlan) -> Vec<String> {
        plan.decisions
            .iter()
            .filter(|d| d.action == api::Action::Archive)
            .map(|d| d.target.clone())
            .collect()
    }
}
