//! The seven data-loss bugs of the seed, one test each (some with a companion), on the
//! mock host. Each test sets up the exact situation in which the seed loses or misreports data, so
//! it fails on seed-like behaviour and passes only if the policy does the safe thing.

use serde_json::{json, Value};
use session_archiver::archiver::Archiver;
use session_archiver::bindings::guest::{Error as PolicyError, Source};
use session_archiver::error::ArchiverError;
use session_archiver::store::{FileStore, Meta, ObjectStore, StoreError};
use session_archiver_testkit::{crc32, expect_policy_error, Fault, MockHost};

fn name(id: &str) -> String {
    format!("{id}.jsonl.gz")
}

/// A host with one idle agent session `id` of `lines` lines; returns its original output.
fn one_session(host: &MockHost, id: &str, lines: usize) -> Vec<u8> {
    host.session(id).idle_days(10).lines(lines).create();
    host.output(id).expect("fixture output")
}

fn is_archived(host: &MockHost, id: &str) -> bool {
    host.meta_value(id, "session:archived_at")
        .as_i64()
        .is_some_and(|t| t > 0)
}

/// The 1-based number of the first call to `op` in `host`'s log.
fn seq_of(host: &MockHost, op: &str) -> usize {
    host.calls_to(op)
        .first()
        .unwrap_or_else(|| panic!("no call to {op}: {:#?}", host.calls()))
        .seq
}

// ---- torn or missing archive after a crash --------------------------------------------

#[test]
fn a_failing_commit_leaves_the_live_file_and_meta_untouched_and_no_archive() {
    // Guards the seed's torn archive: the seed wrote the .gz in place and deleted the live file regardless; a commit
    // that fails (disk full at fsync/rename) must cost nothing.
    let host = MockHost::new();
    let original = one_session(&host, "s", 20);
    let meta_before = host.meta("s");
    host.inject(Fault::FailOp {
        op: "archive-dir.commit".into(),
        error: StoreError::Io("disk full".into()),
        times: None,
    });
    let archiver = host.archiver("inactivity", "{}");

    let err = expect_policy_error(archiver.archive("s"));

    assert!(
        matches!(&err, PolicyError::Io(m) if m.contains("disk full")),
        "{err:?}"
    );
    assert_eq!(host.output("s").as_deref(), Some(&original[..]));
    assert_eq!(
        host.meta("s"),
        meta_before,
        "meta untouched, intent cleared"
    );
    assert!(host.archive_bytes(&name("s")).is_none());
    assert!(host.archives.inner.get(&name("s")).is_none());
    assert!(host.calls_to("files.delete-if-unchanged").is_empty());
    assert!(host.calls_to("files.delete").is_empty());
}

#[test]
fn the_live_file_is_deleted_only_after_commit_returned() {
    // Guards the fix for the seed's torn archive, its ordering: write through the writer, commit, and only then delete.
    let host = MockHost::new();
    one_session(&host, "s", 20);
    let archiver = host.archiver("inactivity", "{}");

    archiver.archive("s").expect("archive");

    let commit = seq_of(&host, "archive-dir.commit");
    let delete = seq_of(&host, "files.delete-if-unchanged");
    assert!(commit < delete, "commit #{commit} before delete #{delete}");
    assert!(
        host.calls_to("archive-dir.write")
            .iter()
            .all(|c| c.seq < commit),
        "every archive write precedes the commit"
    );
}

// ---- no verification ------------------------------------------------------------------

#[test]
fn an_archive_damaged_between_commit_and_read_back_keeps_the_live_copy_and_reports_corrupt() {
    // Guards the seed's unverified archive: the seed never read its archive back. Here the committed file is damaged
    // (one byte of the deflate stream flipped) just before the policy opens it to verify.
    let host = MockHost::new();
    let original = one_session(&host, "s", 50);
    let meta_before = host.meta("s");
    let archives = host.archives.clone();
    host.before_next("archive-dir.open", move || {
        let mut gz = archives.inner.get("s.jsonl.gz").expect("committed");
        let mid = gz.len() / 2;
        gz[mid] ^= 0x55;
        archives.inner.put("s.jsonl.gz", &gz, 0).unwrap();
    });
    let archiver = host.archiver("inactivity", "{}");

    let err = expect_policy_error(archiver.archive("s"));

    assert!(matches!(err, PolicyError::Corrupt(_)), "{err:?}");
    assert_eq!(host.rec.pending_hooks(), 0, "the archive was read back");
    assert_eq!(host.output("s").as_deref(), Some(&original[..]));
    assert_eq!(host.meta("s"), meta_before);
    assert!(
        host.archive_bytes(&name("s")).is_none(),
        "the unverifiable archive is removed"
    );
    assert!(host.calls_to("files.delete-if-unchanged").is_empty());
}

#[test]
fn an_archive_read_back_shorter_than_written_keeps_the_live_copy() {
    // Guards the seed's unverified archive against a truncated file (a lost tail after commit): length and CRC checked.
    let host = MockHost::new();
    let original = one_session(&host, "s", 50);
    let archives = host.archives.clone();
    host.before_next("archive-dir.open", move || {
        let gz = archives.inner.get("s.jsonl.gz").expect("committed");
        archives
            .inner
            .put("s.jsonl.gz", &gz[..gz.len() - 3], 0)
            .unwrap();
    });
    let archiver = host.archiver("inactivity", "{}");

    let err = expect_policy_error(archiver.archive("s"));

    assert!(matches!(err, PolicyError::Corrupt(_)), "{err:?}");
    assert_eq!(host.output("s").as_deref(), Some(&original[..]));
    assert!(!is_archived(&host, "s"));
}

#[test]
fn a_failing_read_back_keeps_the_live_copy() {
    // Guards the seed's unverified archive when verification cannot happen at all: no delete without a good read-back.
    let host = MockHost::new();
    let original = one_session(&host, "s", 10);
    host.inject(Fault::FailOp {
        op: "archive-dir.read".into(),
        error: StoreError::Io("EIO".into()),
        times: None,
    });
    let archiver = host.archiver("inactivity", "{}");

    let err = expect_policy_error(archiver.archive("s"));

    assert!(matches!(err, PolicyError::Io(_)), "{err:?}");
    assert_eq!(host.output("s").as_deref(), Some(&original[..]));
    assert!(!is_archived(&host, "s"));
    assert!(host.archive_bytes(&name("s")).is_none());
    assert!(host.calls_to("files.delete-if-unchanged").is_empty());
}

#[test]
fn a_verified_archive_records_its_crc32_and_size_in_meta() {
    // Guards the fix for the seed's unverified archive, its digest: `session:archive_crc32` is the CRC-32 of the raw bytes, read back.
    let host = MockHost::new();
    let original = one_session(&host, "s", 30);
    let archiver = host.archiver("inactivity", "{}");

    let out = archiver.archive("s").expect("archive").value;

    let gz = host.archive_bytes(&name("s")).unwrap();
    assert_eq!(out.crc32, crc32(&original));
    assert_eq!(
        host.meta_value("s", "session:archive_crc32"),
        json!(out.crc32)
    );
    assert_eq!(
        host.meta_value("s", "session:archive_gz_bytes"),
        json!(gz.len())
    );
    assert_eq!(
        host.meta_value("s", "session:archived_bytes"),
        json!(original.len())
    );
    let commit = seq_of(&host, "archive-dir.commit");
    let open = seq_of(&host, "archive-dir.open");
    let delete = seq_of(&host, "files.delete-if-unchanged");
    assert!(
        commit < open && open < delete,
        "read back between commit #{commit} and delete #{delete} (open #{open})"
    );
}

// ---- lost appends ---------------------------------------------------------------------

#[test]
fn output_appended_between_read_and_delete_survives_and_the_archive_is_dropped() {
    // Guards the seed's lost appends (logrotate's copytruncate): the seed read, then deleted unconditionally, losing
    // whatever the agent wrote in between.
    let host = MockHost::new();
    let original = one_session(&host, "s", 20);
    let meta_before = host.meta("s");
    let late = b"{\"late\":true}\n";
    host.append_before("files.delete-if-unchanged", "s", late);
    let archiver = host.archiver("inactivity", "{}");

    let err = expect_policy_error(archiver.archive("s"));

    assert!(matches!(err, PolicyError::Conflict(_)), "{err:?}");
    let mut expected = original.clone();
    expected.extend_from_slice(late);
    assert_eq!(host.output("s").unwrap(), expected, "every byte kept");
    assert!(host.archive_bytes(&name("s")).is_none(), "archive dropped");
    assert_eq!(host.meta("s"), meta_before, "meta not archived");

    // The next attempt archives everything, the late line included.
    let out = archiver.archive("s").expect("second archive").value;
    assert_eq!(out.raw_bytes, expected.len() as u64);
    let mut restored = Vec::new();
    archiver.export("s", &mut restored).expect("export");
    assert_eq!(restored, expected);
}

#[test]
fn output_appended_while_the_archive_is_written_is_not_lost() {
    // Guards the seed's lost appends at an earlier point: an append during the copy (before commit).
    let host = MockHost::new();
    let original = one_session(&host, "s", 20);
    let late = b"{\"during\":\"copy\"}\n";
    host.append_before("archive-dir.commit", "s", late);
    let archiver = host.archiver("inactivity", "{}");

    let result = archiver.archive("s");

    let mut expected = original;
    expected.extend_from_slice(late);
    let mut all = Vec::new();
    archiver.export("s", &mut all).expect("export");
    assert_eq!(all, expected, "archive + live hold every byte: {result:?}");
    assert!(
        host.output("s").is_some(),
        "the live file holds the late line"
    );
}

// ---- restore overwrites newer output ---------------------------------------------------

#[test]
fn restore_keeps_output_written_after_archiving() {
    // Guards the seed's overwritten newer output: the seed deleted the live file and wrote the archive in its place.
    let host = MockHost::new();
    let original = one_session(&host, "s", 20);
    let archiver = host.archiver("inactivity", "{}");
    archiver.archive("s").expect("archive");
    let newer = b"{\"after\":\"archive\"}\n{\"more\":1}\n";
    host.append_output("s", newer);

    let mut export = Vec::new();
    let e = archiver.export("s", &mut export).expect("export").value;
    assert_eq!(e.source, Source::ArchiveAndLive);

    let out = archiver.restore("s").expect("restore").value;

    let mut expected = original.clone();
    expected.extend_from_slice(newer);
    assert_eq!(out.archived_bytes, original.len() as u64);
    assert_eq!(out.newer_bytes, newer.len() as u64);
    assert_eq!(host.output("s").unwrap(), expected);
    assert_eq!(export, expected, "export agrees with restore");
    let files: Vec<String> = host
        .files
        .inner
        .list_files()
        .unwrap()
        .into_iter()
        .filter(|(zone, ..)| zone == "s")
        .map(|(_, name, _)| name)
        .collect();
    assert_eq!(files, ["output"], "no scratch file left");
}

#[test]
fn restore_keeps_output_appended_while_it_runs() {
    // Guards the seed's overwritten newer output against an append racing the restore's final rename.
    let host = MockHost::new();
    let original = one_session(&host, "s", 20);
    let archiver = host.archiver("inactivity", "{}");
    archiver.archive("s").expect("archive");
    host.append_output("s", b"first\n");
    host.append_before("files.rename-if-unchanged", "s", b"racing\n");

    archiver.restore("s").expect("restore");

    let mut expected = original;
    expected.extend_from_slice(b"first\nracing\n");
    assert_eq!(host.output("s").unwrap(), expected);
    assert!(
        host.calls_to("files.rename-if-unchanged").len() >= 2,
        "retried"
    );
}

// ---- dangling meta after prune --------------------------------------------------------

#[test]
fn pruning_an_only_copy_leaves_a_tombstone_and_restore_says_when() {
    // Guards the seed's dangling meta after prune: the seed deleted the .gz and left meta pointing at it; restore then failed
    // with an I/O error and the session looked archived forever.
    let host = MockHost::new();
    let original = one_session(&host, "s", 20);
    let archiver = host.archiver("inactivity", r#"{"max_total_bytes":1}"#);
    archiver.archive("s").expect("archive");
    host.clock.advance(3_600_000);
    let t = host.now_ms();

    let report = archiver.prune().expect("prune").value;

    assert_eq!((report.pruned, report.tombstoned), (1, 1), "{report:?}");
    assert!(host.archive_bytes(&name("s")).is_none());
    assert_eq!(host.meta_value("s", "session:archive_pruned_at"), json!(t));
    assert!(!is_archived(&host, "s"), "meta no longer says archived");
    assert_eq!(
        host.meta_value("s", "session:archive_path"),
        Value::Null,
        "no dangling path"
    );
    assert_eq!(
        expect_policy_error(archiver.restore("s")),
        PolicyError::Pruned(t)
    );
    assert_eq!(
        expect_policy_error(archiver.export("s", Vec::new())),
        PolicyError::Pruned(t)
    );
    assert!(!original.is_empty());
}

#[test]
fn backups_of_restored_sessions_are_pruned_before_any_only_copy() {
    // Guards the fix for the seed's dangling meta after prune, its order: the seed pruned oldest-first, destroying the only copy of an old
    // session while keeping the backup of a newer one whose data is live again.
    let host = MockHost::new();
    one_session(&host, "old", 40);
    let restored = one_session(&host, "new", 40);
    let archiver = host.archiver("inactivity", "{}");
    archiver.archive("old").expect("archive old");
    host.clock.advance(60_000);
    archiver.archive("new").expect("archive new");
    archiver.restore("new").expect("restore new");
    let old_size = host.archive_bytes(&name("old")).unwrap().len();
    assert!(host.archive_bytes(&name("new")).is_some(), "backup kept");
    let capped = host.archiver(
        "inactivity",
        &format!(r#"{{"max_total_bytes":{old_size}}}"#),
    );

    let report = capped.prune().expect("prune").value;

    assert_eq!((report.pruned, report.tombstoned), (1, 0), "{report:?}");
    assert!(host.archive_bytes(&name("new")).is_none(), "backup pruned");
    assert!(
        host.archive_bytes(&name("old")).is_some(),
        "the older only copy survives"
    );
    assert!(is_archived(&host, "old"));
    assert_eq!(host.output("new").unwrap(), restored);
}

// ---- trusting meta --------------------------------------------------------------------

#[test]
fn a_meta_archive_path_pointing_elsewhere_is_refused_without_reading_anything() {
    // Guards the seed's trust in meta paths: the seed opened whatever `session:archive_path` said.
    let host = MockHost::new();
    one_session(&host, "s", 10);
    one_session(&host, "other", 10);
    let archiver = host.archiver("inactivity", "{}");
    archiver.archive("s").expect("archive s");
    archiver.archive("other").expect("archive other");
    let other_path = host.meta_value("other", "session:archive_path");
    let own_path = host.meta_value("s", "session:archive_path");

    for bad in [
        json!("/etc/passwd"),
        json!("../x.jsonl.gz"),
        json!("s.jsonl.gz"),
        json!("/memory/archives/../archives/s.jsonl.gz"),
        other_path,
        json!(42),
    ] {
        let mut patch = Meta::new();
        patch.insert("session:archive_path".into(), bad.clone());
        host.objects.inner.update_meta("s", &patch).unwrap();
        let meta_before = host.meta("s");
        host.rec.reset_log();

        for (op, result) in [
            ("restore", archiver.restore("s").map(|_| ())),
            ("export", archiver.export("s", Vec::new()).map(|_| ())),
        ] {
            let err = expect_policy_error(result);
            assert!(
                matches!(err, PolicyError::InvalidMeta(_)),
                "{op} with path {bad}: {err:?}"
            );
        }
        assert!(
            host.calls_to("archive-dir.open").is_empty(),
            "{bad}: nothing read"
        );
        assert_eq!(host.rec.any_write(), None, "{bad}: nothing written");
        assert_eq!(host.meta("s"), meta_before);
        assert!(host.output("s").is_none());
    }

    let mut patch = Meta::new();
    patch.insert("session:archive_path".into(), own_path);
    host.objects.inner.update_meta("s", &patch).unwrap();
    archiver
        .restore("s")
        .expect("the session's own path restores");
}

// ---- interrupted operations -----------------------------------------------------------

/// Runs one archive of a fresh `s` on a rehearsal host and returns its call log's op names.
fn rehearse_archive() -> Vec<String> {
    let host = MockHost::new();
    one_session(&host, "s", 20);
    let archiver = host.archiver("inactivity", "{}");
    host.rec.reset_log();
    archiver.archive("s").expect("rehearsal archive");
    host.calls().into_iter().map(|c| c.op).collect()
}

/// A host whose archive of `s` "crashes" right after call `n`; returns it, the archiver and
/// `s`'s original output.
fn crash_archive_after(n: usize) -> (MockHost, Archiver, Vec<u8>) {
    let host = MockHost::new();
    let original = one_session(&host, "s", 20);
    let archiver = host.archiver("inactivity", "{}");
    host.rec.reset_log();
    host.inject(Fault::CrashAfter { n });
    let err = archiver
        .archive("s")
        .expect_err("the crash stops the archive");
    assert!(matches!(err, ArchiverError::Trap { .. }), "{err}");
    host.rec.clear_faults();
    (host, archiver, original)
}

fn assert_recover_again_is_a_no_op(host: &MockHost, archiver: &Archiver) {
    host.rec.reset_log();
    let again = archiver.recover("s").expect("second recover").value;
    assert_eq!(
        (again.examined, again.finished, again.rolled_back),
        (0, 0, 0),
        "{again:?}"
    );
    assert_eq!(
        host.rec.any_write(),
        None,
        "a second recover writes nothing"
    );
}

#[test]
fn a_crash_right_after_commit_leaves_an_intent_that_recover_rolls_back_once() {
    // Guards the seed's unrecorded interrupted operations: the seed had no record of a half-done archive. Here the process dies right
    // after the archive was committed, before it was verified or recorded.
    let ops = rehearse_archive();
    let n = ops
        .iter()
        .position(|op| op == "archive-dir.commit")
        .expect("commit in rehearsal")
        + 1;
    let (host, archiver, original) = crash_archive_after(n);

    let intent = host.meta_value("s", "session:archive_intent");
    assert!(intent.is_object(), "intent recorded: {intent}");
    assert_eq!(intent["op"], json!("archive"));
    assert!(host.archive_bytes(&name("s")).is_some(), "committed file");
    assert_eq!(host.output("s").as_deref(), Some(&original[..]));
    let busy = expect_policy_error(archiver.archive("s"));
    assert!(
        matches!(&busy, PolicyError::Busy(m) if m.contains("recover")),
        "nothing proceeds over an intent: {busy:?}"
    );

    let report = archiver.recover("s").expect("recover").value;

    assert_eq!((report.examined, report.rolled_back), (1, 1), "{report:?}");
    assert_eq!(host.meta_value("s", "session:archive_intent"), Value::Null);
    assert!(!is_archived(&host, "s"));
    assert!(
        host.archive_bytes(&name("s")).is_none(),
        "unrecorded archive removed"
    );
    assert_eq!(host.output("s").as_deref(), Some(&original[..]));
    assert_recover_again_is_a_no_op(&host, &archiver);
    archiver
        .archive("s")
        .expect("archivable again after recovery");
}

#[test]
fn a_crash_after_recording_the_archive_is_finished_by_recover() {
    // Guards the seed's unrecorded interrupted operations on the other side: meta already says archived when the process dies, before
    // the live file was deleted. Recover completes the archive rather than undoing it.
    let ops = rehearse_archive();
    let delete = ops
        .iter()
        .position(|op| op == "files.delete-if-unchanged")
        .expect("delete in rehearsal");
    let (host, archiver, original) = crash_archive_after(delete);

    assert!(host.meta_value("s", "session:archive_intent").is_object());
    assert!(is_archived(&host, "s"));
    assert!(host.output("s").is_some(), "not yet deleted");

    let report = archiver.recover("s").expect("recover").value;

    assert_eq!((report.examined, report.finished), (1, 1), "{report:?}");
    assert_eq!(host.meta_value("s", "session:archive_intent"), Value::Null);
    assert!(is_archived(&host, "s"));
    assert!(host.output("s").is_none(), "archive completed");
    assert_recover_again_is_a_no_op(&host, &archiver);
    archiver.restore("s").expect("restore");
    assert_eq!(host.output("s").unwrap(), original);
}

#[test]
fn a_sweep_recovers_an_interrupted_archive_before_selecting() {
    // Guards the fix for the seed's unrecorded interrupted operations, its "the next sweep finishes or rolls back": no explicit recover needed.
    let ops = rehearse_archive();
    let n = ops
        .iter()
        .position(|op| op == "archive-dir.commit")
        .unwrap()
        + 1;
    let (host, archiver, original) = crash_archive_after(n);

    let report = archiver.sweep(|_| {}).expect("sweep").value;

    assert_eq!(report.recovered, 1, "{report:?}");
    assert_eq!(report.archived, 1, "then archived afresh: {report:?}");
    assert_eq!(host.meta_value("s", "session:archive_intent"), Value::Null);
    let mut all = Vec::new();
    archiver.export("s", &mut all).expect("export");
    assert_eq!(all, original);
}
