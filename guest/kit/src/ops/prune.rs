//! `prune`: classify the archives, ask the policy which to delete, delete them (tombstoning a
//! session whose only copy goes).

use super::{parse_meta, Error};
use crate::bindings::exports::session_archiver::policy::policy as api;
use crate::decide::cap_unreachable;
use crate::decisions::{ArchiveClass, ArchiveInfo, Decisions};
use crate::host::{archive_dir, dir_err, obj_err, objects, Entry, Host, Level, Object};
use crate::meta::{keys, Intent, Meta, Patch};

fn classify<H: Host>(h: &H, e: &Entry) -> ArchiveClass {
    classify_read(h, e).0
}

/// The archive's class and the session object it was judged from (when there is one): a write
/// acting on the judgement is conditional on that object's version.
fn classify_read<H: Host>(h: &H, e: &Entry) -> (ArchiveClass, Option<Object>) {
    let Some(id) = e.name.strip_suffix(".jsonl.gz").filter(|id| !id.is_empty()) else {
        return (ArchiveClass::Orphan, None);
    };
    let obj = match h.get_object(id) {
        Ok(o) => o,
        Err(objects::Error::NotFound(_)) | Err(objects::Error::Invalid(_)) => {
            return (ArchiveClass::Orphan, None)
        }
        Err(_) => return (ArchiveClass::Unknown, None),
    };
    let Ok(meta) = Meta::parse(&obj.meta) else {
        return (ArchiveClass::Unknown, Some(obj));
    };
    let class = if meta.has_intent() {
        ArchiveClass::InProgress
    // An unreadable pin counts as a pin: keeping an archive is never a loss.
    } else if meta.pinned() != Ok(false) {
        ArchiveClass::Pinned
    } else {
        match meta.archived_at() {
            Ok(Some(_)) => ArchiveClass::OnlyCopy,
            Ok(None) => ArchiveClass::Backup,
            Err(_) => ArchiveClass::Unknown,
        }
    };
    (class, Some(obj))
}

/// Lists the `.gz` files of the archive directory with their classes.
pub fn classify_archives<H: Host>(h: &H) -> Result<Vec<ArchiveInfo>, Error> {
    let entries = h.list_archives().map_err(|e| dir_err("list archives", e))?;
    Ok(entries
        .into_iter()
        .filter(|e| e.name.ends_with(".gz"))
        .map(|entry| ArchiveInfo {
            class: classify(h, &entry),
            entry,
        })
        .collect())
}

/// Deletes one picked archive after checking nothing changed since it was classified. Returns
/// whether a session was tombstoned, or `None` when it was left alone.
///
/// Every step is conditional, so another process acting on the same session (a restore and a
/// new archive, under a lock this prune may not share) never loses anything: the re-check, the
/// tombstone (only at the object version just judged), the removal (only of the very file
/// listed) and the undo or the intent's clearing (only while the meta is still ours).
fn prune_one<H: Host>(h: &H, info: &ArchiveInfo) -> Result<Option<bool>, Error> {
    let name = info.entry.name.as_str();
    match h.stat_archive(name) {
        Ok(Some(now))
            if now.size == info.entry.size && now.modified_ms == info.entry.modified_ms => {}
        Ok(_) => return Ok(None),
        Err(archive_dir::Error::Conflict(why)) => return Ok(left_alone(h, name, &why)),
        Err(e) => return Err(dir_err("stat archive", e)),
    }
    let (class, judged) = classify_read(h, &info.entry);
    if class != info.class {
        return Ok(None);
    }
    match (class, judged) {
        (ArchiveClass::Backup | ArchiveClass::Orphan, _) => match remove_classified(h, info)? {
            Removed::Yes => Ok(Some(false)),
            Removed::Changed => Ok(None),
        },
        (ArchiveClass::OnlyCopy, Some(judged)) => {
            // Meta never says "archived" without an archive: Tombstone first, then remove.
            let id = name.strip_suffix(".jsonl.gz").unwrap_or(name);
            let before = parse_meta(&judged)?;
            let now = h.now_ms();
            let intent = Intent::Prune {
                at: now,
                name: name.to_string(),
            };
            let tombstone = Patch::new()
                .clear_archived()
                .set(keys::PRUNED_AT, now)
                .intent(&intent);
            let tombstoned = match h.update_meta_if(id, &tombstone.to_json(), judged.version) {
                Ok(o) => o,
                Err(objects::Error::Conflict(why)) => return Ok(left_alone(h, name, &why)),
                Err(e) => return Err(obj_err(e)),
            };
            if let Removed::Changed = remove_classified(h, info)? {
                // Put back what the tombstone replaced: the archive is another one now.
                let mut undo = Patch::new().clear_intent();
                for k in keys::ARCHIVED_KEYS.into_iter().chain([keys::PRUNED_AT]) {
                    undo = undo.set_opt(k, before.get(k).cloned());
                }
                settle(h, id, tombstoned, &intent, undo)?;
                h.log(
                    Level::Info,
                    &format!("session {id}: {name} changed since it was classified; not pruned"),
                );
                return Ok(None);
            }
            settle(h, id, tombstoned, &intent, Patch::new().clear_intent())?;
            h.log(
                Level::Info,
                &format!("session {id}: pruned its only archive {name}; tombstone recorded"),
            );
            Ok(Some(true))
        }
        _ => Ok(None),
    }
}

/// Logs why a picked archive was left alone (its session busy or changed); the next prune
/// judges it again.
fn left_alone<H: Host>(h: &H, name: &str, why: &str) -> Option<bool> {
    h.log(
        Level::Info,
        &format!("{name} left for the next prune: {why}"),
    );
    None
}

/// Writes `patch` while session `id`'s meta still carries our prune `intent`: at the version we
/// last wrote, or, when something else (the app) wrote since, at the version re-read. Meta whose
/// intent is no longer ours belongs to another operation and is left as it is.
fn settle<H: Host>(
    h: &H,
    id: &str,
    mut last: Object,
    intent: &Intent,
    patch: Patch,
) -> Result<(), Error> {
    const ATTEMPTS: usize = 4;
    for _ in 0..ATTEMPTS {
        match h.update_meta_if(id, &patch.to_json(), last.version) {
            Ok(_) => return Ok(()),
            Err(objects::Error::Conflict(_)) => {
                last = h.get_object(id).map_err(obj_err)?;
                if parse_meta(&last)?.intent().ok().flatten().as_ref() != Some(intent) {
                    h.log(
                        Level::Warn,
                        &format!("session {id}: meta changed by another operation during prune; left as it is"),
                    );
                    return Ok(());
                }
            }
            Err(e) => return Err(obj_err(e)),
        }
    }
    Err(Error::Conflict(format!(
        "session {id}: meta kept changing while prune settled it; its prune intent stays for recovery"
    )))
}

/// What a conditional removal did.
enum Removed {
    Yes,
    /// The file is no longer the one classified (or is gone): left alone.
    Changed,
}

/// Removes the archive only if it is still the file `info` classified (size and modification
/// time, checked by the host in the same step as the removal).
fn remove_classified<H: Host>(h: &H, info: &ArchiveInfo) -> Result<Removed, Error> {
    match h.remove_archive_if_unchanged(&info.entry.name, &info.entry) {
        Ok(()) => Ok(Removed::Yes),
        Err(archive_dir::Error::Conflict(_)) => Ok(Removed::Changed),
        Err(archive_dir::Error::NotFound(_)) => Ok(Removed::Yes),
        Err(e) => Err(dir_err("remove archive", e)),
    }
}

/// Prunes archives down to the cap: see the WIT `policy.prune`.
pub fn prune<H: Host, D: Decisions>(h: &H, d: &D) -> Result<api::PruneReport, Error> {
    let archives = classify_archives(h)?;
    if let Some(why) = cap_unreachable(&archives, d.cap()) {
        h.log(
            Level::Warn,
            &format!("{why}; no session's only copy is pruned to chase it"),
        );
    }
    let picks = d.prune_plan(&archives, d.cap(), h.now_ms());
    let mut report = api::PruneReport {
        pruned: 0,
        tombstoned: 0,
        bytes_freed: 0,
        failed: Vec::new(),
    };
    for pick in picks {
        let Some(info) = archives.get(pick.index) else {
            continue;
        };
        match prune_one(h, info) {
            Ok(Some(tombstoned)) => {
                report.pruned += 1;
                report.tombstoned += u32::from(tombstoned);
                report.bytes_freed += info.entry.size;
            }
            Ok(None) => {}
            Err(error) => report.failed.push(api::Failure {
                target: info.entry.name.clone(),
                error,
            }),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::super::test_fixtures::*;

    use crate::meta::keys;
    use crate::ops::{self, Error, OUTPUT_FILE};

    #[test]
    fn pruning_an_only_copy_leaves_a_tombstone_that_restore_reports() {
        let h = host_with_session(b"x\n");
        ops::archive(&h, ID, 6).unwrap();
        h.state.borrow_mut().now = NOW + 5;
        let rep = ops::prune(&h, &Simple { cap: 0 }).unwrap();
        assert_eq!((rep.pruned, rep.tombstoned), (1, 1));
        assert!(h.archive("s1.jsonl.gz").is_none());
        assert_eq!(meta_i64(&h, keys::PRUNED_AT), Some(NOW + 5));
        assert!(meta_i64(&h, keys::ARCHIVED_AT).is_none());
        assert_eq!(
            ops::restore(&h, ID, u64::MAX).unwrap_err(),
            Error::Pruned(NOW + 5)
        );
    }

    #[test]
    fn backups_of_restored_sessions_are_pruned_before_only_copies() {
        let h = host_with_session(b"restored\n");
        ops::archive(&h, ID, 6).unwrap();
        ops::restore(&h, ID, u64::MAX).unwrap();
        h.add_object("s2", json!({"view":"agent"}));
        h.put_file("s2", OUTPUT_FILE, b"only copy\n");
        ops::archive(&h, "s2", 6).unwrap();
        // Make the only-copy the older one: order must still prefer the backup.
        h.state
            .borrow_mut()
            .archives
            .get_mut("s2.jsonl.gz")
            .unwrap()
            .1 = 0;
        let one = h.archive("s2.jsonl.gz").unwrap().len() as u64;
        let rep = ops::prune(&h, &Simple { cap: one }).unwrap();
        assert_eq!((rep.pruned, rep.tombstoned), (1, 0));
        assert!(h.archive("s1.jsonl.gz").is_none() && h.archive("s2.jsonl.gz").is_some());
    }
}
