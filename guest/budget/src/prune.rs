//! Which archives to delete: first every archive older than `max_archive_age_days`, then, if the
//! directory is still over `max_total_bytes`, the kit's cap order (backups and orphans before a
//! session's only copy, oldest first).
//!
//! Pruning an only copy is allowed by age too; the kit's prune step leaves a tombstone in the
//! session's meta first. Archives of pinned, busy or unreadable sessions are never picked.

use archiver_kit::decide::{prune_rank, prune_to_cap, DAY_MS};
use archiver_kit::decisions::{ArchiveInfo, PrunePick};

/// The ordered list of archives to delete at `now_ms`.
pub fn prune_plan(
    archives: &[ArchiveInfo],
    cap: u64,
    now_ms: i64,
    max_age_days: u64,
) -> Vec<PrunePick> {
    let max_age = (max_age_days as i64).saturating_mul(DAY_MS);
    let mut old: Vec<(u8, i64, &str, usize)> = archives
        .iter()
        .enumerate()
        .filter(|(_, a)| now_ms.saturating_sub(a.entry.modified_ms) >= max_age)
        .filter_map(|(i, a)| {
            prune_rank(a.class).map(|r| (r, a.entry.modified_ms, a.entry.name.as_str(), i))
        })
        .collect();
    old.sort();
    let mut picks: Vec<PrunePick> = old
        .into_iter()
        .map(|(_, modified, _, i)| PrunePick {
            index: i,
            reason: format!(
                "older than {max_age_days} d ({} d)",
                now_ms.saturating_sub(modified) / DAY_MS
            ),
        })
        .collect();
    let by_cap = prune_to_cap(archives, cap, &picks);
    picks.extend(by_cap);
    picks
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_kit::decisions::ArchiveClass;
    use archiver_kit::host::Entry;

    const NOW: i64 = 1_000 * DAY_MS;

    fn a(name: &str, size: u64, age_days: i64, class: ArchiveClass) -> ArchiveInfo {
        ArchiveInfo {
            entry: Entry {
                name: name.into(),
                size,
                modified_ms: NOW - age_days * DAY_MS,
            },
            class,
        }
    }

    fn plan(archives: &[ArchiveInfo], cap: u64) -> Vec<(String, String)> {
        prune_plan(archives, cap, NOW, 30)
            .into_iter()
            .map(|p| (archives[p.index].entry.name.clone(), p.reason))
            .collect()
    }

    #[test]
    fn archives_past_the_age_go_even_under_the_cap_backups_first() {
        let v = vec![
            a("old-only.jsonl.gz", 10, 40, ArchiveClass::OnlyCopy),
            a("old-backup.jsonl.gz", 10, 31, ArchiveClass::Backup),
            a("young.jsonl.gz", 10, 29, ArchiveClass::OnlyCopy),
        ];
        assert_eq!(
            plan(&v, u64::MAX),
            [
                (
                    "old-backup.jsonl.gz".into(),
                    "older than 30 d (31 d)".into()
                ),
                ("old-only.jsonl.gz".into(), "older than 30 d (40 d)".into()),
            ]
        );
    }

    #[test]
    fn the_cap_applies_after_the_age_rule_without_picking_twice() {
        let v = vec![
            a("old.jsonl.gz", 10, 40, ArchiveClass::OnlyCopy),
            a("mid.jsonl.gz", 10, 20, ArchiveClass::OnlyCopy),
            a("new.jsonl.gz", 10, 1, ArchiveClass::OnlyCopy),
        ];
        // After the age rule 20 remain; cap 10 takes the oldest of the rest.
        assert_eq!(
            plan(&v, 10),
            [
                ("old.jsonl.gz".into(), "older than 30 d (40 d)".into()),
                ("mid.jsonl.gz".into(), "cap exceeded: oldest".into()),
            ]
        );
        assert_eq!(plan(&v, 20).len(), 1);
    }

    #[test]
    fn pinned_busy_and_unknown_archives_survive_both_rules() {
        let v = vec![
            a("p.jsonl.gz", 100, 400, ArchiveClass::Pinned),
            a("b.jsonl.gz", 100, 400, ArchiveClass::InProgress),
            a("u.jsonl.gz", 100, 400, ArchiveClass::Unknown),
        ];
        assert!(plan(&v, 0).is_empty());
    }
}
