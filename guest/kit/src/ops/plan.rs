//! `plan`: the policy's selection for every session and the archives a prune would delete, with
//! reasons. Only reads.

use std::collections::BTreeMap;

use super::{archive, prune, recover};
use super::{first_held, for_each_object, Error, OUTPUT_FILE};
use crate::bindings::exports::session_archiver::policy::policy as api;
use crate::decisions::{Candidate, Decisions, Selection};
use crate::host::{Host, Level, Object};
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
                    code: "invalid-meta".into(),
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
                    code: "policy-error".into(),
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
pub fn plan<H: Host, D: Decisions>(h: &H, d: &D) -> Result<api::SweepPlan, Error> {
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
    let archives = super::classify_archives(h)?;
    let total: u64 = archives.iter().map(|a| a.entry.size).sum();
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
    Ok(api::SweepPlan {
        scanned,
        decisions,
        skipped: skip_counts(counts),
        archive_bytes: total,
        archive_cap: d.cap(),
    })
}

/// Recover, archive what the policy selects, prune: see the WIT `policy.sweep`.
pub fn sweep<H: Host, D: Decisions>(h: &H, d: &D) -> Result<api::SweepReport, Error> {
    let rec = recover(h, None)?;
    let now = h.now_ms();
    let mut objects = Vec::new();
    for_each_object(h, &mut |o| objects.push(o))?;
    let mut report = api::SweepReport {
        scanned: 0,
        archived: 0,
        recovered: rec.finished + rec.rolled_back,
        skipped: Vec::new(),
        failed: rec.failed,
        bytes_archived: 0,
        bytes_written: 0,
        prune: api::PruneReport {
            pruned: 0,
            tombstoned: 0,
            bytes_freed: 0,
            failed: Vec::new(),
        },
    };
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for (obj, selection, _) in select_objects(h, d, objects, now) {
        report.scanned += 1;
        match selection {
            Selection::Archive { .. } => match archive(h, &obj.id, d.level()) {
                Ok(o) if o.raw_bytes > 0 => {
                    report.archived += 1;
                    report.bytes_archived += o.raw_bytes;
                    report.bytes_written += o.archive_bytes;
                }
                Ok(_) => *counts.entry("empty".into()).or_default() += 1,
                Err(error) => report.failed.push(api::Failure {
                    target: obj.id,
                    error,
                }),
            },
            Selection::Skip { code, .. } => *counts.entry(code).or_default() += 1,
            // Recovery ran first; a session still busy failed there and is reported in `failed`.
            Selection::Recover { .. } => *counts.entry("busy".into()).or_default() += 1,
        }
    }
    report.skipped = skip_counts(counts);
    report.prune = match prune(h, d) {
        Ok(p) => p,
        Err(error) => api::PruneReport {
            pruned: 0,
            tombstoned: 0,
            bytes_freed: 0,
            failed: vec![api::Failure {
                target: "archive directory".into(),
                error,
            }],
        },
    };
    Ok(report)
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::super::test_fixtures::*;
    use crate::bindings::exports::session_archiver::policy::policy as api;

    use crate::meta::keys;
    use crate::ops::{self, OUTPUT_FILE};

    #[test]
    fn plan_has_no_side_effects_and_matches_what_sweep_does() {
        let h = host_with_session(&body(10));
        h.add_object("s0", json!({"view":"term"}));
        h.add_object("s2", json!({"view":"agent", keys::ARCHIVED_AT: 5}));
        h.put_archive("junk.gz", vec![1; 100], 1);
        h.state.borrow_mut().page_cap = 1;
        let plan = ops::plan(&h, &Simple { cap: 10 }).unwrap();
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
        let archive: Vec<_> = plan
            .decisions
            .iter()
            .filter(|d| d.action == api::Action::Archive)
            .map(|d| d.target.clone())
            .collect();
        assert_eq!(archive, vec![ID.to_string()]);
        assert!(plan
            .decisions
            .iter()
            .any(|d| d.action == api::Action::Prune && d.target == "junk.gz"));
        let sweep = ops::sweep(&h, &Simple { cap: 10_000 }).unwrap();
        assert_eq!((sweep.scanned, sweep.archived), (3, 1));
        assert_eq!(sweep.bytes_archived, body(10).len() as u64);
        assert!(sweep
            .skipped
            .iter()
            .any(|s| s.reason == "not-agent" && s.count == 1));
    }

    #[test]
    fn one_failing_session_never_stops_the_sweep() {
        let h = host_with_session(&body(10));
        h.add_object("s2", json!({"view":"agent"}));
        h.put_file("s2", OUTPUT_FILE, b"two\n");
        h.state
            .borrow_mut()
            .fail_next
            .push("archive-dir.create".into());
        let rep = ops::sweep(&h, &Simple { cap: u64::MAX }).unwrap();
        assert_eq!(rep.archived, 1);
        assert_eq!(rep.failed.len(), 1);
        assert_eq!(rep.failed[0].target, ID);
        assert!(
            h.meta(ID).get(keys::INTENT).is_none(),
            "a failed archive clears its intent"
        );
    }
}
