//! The operations against the fake host: the seed's behaviour and each of its seven bugs.

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::{json, Value};

use crate::bindings::exports::session_archiver::policy::policy as api;
use crate::fake::FakeHost;
use crate::gzip;
use crate::meta::{keys, Meta};
use crate::ops::{
    self, ArchiveClass, ArchiveInfo, Decisions, Error, PrunePick, Selection, OUTPUT, SCRATCH,
};

const DAY: i64 = 86_400_000;
const NOW: i64 = 100 * DAY;
const ID: &str = "s1";

/// Archives every agent session; prunes oldest-first, only-copies last.
struct Simple {
    cap: u64,
}

impl Decisions for Simple {
    fn select(&self, meta: &Meta, _now: i64) -> Selection {
        if meta.has_intent() {
            return Selection::Recover {
                reason: "intent".into(),
            };
        }
        if meta.view() != "agent" {
            return Selection::Skip {
                code: "not-agent".into(),
                reason: "not an agent".into(),
                candidate: false,
            };
        }
        if meta.archived_at().ok().flatten().is_some() {
            return Selection::Skip {
                code: "archived".into(),
                reason: "archived".into(),
                candidate: true,
            };
        }
        Selection::Archive {
            reason: "test".into(),
        }
    }
    fn prune_plan(&self, archives: &[ArchiveInfo], cap: u64) -> Vec<PrunePick> {
        let mut total: u64 = archives.iter().map(|a| a.entry.size).sum();
        let mut order: Vec<usize> = (0..archives.len())
            .filter(|i| {
                matches!(
                    archives[*i].class,
                    ArchiveClass::Backup | ArchiveClass::Orphan | ArchiveClass::OnlyCopy
                )
            })
            .collect();
        order.sort_by_key(|i| {
            (
                archives[*i].class == ArchiveClass::OnlyCopy,
                archives[*i].entry.modified_ms,
            )
        });
        let mut picks = Vec::new();
        for i in order {
            if total <= cap {
                break;
            }
            total -= archives[i].entry.size;
            picks.push(PrunePick {
                index: i,
                reason: "cap".into(),
            });
        }
        picks
    }
    fn level(&self) -> u8 {
        6
    }
    fn cap(&self) -> u64 {
        self.cap
    }
    fn max_restore_bytes(&self) -> u64 {
        1 << 30
    }
}

fn body(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("{{\"i\":{i}}}\n"))
        .collect::<String>()
        .into_bytes()
}

fn host_with_session(data: &[u8]) -> FakeHost {
    let h = FakeHost::new(NOW);
    h.add_object(
        ID,
        json!({"view":"agent","session:last_activity_ms": NOW - 10 * DAY, "session:line_count": 3}),
    );
    h.put_file(ID, OUTPUT, data);
    h
}

fn meta_i64(h: &FakeHost, key: &str) -> Option<i64> {
    h.meta(ID).get(key).and_then(Value::as_i64)
}

#[test]
fn archive_then_restore_round_trips_and_keeps_the_archive_as_a_backup() {
    let data = body(5000);
    let h = host_with_session(&data);
    let out = ops::archive(&h, ID, 6).unwrap();
    assert_eq!(out.raw_bytes, data.len() as u64);
    assert_eq!(out.crc32, crc32fast::hash(&data));
    assert_eq!(out.archive_name.as_deref(), Some("s1.jsonl.gz"));
    assert_eq!(h.file(ID, OUTPUT), None, "live copy freed");
    let gz = h.archive("s1.jsonl.gz").unwrap();
    assert_eq!(out.archive_bytes, gz.len() as u64);
    assert_eq!(gzip::decompress(&gz, u64::MAX).unwrap(), data);
    let m = h.meta(ID);
    assert_eq!(m[keys::ARCHIVED_AT], NOW);
    assert_eq!(m[keys::ARCHIVED_BYTES], data.len() as u64);
    assert_eq!(m[keys::ARCHIVE_PATH], "/archives/s1.jsonl.gz");
    assert_eq!(m[keys::ARCHIVE_CRC32], crc32fast::hash(&data));
    assert!(m.get(keys::INTENT).is_none());

    let r = ops::restore(&h, ID, u64::MAX).unwrap();
    assert_eq!((r.archived_bytes, r.newer_bytes), (data.len() as u64, 0));
    assert_eq!(h.file(ID, OUTPUT).unwrap(), data);
    assert!(
        h.archive("s1.jsonl.gz").is_some(),
        "the .gz stays as a backup"
    );
    let m = h.meta(ID);
    for k in keys::ARCHIVED_KEYS {
        assert!(m.get(k).is_none(), "{k} cleared");
    }
    assert_eq!(m[keys::RESTORED_AT], NOW);
    assert!(h.file(ID, SCRATCH).is_none());
}

#[test]
fn archiving_missing_or_empty_output_is_a_no_op_reporting_zero_bytes() {
    let h = host_with_session(b"");
    let out = ops::archive(&h, ID, 6).unwrap();
    assert_eq!((out.raw_bytes, out.archive_name), (0, None));
    h.state.borrow_mut().files.clear();
    assert_eq!(ops::archive(&h, ID, 6).unwrap().raw_bytes, 0);
    assert!(h.state.borrow().archives.is_empty());
    assert!(meta_i64(&h, keys::ARCHIVED_AT).is_none());
}

#[test]
fn archiving_an_archived_session_is_refused_so_its_only_copy_is_never_overwritten() {
    let h = host_with_session(b"a\n");
    ops::archive(&h, ID, 6).unwrap();
    let before = h.archive("s1.jsonl.gz");
    h.put_file(ID, OUTPUT, b"newer\n");
    assert!(matches!(ops::archive(&h, ID, 6), Err(Error::Conflict(_))));
    assert_eq!(h.archive("s1.jsonl.gz"), before);
}

#[test]
fn bug1_a_crash_before_commit_leaves_no_archive_and_the_live_copy() {
    let data = body(100);
    let h = host_with_session(&data);
    h.crash_at("commit", 0, false);
    assert!(catch_unwind(AssertUnwindSafe(|| ops::archive(&h, ID, 6))).is_err());
    assert!(h.archive("s1.jsonl.gz").is_none());
    assert_eq!(h.file(ID, OUTPUT).unwrap(), data);
    let rep = ops::recover(&h, None).unwrap();
    assert_eq!((rep.examined, rep.rolled_back), (1, 1));
    assert!(h.meta(ID).get(keys::INTENT).is_none());
}

#[test]
fn bug2_an_archive_that_does_not_read_back_keeps_the_live_copy() {
    let data = body(3000);
    let h = host_with_session(&data);
    h.state.borrow_mut().corrupt_next_commit = true;
    let err = ops::archive(&h, ID, 6).unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    assert_eq!(h.file(ID, OUTPUT).unwrap(), data);
    assert!(h.archive("s1.jsonl.gz").is_none(), "bad archive removed");
    let m = h.meta(ID);
    assert!(m.get(keys::ARCHIVED_AT).is_none() && m.get(keys::INTENT).is_none());
}

#[test]
fn bug3_output_appended_during_archive_survives_and_the_archive_is_dropped() {
    let data = body(100);
    let h = host_with_session(&data);
    h.state.borrow_mut().append_before = Some((
        "files.delete-if-unchanged".into(),
        ID.into(),
        b"late\n".to_vec(),
    ));
    let err = ops::archive(&h, ID, 6).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    let mut want = data.clone();
    want.extend_from_slice(b"late\n");
    assert_eq!(h.file(ID, OUTPUT).unwrap(), want);
    assert!(h.archive("s1.jsonl.gz").is_none());
    let m = h.meta(ID);
    for k in keys::ARCHIVED_KEYS.iter().chain([&keys::INTENT]) {
        assert!(m.get(*k).is_none(), "{k} left behind");
    }
}

#[test]
fn bug4_restore_keeps_output_written_after_archiving_even_during_the_rename() {
    let h = host_with_session(b"old-1\nold-2\n");
    ops::archive(&h, ID, 6).unwrap();
    h.put_file(ID, OUTPUT, b"new-1\n");
    h.state.borrow_mut().append_before = Some((
        "files.rename-if-unchanged".into(),
        ID.into(),
        b"new-2\n".to_vec(),
    ));
    let r = ops::restore(&h, ID, u64::MAX).unwrap();
    assert_eq!(h.file(ID, OUTPUT).unwrap(), b"old-1\nold-2\nnew-1\nnew-2\n");
    assert_eq!((r.archived_bytes, r.newer_bytes), (12, 12));
}

#[test]
fn bug5_pruning_an_only_copy_leaves_a_tombstone_that_restore_reports() {
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
fn bug5_backups_of_restored_sessions_are_pruned_before_only_copies() {
    let h = host_with_session(b"restored\n");
    ops::archive(&h, ID, 6).unwrap();
    ops::restore(&h, ID, u64::MAX).unwrap();
    h.add_object("s2", json!({"view":"agent"}));
    h.put_file("s2", OUTPUT, b"only copy\n");
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

#[test]
fn bug6_restore_refuses_a_meta_path_that_is_not_the_sessions_own_archive() {
    let h = host_with_session(b"x\n");
    ops::archive(&h, ID, 6).unwrap();
    for bad in [
        "/etc/passwd",
        "/archives/other.jsonl.gz",
        "/archives/../s1.jsonl.gz",
    ] {
        h.state
            .borrow_mut()
            .objects
            .get_mut(ID)
            .unwrap()
            .0
            .insert(keys::ARCHIVE_PATH.into(), json!(bad));
        let calls_before = h.calls().len();
        let err = ops::restore(&h, ID, u64::MAX).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidMeta(m) if m.contains(bad)),
            "{err:?}"
        );
        assert!(
            !h.calls()[calls_before..]
                .iter()
                .any(|c| c == "archive-dir.open"),
            "nothing read for {bad}"
        );
        assert!(matches!(
            ops::export(&h, ID, u64::MAX),
            Err(Error::InvalidMeta(_))
        ));
    }
}

/// After a crash at any point and a recover, no byte is lost and nothing is left half done.
fn check_archive_consistent(h: &FakeHost, data: &[u8]) {
    let m = h.meta(ID);
    assert!(m.get(keys::INTENT).is_none(), "intent cleared: {m:?}");
    if m.get(keys::ARCHIVED_AT).is_some() {
        let gz = h
            .archive("s1.jsonl.gz")
            .expect("archived meta has its archive");
        assert_eq!(gzip::decompress(&gz, u64::MAX).unwrap(), data);
        assert_eq!(h.file(ID, OUTPUT), None);
    } else {
        assert_eq!(h.file(ID, OUTPUT).unwrap(), data, "live copy intact");
    }
}

#[test]
fn bug7_archive_recovers_from_a_crash_at_every_step_idempotently() {
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
                let crashed = catch_unwind(AssertUnwindSafe(|| ops::archive(&h, ID, 6))).is_err();
                h.state.borrow_mut().crash = None;
                let has_after_hook =
                    ["objects.update-meta", "commit", "files.delete-if-unchanged"].contains(&step);
                if nth == 0 && (!after || has_after_hook) {
                    assert!(crashed, "the crash at {step} (after={after}) fired");
                }
                ops::recover(&h, None).unwrap();
                check_archive_consistent(&h, &data);
                let again = ops::recover(&h, None).unwrap();
                assert_eq!(again.examined, 0, "second recover is a no-op ({step}, after={after}, nth={nth}, crashed={crashed})");
            }
        }
    }
}

#[test]
fn bug7_restore_recovers_from_a_crash_at_every_step_idempotently() {
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
                h.put_file(ID, OUTPUT, b"new\n");
                h.crash_at(step, nth, after);
                let _ = catch_unwind(AssertUnwindSafe(|| ops::restore(&h, ID, u64::MAX)));
                h.state.borrow_mut().crash = None;
                ops::recover(&h, None).unwrap();
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
                        h.file(ID, OUTPUT).unwrap(),
                        b"new\n",
                        "({step}, {after}, {nth})"
                    );
                } else {
                    assert_eq!(
                        h.file(ID, OUTPUT).unwrap(),
                        b"old\nnew\n",
                        "({step}, {after}, {nth})"
                    );
                }
                assert_eq!(ops::recover(&h, None).unwrap().examined, 0);
            }
        }
    }
}

#[test]
fn export_streams_archive_then_live_and_counts_non_blank_lines() {
    let h = host_with_session(b"a\n\n  \nb\n");
    ops::archive(&h, ID, 6).unwrap();
    h.put_file(ID, OUTPUT, b"c\n");
    let out = ops::export(&h, ID, u64::MAX).unwrap();
    assert_eq!(h.state.borrow().sink, b"a\n\n  \nb\nc\n");
    assert_eq!(
        (out.bytes, out.lines, out.source),
        (10, 3, api::Source::ArchiveAndLive)
    );
    h.state.borrow_mut().files.clear();
    h.state.borrow_mut().sink.clear();
    assert_eq!(
        ops::export(&h, ID, u64::MAX).unwrap().source,
        api::Source::Archive
    );
    ops::restore(&h, ID, u64::MAX).unwrap();
    assert_eq!(
        ops::export(&h, ID, u64::MAX).unwrap().source,
        api::Source::Live
    );
    h.state.borrow_mut().files.clear();
    assert_eq!(
        ops::export(&h, ID, u64::MAX).unwrap().source,
        api::Source::Empty
    );
}

#[test]
fn a_gzip_bomb_is_refused_on_restore_with_meta_untouched() {
    let h = host_with_session(b"x\n");
    ops::archive(&h, ID, 6).unwrap();
    let bomb = gzip::compress(&vec![0u8; 20 << 20], 9).unwrap();
    h.put_archive("s1.jsonl.gz", bomb, 1);
    let before = h.meta(ID);
    let err = ops::restore(&h, ID, u64::MAX).unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    assert_eq!(h.meta(ID), before);
    assert!(h.file(ID, SCRATCH).is_none());
    // And a session recorded as larger than the configured limit is too large before any read.
    assert!(matches!(ops::restore(&h, ID, 1), Err(Error::TooLarge(_))));
}

#[test]
fn multi_member_archives_restore_byte_exact() {
    let h = host_with_session(b"x\n");
    ops::archive(&h, ID, 6).unwrap();
    let (a, b) = (body(300), body(7));
    let mut gz = gzip::compress(&a, 1).unwrap();
    gz.extend(gzip::compress(&b, 9).unwrap());
    let mut all = a.clone();
    all.extend(&b);
    h.put_archive("s1.jsonl.gz", gz, 1);
    let patch =
        json!({ keys::ARCHIVED_BYTES: all.len(), keys::ARCHIVE_CRC32: crc32fast::hash(&all) });
    for (k, v) in patch.as_object().unwrap() {
        h.state
            .borrow_mut()
            .objects
            .get_mut(ID)
            .unwrap()
            .0
            .insert(k.clone(), v.clone());
    }
    ops::restore(&h, ID, u64::MAX).unwrap();
    assert_eq!(h.file(ID, OUTPUT).unwrap(), all);
}

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
    h.put_file("s2", OUTPUT, b"two\n");
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

#[test]
fn a_circular_output_archives_the_bytes_it_still_holds() {
    let h = host_with_session(b"");
    {
        let mut s = h.state.borrow_mut();
        let f = s
            .files
            .get_mut(&(ID.to_string(), OUTPUT.to_string()))
            .unwrap();
        f.circular = Some(4);
        f.held = b"cdef".to_vec();
        f.size = 6;
    }
    let out = ops::archive(&h, ID, 6).unwrap();
    assert_eq!(out.raw_bytes, 4);
    assert_eq!(
        gzip::decompress(&h.archive("s1.jsonl.gz").unwrap(), 10).unwrap(),
        b"cdef"
    );
    assert!(h.state.borrow().logs.iter().any(|l| l.contains("circular")));
}

#[test]
fn bug7_a_prune_interrupted_after_the_tombstone_is_finished_by_recover() {
    let h = host_with_session(b"x\n");
    ops::archive(&h, ID, 6).unwrap();
    h.crash_at("objects.update-meta", 0, true);
    assert!(catch_unwind(AssertUnwindSafe(|| ops::prune(&h, &Simple { cap: 0 }))).is_err());
    assert!(
        h.archive("s1.jsonl.gz").is_some(),
        "crashed before the remove"
    );
    assert!(
        meta_i64(&h, keys::ARCHIVED_AT).is_none(),
        "meta never says archived without an archive"
    );
    let rep = ops::recover(&h, Some(ID)).unwrap();
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
    assert_eq!(ops::recover(&h, None).unwrap().finished, 1);
    assert_eq!(ops::archive(&h, ID, 6).unwrap().raw_bytes, 2);
}

#[test]
fn recovery_rolling_back_an_archive_puts_back_restored_at_and_pruned_at() {
    // A crash after the archived patch, then an append: recovery must roll back to the meta the
    // session had, not merely clear the archived keys.
    let h = FakeHost::new(NOW);
    h.add_object(
        ID,
        json!({"view":"agent","session:last_activity_ms": NOW - 10 * DAY, "session:line_count": 3,
               "session:restored_at": 123, "session:archive_pruned_at": 45}),
    );
    h.put_file(ID, OUTPUT, b"a\nb\nc\n");
    // update-meta #1 records the intent, #2 the archived keys: crash right after #2.
    h.crash_at("objects.update-meta", 1, true);
    assert!(catch_unwind(AssertUnwindSafe(|| ops::archive(&h, ID, 6))).is_err());
    h.state.borrow_mut().crash = None;
    assert!(
        meta_i64(&h, keys::ARCHIVED_AT).is_some(),
        "crashed after the patch"
    );
    h.put_file(ID, OUTPUT, b"a\nb\nc\nlate\n");

    let rep = ops::recover(&h, None).unwrap();
    assert_eq!((rep.examined, rep.rolled_back), (1, 1));
    assert_eq!(meta_i64(&h, keys::RESTORED_AT), Some(123));
    assert_eq!(meta_i64(&h, keys::PRUNED_AT), Some(45));
    assert!(meta_i64(&h, keys::ARCHIVED_AT).is_none());
    assert_eq!(h.file(ID, OUTPUT).unwrap(), b"a\nb\nc\nlate\n");
}
