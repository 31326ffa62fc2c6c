//! Which sessions to archive: the seed's rules, plus pins, intents and untrustworthy meta.
//!
//! `plan` comes here (through `Decisions::select_all`), and the host's sweep archives what the plan
//! selects, so a plan is what a sweep does.

use archiver_kit::decide::{eligible, skip, DAY_MS};
use archiver_kit::decisions::Selection;
use archiver_kit::meta::Meta;

/// Decides for one session, given its meta and the time now: the kit's eligibility rules (the
/// seed's, plus pins, intents and untrustworthy meta), then idle for at least `inactive_days`.
pub fn select(meta: &Meta, now_ms: i64, inactive_days: u64) -> Selection {
    let last = match eligible(meta) {
        Ok(e) => e.last_activity_ms,
        Err(selection) => return selection,
    };
    let idle = now_ms.saturating_sub(last);
    let cutoff = inactive_days as i64 * DAY_MS;
    if idle >= cutoff {
        Selection::Archive {
            reason: format!("idle {} d >= {inactive_days} d", idle / DAY_MS),
        }
    } else {
        skip(
            "recent",
            format!("idle {} d < {inactive_days} d", idle / DAY_MS),
            true,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_000 * DAY_MS;

    fn sel(meta: serde_json::Value) -> Selection {
        select(&Meta::parse(&meta.to_string()).unwrap(), NOW, 7)
    }

    fn code(s: &Selection) -> &str {
        match s {
            Selection::Archive { .. } => "archive",
            Selection::Skip { code, .. } => code,
            Selection::Recover { .. } => "recover",
        }
    }

    fn agent(extra: serde_json::Value) -> serde_json::Value {
        let mut m = json!({"view":"agent","session:last_activity_ms": NOW - 12 * DAY_MS, "session:line_count": 4});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    }

    #[test]
    fn an_idle_agent_session_is_archived_with_a_readable_reason() {
        let s = sel(agent(json!({})));
        assert_eq!(
            s,
            Selection::Archive {
                reason: "idle 12 d >= 7 d".into()
            }
        );
        assert_eq!(
            code(&sel(agent(
                json!({"session:last_activity_ms": NOW - 7 * DAY_MS})
            ))),
            "archive",
            "exactly the cutoff"
        );
    }

    #[test]
    fn the_seed_skip_rules_hold() {
        assert_eq!(code(&sel(json!({"view":"term"}))), "not-agent");
        assert_eq!(code(&sel(json!({}))), "not-agent");
        assert_eq!(
            code(&sel(agent(json!({"session:archived_at": 5})))),
            "archived"
        );
        assert_eq!(
            code(&sel(agent(json!({"session:archived_at": 0})))),
            "archive",
            "0 means not archived"
        );
        assert_eq!(
            code(&sel(agent(json!({"session:last_activity_ms": null})))),
            "no-activity"
        );
        assert_eq!(
            code(&sel(agent(json!({"session:last_activity_ms": 0})))),
            "no-activity"
        );
        assert_eq!(
            code(&sel(agent(json!({"session:last_activity_ms": "x"})))),
            "no-activity"
        );
        assert_eq!(
            code(&sel(agent(json!({"session:line_count": 0})))),
            "no-lines"
        );
        assert_eq!(
            code(&sel(agent(json!({"session:line_count": null})))),
            "no-lines"
        );
        assert_eq!(
            code(&sel(agent(
                json!({"session:last_activity_ms": NOW - DAY_MS})
            ))),
            "recent"
        );
    }

    #[test]
    fn pins_intents_and_unreadable_archive_keys_keep_a_session_out() {
        assert_eq!(
            code(&sel(agent(json!({"session:archive_pinned": true})))),
            "pinned"
        );
        assert_eq!(
            code(&sel(agent(json!({"session:archive_pinned": false})))),
            "archive"
        );
        assert_eq!(
            code(&sel(agent(json!({"session:archive_pinned": "yes"})))),
            "invalid-meta"
        );
        assert_eq!(
            code(&sel(agent(json!({"session:archived_at": "soon"})))),
            "invalid-meta"
        );
        assert_eq!(
            code(&sel(agent(
                json!({"session:archive_intent": {"op":"archive"}})
            ))),
            "recover"
        );
    }
}
