//! Which archives to delete when the directory is over its cap.
//!
//! The seed deleted the oldest files whatever they were, leaving sessions whose meta pointed at a
//! deleted archive. Here archives whose data is safe elsewhere (backups of restored sessions) and
//! archives nobody refers to (orphans) go first, oldest first; a session's only copy goes only if
//! that was not enough, oldest first; a pinned session's archive, or one whose session is busy or
//! unreadable, never.

use archiver_kit::decide::prune_to_cap;
use archiver_kit::ops::{ArchiveInfo, PrunePick};

/// The ordered list of archives to delete until the total is at most `cap` (the kit's
/// [`prune_to_cap`] order, with nothing picked before).
pub fn prune_plan(archives: &[ArchiveInfo], cap: u64) -> Vec<PrunePick> {
    prune_to_cap(archives, cap, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_kit::host::Entry;
    use archiver_kit::ops::ArchiveClass;

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

    fn names(archives: &[ArchiveInfo], cap: u64) -> Vec<String> {
        prune_plan(archives, cap)
            .into_iter()
            .map(|p| archives[p.index].entry.name.clone())
            .collect()
    }

    #[test]
    fn nothing_is_pruned_under_the_cap() {
        let v = vec![a("x.jsonl.gz", 10, 1, ArchiveClass::OnlyCopy)];
        assert!(prune_plan(&v, 10).is_empty());
    }

    #[test]
    fn backups_and_orphans_go_oldest_first_before_any_only_copy() {
        let v = vec![
            a("old-only.jsonl.gz", 10, 1, ArchiveClass::OnlyCopy),
            a("new-backup.jsonl.gz", 10, 9, ArchiveClass::Backup),
            a("mid-orphan.gz", 10, 5, ArchiveClass::Orphan),
            a("new-only.jsonl.gz", 10, 8, ArchiveClass::OnlyCopy),
        ];
        assert_eq!(names(&v, 25), vec!["mid-orphan.gz", "new-backup.jsonl.gz"]);
        assert_eq!(
            names(&v, 15),
            vec!["mid-orphan.gz", "new-backup.jsonl.gz", "old-only.jsonl.gz"]
        );
        let p = prune_plan(&v, 15);
        assert_eq!(p[2].reason, "cap exceeded: oldest");
        assert!(p[1].reason.contains("backup of restored session"));
    }

    #[test]
    fn pinned_busy_and_unknown_archives_are_never_pruned_even_over_the_cap() {
        let v = vec![
            a("p.jsonl.gz", 100, 1, ArchiveClass::Pinned),
            a("b.jsonl.gz", 100, 1, ArchiveClass::InProgress),
            a("u.jsonl.gz", 100, 1, ArchiveClass::Unknown),
            a("o.jsonl.gz", 1, 2, ArchiveClass::OnlyCopy),
        ];
        assert_eq!(names(&v, 0), vec!["o.jsonl.gz"]);
    }
}
