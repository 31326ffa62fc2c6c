//! Decision helpers every policy needs, so a policy writes only the rule that makes it different.
//!
//! - [`eligible`]: the seed's skip rules (agent sessions only, not archived, some activity and some
//!   lines) plus the safety rules of this project (pins, interrupted operations, meta that cannot
//!   be trusted). A policy then decides *whether* and *which* eligible sessions to archive.
//! - [`prune_to_cap`]: the prune order that never loses data first: backups of restored sessions
//!   and orphans, oldest first; a session's only copy only if that was not enough; pinned, busy
//!   or unreadable sessions' archives never.
//! - [`positive`] and [`level`]: config field checks whose messages name the field.
//!
//! All plain Rust, tested natively.

use serde_json::Value;

use crate::decisions::{skip_code, ArchiveClass, ArchiveInfo, PrunePick, Selection};
use crate::meta::{keys, Meta};

/// One minute in ms.
pub const MINUTE_MS: i64 = 60_000;
/// One hour in ms.
pub const HOUR_MS: i64 = 3_600_000;
/// One day in ms.
pub const DAY_MS: i64 = 86_400_000;

/// A skip decision.
pub fn skip(code: &str, reason: impl Into<String>, candidate: bool) -> Selection {
    Selection::Skip {
        code: code.into(),
        reason: reason.into(),
        candidate,
    }
}

/// What [`eligible`] learnt about a session a policy may archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eligible {
    /// `session:last_activity_ms`, > 0.
    pub last_activity_ms: i64,
    /// `session:line_count`, > 0.
    pub line_count: u64,
}

/// Whether a session may be archived at all, whatever the policy's rule; `Err` holds the
/// decision for one that may not (a skip with its reason code, or `recover`).
///
/// Codes: `not-agent`, `pinned`, `archived`, `invalid-meta`, `no-activity`, `no-lines`; an
/// intent in meta gives [`Selection::Recover`].
pub fn eligible(meta: &Meta) -> Result<Eligible, Selection> {
    if meta.view() != "agent" {
        return Err(skip(skip_code::NOT_AGENT, "not an agent session", false));
    }
    if meta.has_intent() {
        return Err(Selection::Recover {
            reason: "an interrupted operation is recorded in meta".into(),
        });
    }
    match meta.pinned() {
        Ok(true) => return Err(skip(skip_code::PINNED, "pinned", true)),
        Ok(false) => {}
        Err(e) => return Err(skip(skip_code::INVALID_META, e.to_string(), true)),
    }
    // Strict, unlike the seed: misreading this as "not archived" could overwrite an only copy.
    match meta.archived_at() {
        Ok(Some(_)) => return Err(skip(skip_code::ARCHIVED, "already archived", true)),
        Ok(None) => {}
        Err(e) => return Err(skip(skip_code::INVALID_META, e.to_string(), true)),
    }
    // Forgiving like the seed: a wrong type is as good as missing, and both mean skip; the
    // reason then names the key and what it holds, so people can fix it.
    let last_activity_ms = match meta.i64(keys::LAST_ACTIVITY_MS) {
        Ok(Some(t)) if t > 0 => t,
        Ok(_) => {
            return Err(skip(
                skip_code::NO_ACTIVITY,
                "no last activity recorded",
                true,
            ))
        }
        Err(e) => {
            return Err(skip(
                skip_code::NO_ACTIVITY,
                format!("no last activity: {e}"),
                true,
            ))
        }
    };
    let line_count = match meta.u64(keys::LINE_COUNT) {
        Ok(Some(n)) if n > 0 => n,
        Ok(_) => return Err(skip(skip_code::NO_LINES, "no lines", true)),
        Err(e) => return Err(skip(skip_code::NO_LINES, format!("no lines: {e}"), true)),
    };
    Ok(Eligible {
        last_activity_ms,
        line_count,
    })
}

/// Whether an archive of this class may ever be pruned, and in which round (lower first):
/// data that is safe elsewhere before a session's only copy.
pub fn prune_rank(class: ArchiveClass) -> Option<u8> {
    match class {
        ArchiveClass::Backup | ArchiveClass::Orphan => Some(0),
        ArchiveClass::OnlyCopy => Some(1),
        ArchiveClass::Pinned | ArchiveClass::InProgress | ArchiveClass::Unknown => None,
    }
}

/// The reason a cap-driven prune gives for one archive.
fn cap_reason(class: ArchiveClass) -> &'static str {
    match class {
        ArchiveClass::Backup => "cap exceeded: backup of restored session",
        ArchiveClass::Orphan => "cap exceeded: orphan (no session refers to it)",
        _ => "cap exceeded: oldest",
    }
}

/// Whether an archive's class is only known for now (its session is busy or could not be
/// read): it is neither pruned nor counted against the cap until it can be judged.
fn undecided(class: ArchiveClass) -> bool {
    matches!(class, ArchiveClass::InProgress | ArchiveClass::Unknown)
}

/// Bytes held by pinned archives (never pruned), leaving out the archives already `picked`.
pub fn pinned_bytes(archives: &[ArchiveInfo], picked: &[PrunePick]) -> u64 {
    archives
        .iter()
        .enumerate()
        .filter(|(i, a)| a.class == ArchiveClass::Pinned && !picked.iter().any(|p| p.index == *i))
        .map(|(_, a)| a.entry.size)
        .sum()
}

/// When pinned archives alone hold more than `cap`, no prune can reach the cap: the message
/// people see ("cap unreachable: pinned archives hold X, cap Y"); `None` when it is reachable.
pub fn cap_unreachable(archives: &[ArchiveInfo], cap: u64) -> Option<String> {
    let pinned = pinned_bytes(archives, &[]);
    (pinned > cap)
        .then(|| format!("cap unreachable: pinned archives hold {pinned} bytes, cap {cap} bytes"))
}

/// The archives to delete, in order, until the total is at most `cap`, after the archives
/// already `picked` (by another rule, e.g. age) are gone. Returns only the new picks.
///
/// Archives of busy or unreadable sessions do not count toward the total: counting them would
/// make a passing failure (one `objects.get` erroring) prune extra only copies to make room for
/// an archive that might itself have been the first to go. Pinned archives do count: a pin is
/// lasting, and the cap is a promise about the directory's size.
///
/// A session's only copy is pruned only when that can bring the total to the cap: when pinned
/// archives alone hold more than the cap, chasing it would destroy every unpinned session (the
/// fresh archives of this very sweep included) and still miss it, so no only copy goes; backups
/// and orphans, whose loss destroys no session's only copy, still do.
pub fn prune_to_cap(archives: &[ArchiveInfo], cap: u64, picked: &[PrunePick]) -> Vec<PrunePick> {
    let gone = |i: usize| picked.iter().any(|p| p.index == i);
    let reachable = pinned_bytes(archives, picked) <= cap;
    let mut total: u64 = archives
        .iter()
        .enumerate()
        .filter(|(i, a)| !gone(*i) && !undecided(a.class))
        .map(|(_, a)| a.entry.size)
        .sum();
    if total <= cap {
        return Vec::new();
    }
    let mut order: Vec<(u8, i64, &str, usize)> = archives
        .iter()
        .enumerate()
        .filter(|(i, _)| !gone(*i))
        .filter(|(_, a)| reachable || a.class != ArchiveClass::OnlyCopy)
        .filter_map(|(i, a)| {
            prune_rank(a.class).map(|r| (r, a.entry.modified_ms, a.entry.name.as_str(), i))
        })
        .collect();
    order.sort();
    let mut picks = Vec::new();
    for (_, _, _, i) in order {
        if total <= cap {
            break;
        }
        let a = &archives[i];
        total = total.saturating_sub(a.entry.size);
        picks.push(PrunePick {
            index: i,
            reason: cap_reason(a.class).into(),
        });
    }
    picks
}

/// A rejected configuration; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A positive integer config field: `default` when absent or `null`, an error naming `field`
/// for zero, a negative, a fraction or another type.
pub fn positive(field: &str, v: Option<Value>, default: u64) -> Result<u64, ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Ok(n),
            _ => Err(ConfigError(format!(
                "`{field}` must be a positive integer, got {v}"
            ))),
        },
    }
}

/// `member_bytes`: a positive integer of at most [`MAX_MEMBER_BYTES`](crate::decisions::MAX_MEMBER_BYTES).
pub fn member_bytes(field: &str, v: Option<Value>, default: u64) -> Result<u64, ConfigError> {
    let n = positive(field, v, default)?;
    let max = crate::decisions::MAX_MEMBER_BYTES;
    if n > max {
        return Err(ConfigError(format!(
            "`{field}` must be at most {max} bytes, got {n}"
        )));
    }
    Ok(n)
}

/// A positive integer field that is later multiplied by `unit_ms`: also refused when the
/// product would not fit in i64 ms.
pub fn positive_duration(
    field: &str,
    v: Option<Value>,
    default: u64,
    unit_ms: i64,
) -> Result<u64, ConfigError> {
    let n = positive(field, v, default)?;
    if n > (i64::MAX / unit_ms) as u64 {
        return Err(ConfigError(format!("`{field}` is too large: {n}")));
    }
    Ok(n)
}

/// A gzip level field, 0..=9.
pub fn level(field: &str, v: Option<Value>, default: u8) -> Result<u8, ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n <= 9 => Ok(n as u8),
            _ => Err(ConfigError(format!(
                "`{field}` must be an integer from 0 to 9, got {v}"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Entry;
    use serde_json::json;

    fn meta(v: Value) -> Meta {
        Meta::parse(&v.to_string()).unwrap()
    }

    fn code(r: Result<Eligible, Selection>) -> String {
        match r {
            Ok(_) => "eligible".into(),
            Err(Selection::Skip { code, .. }) => code,
            Err(Selection::Recover { .. }) => "recover".into(),
            Err(Selection::Archive { .. }) => "archive?".into(),
        }
    }

    #[test]
    fn an_agent_session_with_activity_and_lines_is_eligible() {
        let e = eligible(&meta(
            json!({"view":"agent","session:last_activity_ms":5,"session:line_count":2}),
        ))
        .unwrap();
        assert_eq!(
            e,
            Eligible {
                last_activity_ms: 5,
                line_count: 2
            }
        );
    }

    #[test]
    fn every_rule_that_keeps_a_session_out_has_its_code() {
        let base = json!({"view":"agent","session:last_activity_ms":5,"session:line_count":2});
        let with = |k: &str, v: Value| {
            let mut m = base.clone();
            m[k] = v;
            meta(m)
        };
        assert_eq!(code(eligible(&meta(json!({"view":"term"})))), "not-agent");
        assert_eq!(
            code(eligible(&with("session:archive_intent", json!({"op":"x"})))),
            "recover"
        );
        assert_eq!(
            code(eligible(&with("session:archive_pinned", json!(true)))),
            "pinned"
        );
        assert_eq!(
            code(eligible(&with("session:archive_pinned", json!("y")))),
            "invalid-meta"
        );
        assert_eq!(
            code(eligible(&with("session:archived_at", json!(9)))),
            "archived"
        );
        assert_eq!(
            code(eligible(&with("session:archived_at", json!("x")))),
            "invalid-meta"
        );
        assert_eq!(
            code(eligible(&with("session:last_activity_ms", json!(0)))),
            "no-activity"
        );
        assert_eq!(
            code(eligible(&with("session:line_count", json!(0)))),
            "no-lines"
        );
    }

    #[test]
    fn a_wrong_typed_activity_or_line_count_is_skipped_with_a_reason_naming_the_key() {
        let base = json!({"view":"agent","session:last_activity_ms":5,"session:line_count":2});
        for (key, value, code) in [
            (
                "session:last_activity_ms",
                json!("yesterday"),
                "no-activity",
            ),
            ("session:line_count", json!(-3), "no-lines"),
        ] {
            let mut m = base.clone();
            m[key] = value;
            let Err(Selection::Skip {
                code: c, reason, ..
            }) = eligible(&meta(m))
            else {
                panic!("{key} accepted")
            };
            assert_eq!(c, code);
            assert!(reason.contains(key), "{reason}");
        }
    }

    fn a(name: &str, size: u64, t: i64, class: ArchiveClass) -> ArchiveInfo {
        ArchiveInfo {
            entry: Entry {
                name: name.into(),
                size,
                modified_ms: t,
            },
            class,
        }
    }

    #[test]
    fn prune_to_cap_counts_earlier_picks_as_gone_and_never_repeats_them() {
        let v = vec![
            a("a.jsonl.gz", 10, 1, ArchiveClass::OnlyCopy),
            a("b.jsonl.gz", 10, 2, ArchiveClass::OnlyCopy),
            a("c.jsonl.gz", 10, 3, ArchiveClass::Backup),
        ];
        let earlier = vec![PrunePick {
            index: 0,
            reason: "old".into(),
        }];
        // 20 left after the earlier pick; cap 10 needs one more: the backup first.
        let picks = prune_to_cap(&v, 10, &earlier);
        assert_eq!(picks.len(), 1);
        assert_eq!(picks[0].index, 2);
        assert!(prune_to_cap(&v, 20, &earlier).is_empty());
    }

    #[test]
    fn an_archive_that_cannot_be_judged_now_does_not_make_the_cap_take_more_only_copies() {
        // Regression (fault sweep): an `objects.get` failing for an orphan made it `Unknown`;
        // it stayed in the total, so the cap pruned a session's only copy in its place.
        let v = vec![
            a("ghost.jsonl.gz", 10, 1, ArchiveClass::Unknown),
            a("busy.jsonl.gz", 10, 1, ArchiveClass::InProgress),
            a("only.jsonl.gz", 10, 2, ArchiveClass::OnlyCopy),
        ];
        assert!(prune_to_cap(&v, 10, &[]).is_empty());
        // A pin is lasting: it counts, and the only copy goes.
        let v = vec![
            a("pinned.jsonl.gz", 10, 1, ArchiveClass::Pinned),
            a("only.jsonl.gz", 10, 2, ArchiveClass::OnlyCopy),
        ];
        assert_eq!(prune_to_cap(&v, 10, &[]).len(), 1);
    }

    #[test]
    fn pinned_archives_over_the_cap_keep_every_only_copy_but_not_backups_or_orphans() {
        let v = vec![
            a("pinned.jsonl.gz", 20, 1, ArchiveClass::Pinned),
            a("old-only.jsonl.gz", 5, 2, ArchiveClass::OnlyCopy),
            a("fresh-only.jsonl.gz", 5, 9, ArchiveClass::OnlyCopy),
            a("backup.jsonl.gz", 3, 3, ArchiveClass::Backup),
            a("orphan.jsonl.gz", 2, 4, ArchiveClass::Orphan),
        ];
        let picks: Vec<usize> = prune_to_cap(&v, 10, &[]).iter().map(|p| p.index).collect();
        assert_eq!(picks, [3, 4], "only the backup and the orphan");
        assert_eq!(
            cap_unreachable(&v, 10).as_deref(),
            Some("cap unreachable: pinned archives hold 20 bytes, cap 10 bytes")
        );
        // Exactly at the cap it is reachable: only copies go, oldest first, until it is met.
        let picks: Vec<usize> = prune_to_cap(&v, 20, &[]).iter().map(|p| p.index).collect();
        assert_eq!(picks, [3, 4, 1, 2]);
        assert_eq!(cap_unreachable(&v, 20), None);
        // A pinned archive an earlier rule already picked no longer holds the cap out of reach.
        let earlier = vec![PrunePick {
            index: 0,
            reason: "old".into(),
        }];
        let picks: Vec<usize> = prune_to_cap(&v, 10, &earlier)
            .iter()
            .map(|p| p.index)
            .collect();
        assert_eq!(picks, [3, 4]);
    }

    #[test]
    fn config_checks_name_the_field() {
        assert_eq!(positive("x", None, 3), Ok(3));
        assert_eq!(positive("x", Some(json!(null)), 3), Ok(3));
        assert_eq!(positive("x", Some(json!(4)), 3), Ok(4));
        for bad in [json!(0), json!(-1), json!(1.5), json!("2")] {
            assert!(positive("the_field", Some(bad), 3)
                .unwrap_err()
                .0
                .contains("the_field"));
        }
        assert!(
            positive_duration("days", Some(json!(u64::MAX / 2)), 1, DAY_MS)
                .unwrap_err()
                .0
                .contains("days")
        );
        assert_eq!(level("level", Some(json!(9)), 6), Ok(9));
        assert!(level("level", Some(json!(10)), 6)
            .unwrap_err()
            .0
            .contains("level"));
    }
}
