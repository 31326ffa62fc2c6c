//! `recover`: finish or roll back the operation an intent in meta records.

use super::archive::remove_ours;
use super::stream::{copy_file_range, gunzip_archive, verify_archive};
use super::{
    archived_source, clear_intent, delete_if_present, file_stat, first_held, parse_meta,
    remove_if_present, update, Error, OUTPUT_FILE, SCRATCH,
};
use crate::bindings::exports::session_archiver::policy::policy as api;
use crate::host::{file_err, files, obj_err, Host, Level, Object};
use crate::meta::{keys, Intent, Meta, Patch, StatRecord};

/// How one recovery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovered {
    Finished,
    RolledBack,
}

/// Finishes or undoes the operation recorded in one session's intent. Idempotent: each step
/// checks the state it finds.
fn recover_one<H: Host>(h: &H, obj: &Object) -> Result<Recovered, Error> {
    let id = obj.id.as_str();
    let meta = parse_meta(obj)?;
    let Some(intent) = meta.intent()? else {
        return Ok(Recovered::Finished);
    };
    match &intent {
        Intent::Archive {
            name,
            stat,
            restored_at,
            pruned_at,
            ..
        } => {
            if meta.archived_at()?.is_some() {
                // Recorded only after verification; check it still holds before deleting anything.
                let (aname, raw_len, crc) = archived_source(h, id, &meta)?;
                verify_archive(h, &aname, raw_len, crc)?;
                match h.delete_file_if_unchanged(id, OUTPUT_FILE, &file_stat(stat)) {
                    Ok(()) | Err(files::Error::NotFound(_)) => {
                        clear_intent(h, id)?;
                        Ok(Recovered::Finished)
                    }
                    Err(files::Error::Conflict(_))
                        if !still_holds_archived(h, id, stat, raw_len, crc)? =>
                    {
                        // The delete happened and the app has made a new `output` since: the
                        // archive is the only copy of the archived bytes, so the archive stands
                        // and the new file is output written after archiving.
                        h.log(
                            Level::Info,
                            &format!(
                                "session {id}: output was re-created after the archive's delete; \
                                 finishing the archive and keeping the new output after it"
                            ),
                        );
                        clear_intent(h, id)?;
                        Ok(Recovered::Finished)
                    }
                    Err(files::Error::Conflict(_)) => {
                        // The file we read is still there (appended to): the delete never
                        // happened, and the live file holds every byte; undo the archive.
                        let undo = Patch::new()
                            .clear_archived()
                            .set_opt(keys::RESTORED_AT, restored_at.clone())
                            .set_opt(keys::PRUNED_AT, pruned_at.clone());
                        update(h, id, undo)?;
                        remove_ours(h, name, &intent)?;
                        clear_intent(h, id)?;
                        Ok(Recovered::RolledBack)
                    }
                    Err(e) => Err(file_err("delete live output", e)),
                }
            } else {
                // Never recorded: the live file is untouched; drop what we may have written.
                remove_ours(h, name, &intent)?;
                clear_intent(h, id)?;
                Ok(Recovered::RolledBack)
            }
        }
        Intent::Restore {
            at,
            name,
            archived_bytes,
            crc32,
        } => {
            delete_if_present(h, id, SCRATCH)?;
            if meta.archived_at()?.is_none() {
                clear_intent(h, id)?;
                return Ok(Recovered::Finished);
            }
            let want = match crc32 {
                Some(c) => *c,
                None => gunzip_archive(h, name, *archived_bytes, &mut |_| Ok(()))?.crc32,
            };
            let live = h
                .stat_file(id, OUTPUT_FILE)
                .map_err(|e| file_err("stat live output", e))?;
            let renamed = match live {
                Some(s) if s.size >= *archived_bytes && first_held(&s) == 0 => {
                    let mut hasher = crc32fast::Hasher::new();
                    copy_file_range(h, id, OUTPUT_FILE, 0, *archived_bytes, &mut |c| {
                        hasher.update(c);
                        Ok(())
                    })?;
                    hasher.finalize() == want
                }
                _ => false,
            };
            if renamed {
                update(
                    h,
                    id,
                    Patch::new()
                        .clear_archived()
                        .set(keys::RESTORED_AT, *at)
                        .clear_intent(),
                )?;
                Ok(Recovered::Finished)
            } else {
                clear_intent(h, id)?;
                Ok(Recovered::RolledBack)
            }
        }
        Intent::Prune { name, .. } => {
            remove_if_present(h, name)?;
            clear_intent(h, id)?;
            Ok(Recovered::Finished)
        }
    }
}

/// Whether the live `output` is still the file an interrupted archive read: same creation time,
/// at least as long, and still holding the archived bytes (their CRC-32) where they were. A file
/// that cannot show them (re-created, truncated, rewritten, or wrapped past them) is not.
fn still_holds_archived<H: Host>(
    h: &H,
    id: &str,
    read: &StatRecord,
    raw_len: u64,
    crc: Option<u32>,
) -> Result<bool, Error> {
    let Some(now) = h
        .stat_file(id, OUTPUT_FILE)
        .map_err(|e| file_err("stat live output", e))?
    else {
        return Ok(false);
    };
    let Some(from) = read.size.checked_sub(raw_len) else {
        return Ok(false);
    };
    if now.created_ms != read.created_ms || now.size < read.size || first_held(&now) > from {
        return Ok(false);
    }
    let want = match crc {
        Some(c) => c,
        None => {
            let name = super::archive_name(id);
            gunzip_archive(h, &name, raw_len, &mut |_| Ok(()))?.crc32
        }
    };
    let mut hasher = crc32fast::Hasher::new();
    copy_file_range(h, id, OUTPUT_FILE, from, read.size, &mut |c| {
        hasher.update(c);
        Ok(())
    })?;
    Ok(hasher.finalize() == want)
}

/// Recovers the interrupted operation of session `id`, if it has one: see the WIT
/// `policy.recover`. The host finds the sessions that need it.
pub fn recover<H: Host>(h: &H, id: &str) -> Result<api::RecoverReport, Error> {
    let obj = h.get_object(id).map_err(obj_err)?;
    let pending = Meta::parse(&obj.meta)
        .map(|m| m.has_intent())
        .unwrap_or(false);
    let mut report = api::RecoverReport {
        examined: 0,
        finished: 0,
        rolled_back: 0,
        failed: Vec::new(),
    };
    if pending {
        report.examined += 1;
        match recover_one(h, &obj) {
            Ok(Recovered::Finished) => report.finished += 1,
            Ok(Recovered::RolledBack) => report.rolled_back += 1,
            Err(error) => {
                h.log(
                    Level::Warn,
                    &format!("session {}: recovery failed: {error:?}", obj.id),
                );
                report.failed.push(api::Failure {
                    target: obj.id.clone(),
                    error,
                });
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use serde_json::json;

    use super::super::test_fixtures::*;
    use crate::decide::DAY_MS;

    use crate::fake::FakeHost;
    use crate::gzip;
    use crate::meta::keys;
    use crate::ops::{self, Error, OUTPUT_FILE, SCRATCH};

    #[test]
    fn an_archive_crashed_at_any_step_is_recovered_idempotently() {
        let data = body(2000);
        let steps = [
            "objects.update-meta",
            "archive-dir.create",
            "files.read",
            "commit",
            "archive-dir.open",
            "files.delete-if-unchanged",
        ];
        for step in steps {
            for after in [false, true] {
                // The nth call of that name: e.g. the intent, archived and clear-intent patches.
                for nth in 0..3 {
                    let h = host_with_session(&data);
                    h.crash_at(step, nth, after);
                    let crashed =
                        catch_unwind(AssertUnwindSafe(|| ops::archive(&h, ID, 6))).is_err();
                    h.state.borrow_mut().crash = None;
                    let has_after_hook =
                        ["objects.update-meta", "commit", "files.delete-if-unchanged"]
                            .contains(&step);
                    if nth == 0 && (!after || has_after_hook) {
                        assert!(crashed, "the crash at {step} (after={after}) fired");
                    }
                    ops::recover(&h, ID).unwrap();
                    check_archive_consistent(&h, &data);
                    let again = ops::recover(&h, ID).unwrap();
                    assert_eq!(again.examined, 0, "second recover is a no-op ({step}, after={after}, nth={nth}, crashed={crashed})");
                }
            }
        }
    }

    #[test]
    fn a_restore_crashed_at_any_step_is_recovered_idempotently() {
        let steps = [
            "objects.update-meta",
            "files.create",
            "files.append",
            "files.rename-if-unchanged",
        ];
        for step in steps {
            for after in [false, true] {
                for nth in 0..2 {
                    let h = host_with_session(b"old\n");
                    ops::archive(&h, ID, 6).unwrap();
                    h.put_file(ID, OUTPUT_FILE, b"new\n");
                    h.crash_at(step, nth, after);
                    let _ = catch_unwind(AssertUnwindSafe(|| ops::restore(&h, ID, u64::MAX)));
                    h.state.borrow_mut().crash = None;
                    ops::recover(&h, ID).unwrap();
                    let m = h.meta(ID);
                    assert!(m.get(keys::INTENT).is_none());
                    assert!(
                        h.file(ID, SCRATCH).is_none(),
                        "scratch removed ({step}, {after}, {nth})"
                    );
                    if m.get(keys::ARCHIVED_AT).is_some() {
                        assert_eq!(
                            gzip::decompress(&h.archive("s1.jsonl.gz").unwrap(), 100).unwrap(),
                            b"old\n"
                        );
                        assert_eq!(
                            h.file(ID, OUTPUT_FILE).unwrap(),
                            b"new\n",
                            "({step}, {after}, {nth})"
                        );
                    } else {
                        assert_eq!(
                            h.file(ID, OUTPUT_FILE).unwrap(),
                            b"old\nnew\n",
                            "({step}, {after}, {nth})"
                        );
                    }
                    assert_eq!(ops::recover(&h, ID).unwrap().examined, 0);
                }
            }
        }
    }

    #[test]
    fn a_prune_interrupted_after_the_tombstone_is_finished_by_recover() {
        let h = host_with_session(b"x\n");
        ops::archive(&h, ID, 6).unwrap();
        h.crash_at("objects.update-meta-if", 0, true);
        assert!(catch_unwind(AssertUnwindSafe(|| ops::prune(&h, &Simple { cap: 0 }))).is_err());
        assert!(
            h.archive("s1.jsonl.gz").is_some(),
            "crashed before the remove"
        );
        assert!(
            meta_i64(&h, keys::ARCHIVED_AT).is_none(),
            "meta never says archived without an archive"
        );
        let rep = ops::recover(&h, ID).unwrap();
        assert_eq!((rep.examined, rep.finished), (1, 1));
        assert!(h.archive("s1.jsonl.gz").is_none());
        assert!(h.meta(ID).get(keys::INTENT).is_none());
        assert!(matches!(
            ops::restore(&h, ID, u64::MAX),
            Err(Error::Pruned(_))
        ));
    }

    #[test]
    fn busy_sessions_are_refused_until_recovered() {
        let h = host_with_session(b"x\n");
        h.state.borrow_mut().objects.get_mut(ID).unwrap().0.insert(
            keys::INTENT.into(),
            json!({"op":"prune","at":1,"name":"s1.jsonl.gz"}),
        );
        assert!(matches!(ops::archive(&h, ID, 6), Err(Error::Busy(_))));
        assert!(matches!(
            ops::restore(&h, ID, u64::MAX),
            Err(Error::Busy(_))
        ));
        assert!(matches!(ops::export(&h, ID, u64::MAX), Err(Error::Busy(_))));
        assert_eq!(ops::recover(&h, ID).unwrap().finished, 1);
        assert_eq!(ops::archive(&h, ID, 6).unwrap().raw_bytes, 2);
    }

    #[test]
    fn recovery_finishes_an_archive_when_output_was_re_created_after_the_delete() {
        let h = FakeHost::new(NOW);
        h.add_object(
            ID,
            json!({"view":"agent","session:last_activity_ms": NOW - 10 * DAY_MS, "session:line_count": 3}),
        );
        h.put_file(ID, OUTPUT_FILE, b"a\nb\nc\n");
        // Crash right after the delete committed; the app then makes a new output.
        h.crash_at("files.delete-if-unchanged", 0, true);
        assert!(catch_unwind(AssertUnwindSafe(|| ops::archive(&h, ID, 6))).is_err());
        h.state.borrow_mut().crash = None;
        assert!(h.file(ID, OUTPUT_FILE).is_none());
        h.put_file(ID, OUTPUT_FILE, b"new\n");

        let rep = ops::recover(&h, ID).unwrap();
        assert_eq!((rep.examined, rep.finished, rep.rolled_back), (1, 1, 0));
        assert!(meta_i64(&h, keys::ARCHIVED_AT).is_some());
        assert!(h.archive("s1.jsonl.gz").is_some());
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), b"new\n");
        ops::restore(&h, ID, u64::MAX).unwrap();
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), b"a\nb\nc\nnew\n");
    }

    #[test]
    fn recovery_rolling_back_an_archive_puts_back_restored_at_and_pruned_at() {
        // A crash after the archived patch, then an append: recovery must roll back to the meta the
        // session had, not merely clear the archived keys.
        let h = FakeHost::new(NOW);
        h.add_object(
            ID,
            json!({"view":"agent","session:last_activity_ms": NOW - 10 * DAY_MS, "session:line_count": 3,
                   "session:restored_at": 123, "session:archive_pruned_at": 45}),
        );
        h.put_file(ID, OUTPUT_FILE, b"a\nb\nc\n");
        // update-meta #1 records the intent, #2 the archived keys: crash right after #2.
        h.crash_at("objects.update-meta", 1, true);
        assert!(catch_unwind(AssertUnwindSafe(|| ops::archive(&h, ID, 6))).is_err());
        h.state.borrow_mut().crash = None;
        assert!(
            meta_i64(&h, keys::ARCHIVED_AT).is_some(),
            "crashed after the patch"
        );
        // The app appends to the file the archive read (a re-created file would be a new one).
        crate::host::Host::append_file(&h, ID, OUTPUT_FILE, b"late\n").unwrap();

        let rep = ops::recover(&h, ID).unwrap();
        assert_eq!((rep.examined, rep.rolled_back), (1, 1));
        assert_eq!(meta_i64(&h, keys::RESTORED_AT), Some(123));
        assert_eq!(meta_i64(&h, keys::PRUNED_AT), Some(45));
        assert!(meta_i64(&h, keys::ARCHIVED_AT).is_none());
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), b"a\nb\nc\nlate\n");
    }
}
