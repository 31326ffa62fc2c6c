//! Which sessions to archive: the least recently active ones, until live output fits the budget.
//!
//! Unlike an age rule, the decision depends on every session at once: the total of the agent
//! sessions' live output is compared with `max_live_bytes`, and eligible sessions are taken
//! oldest activity first until the total fits. `plan` and `sweep` both come here (through
//! `Decisions::select_all`), so a plan is exactly what a sweep does.

use archiver_kit::decide::{eligible, skip, MINUTE_MS};
use archiver_kit::decisions::{skip_code, Candidate, Selection};
use archiver_kit::meta::Meta;

use crate::config::Config;

/// Bytes for people: "512 B", "3.0 KiB", "1.5 MiB", "2.0 GiB".
pub fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Idle time for people: minutes under two hours, hours under two days, then days.
fn idle_text(ms: i64) -> String {
    let min = ms / MINUTE_MS;
    if min < 120 {
        format!("{min} min")
    } else if min < 48 * 60 {
        format!("{} h", min / 60)
    } else {
        format!("{} d", min / (24 * 60))
    }
}

/// The per-session filter: may this session be archived at all under this config? `Archive`
/// here means "a candidate if live output is over budget", not "archive now".
pub fn select(meta: &Meta, now_ms: i64, cfg: &Config) -> Selection {
    let last = match eligible(meta) {
        Ok(e) => e.last_activity_ms,
        Err(selection) => return selection,
    };
    let idle = now_ms.saturating_sub(last);
    let min_idle = cfg.min_idle_minutes as i64 * MINUTE_MS;
    if idle < min_idle {
        return skip(
            "recent",
            format!(
                "active {} ago < {} min",
                idle_text(idle),
                cfg.min_idle_minutes
            ),
            true,
        );
    }
    Selection::Archive {
        reason: format!("idle {}", idle_text(idle)),
    }
}

/// Decides for every session: one selection per candidate, in the order given.
pub fn select_all(sessions: &[Candidate], now_ms: i64, cfg: &Config) -> Vec<Selection> {
    let live: u64 = sessions
        .iter()
        .filter(|c| c.meta.view() == "agent")
        .map(|c| c.live_bytes)
        .sum();
    let budget = cfg.max_live_bytes;
    let mut out: Vec<Selection> = sessions
        .iter()
        .map(|c| match select(&c.meta, now_ms, cfg) {
            Selection::Archive { .. } if c.live_bytes == 0 => skip(
                skip_code::NOTHING_TO_ARCHIVE,
                "no live output to free",
                true,
            ),
            other => other,
        })
        .collect();

    // Eligible sessions, least recently active first (id breaks ties, so the order is stable).
    let mut eligible_order: Vec<(i64, &str, usize)> = out
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Selection::Archive { .. }))
        .map(|(i, _)| {
            let last = eligible(&sessions[i].meta)
                .map(|e| e.last_activity_ms)
                .unwrap_or(i64::MAX);
            (last, sessions[i].id.as_str(), i)
        })
        .collect();
    eligible_order.sort();

    let mut remaining = live;
    for (_, _, i) in eligible_order {
        let Selection::Archive { reason: idle } = &out[i] else {
            continue;
        };
        out[i] = if remaining > budget {
            let reason = format!(
                "over budget: live {} > {}; least recently active ({idle}), frees {}",
                human(remaining),
                human(budget),
                human(sessions[i].live_bytes)
            );
            remaining = remaining.saturating_sub(sessions[i].live_bytes);
            Selection::Archive { reason }
        } else if live <= budget {
            skip(
                "within-budget",
                format!("live {} <= budget {}", human(live), human(budget)),
                true,
            )
        } else {
            skip(
                "within-budget",
                format!("budget met by archiving less recently active sessions ({idle})"),
                true,
            )
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_kit::decide::DAY_MS;
    use serde_json::json;

    const NOW: i64 = 1_000 * DAY_MS;

    fn cand(id: &str, idle_min: i64, bytes: u64, extra: serde_json::Value) -> Candidate {
        let mut m = json!({"view":"agent","session:last_activity_ms": NOW - idle_min * MINUTE_MS,
                           "session:line_count": 3});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        Candidate {
            id: id.into(),
            meta: Meta::parse(&m.to_string()).unwrap(),
            live_bytes: bytes,
        }
    }

    fn cfg(max_live: u64) -> Config {
        Config {
            max_live_bytes: max_live,
            min_idle_minutes: 30,
            ..Config::default()
        }
    }

    fn codes(sel: &[Selection]) -> Vec<&str> {
        sel.iter()
            .map(|s| match s {
                Selection::Archive { .. } => "archive",
                Selection::Skip { code, .. } => code.as_str(),
                Selection::Recover { .. } => "recover",
            })
            .collect()
    }

    #[test]
    fn under_budget_nothing_is_archived_however_idle() {
        let s = vec![
            cand("a", 100 * 24 * 60, 10, json!({})),
            cand("b", 60, 10, json!({})),
        ];
        let out = select_all(&s, NOW, &cfg(20));
        assert_eq!(codes(&out), ["within-budget", "within-budget"]);
        let Selection::Skip { reason, .. } = &out[0] else {
            panic!()
        };
        assert_eq!(reason, "live 20 B <= budget 20 B");
    }

    #[test]
    fn over_budget_the_least_recently_active_go_first_until_it_fits() {
        let s = vec![
            cand("newest", 40, 100, json!({})),
            cand("oldest", 5_000, 100, json!({})),
            cand("middle", 600, 100, json!({})),
        ];
        // 300 live, budget 150: the oldest two must go, the newest stays.
        let out = select_all(&s, NOW, &cfg(150));
        assert_eq!(codes(&out), ["within-budget", "archive", "archive"]);
        let Selection::Archive { reason } = &out[1] else {
            panic!()
        };
        assert_eq!(
            reason,
            "over budget: live 300 B > 150 B; least recently active (idle 3 d), frees 100 B"
        );
        // Budget 250: only the oldest.
        assert_eq!(
            codes(&select_all(&s, NOW, &cfg(250))),
            ["within-budget", "archive", "within-budget"]
        );
    }

    #[test]
    fn recent_pinned_and_busy_sessions_are_never_archived_even_far_over_budget() {
        let s = vec![
            cand("recent", 10, 1_000, json!({})),
            cand(
                "pinned",
                9_000,
                1_000,
                json!({"session:archive_pinned": true}),
            ),
            cand(
                "busy",
                9_000,
                1_000,
                json!({"session:archive_intent": {"op": "archive"}}),
            ),
            cand("ok", 100, 1, json!({})),
        ];
        let out = select_all(&s, NOW, &cfg(1));
        assert_eq!(codes(&out), ["recent", "pinned", "recover", "archive"]);
        let Selection::Skip { reason, .. } = &out[0] else {
            panic!()
        };
        assert_eq!(reason, "active 10 min ago < 30 min");
    }

    #[test]
    fn archived_and_non_agent_sessions_follow_the_kit_rules_and_only_agents_count() {
        let mut term = cand("term", 9_000, 10_000, json!({}));
        term.meta = Meta::parse(r#"{"view":"term"}"#).unwrap();
        let s = vec![
            term,
            // Archived, but written to since: its live bytes count toward the budget.
            cand("archived", 9_000, 50, json!({"session:archived_at": 5})),
            cand("empty", 9_000, 0, json!({})),
            cand("idle", 9_000, 50, json!({})),
        ];
        let out = select_all(&s, NOW, &cfg(60));
        assert_eq!(
            codes(&out),
            ["not-agent", "archived", "nothing-to-archive", "archive"]
        );
        // The terminal's 10 000 bytes do not count: 100 live, budget 100 → nothing to do.
        assert_eq!(
            codes(&select_all(&s, NOW, &cfg(100))),
            [
                "not-agent",
                "archived",
                "nothing-to-archive",
                "within-budget"
            ]
        );
    }

    #[test]
    fn equal_activity_is_broken_by_id_so_plans_are_stable() {
        let s = vec![cand("b", 500, 10, json!({})), cand("a", 500, 10, json!({}))];
        assert_eq!(
            codes(&select_all(&s, NOW, &cfg(15))),
            ["within-budget", "archive"]
        );
    }

    #[test]
    fn human_sizes_read_well() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 * 1024), "3.0 KiB");
        assert_eq!(human(3 << 20 | 1 << 19), "3.5 MiB");
        assert_eq!(human(2 << 30), "2.0 GiB");
    }
}
