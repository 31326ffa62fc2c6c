//! The seed's behaviour, kept: its three tests re-expressed on the mock host, its selection rules,
//! the no-op archive of an empty session, export from either place, and restore's meta contract.
//!
//! The meta keys and file names checked here are the compatibility contract with
//! `shared/seed/session_archive.rs`: tools written against the seed read them.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{json, Value};
use session_archiver::bindings::guest::{Action, Error as PolicyError, Source};
use session_archiver_testkit::fixtures::DAY_MS;
use session_archiver_testkit::{expect_policy_error, MockHost};

const SEED_KEYS: [&str; 3] = [
    "session:archived_at",
    "session:archived_bytes",
    "session:archive_path",
];

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut out)
        .expect("a valid gzip file");
    out
}

fn archived_at(host: &MockHost, id: &str) -> i64 {
    host.meta_value(id, "session:archived_at")
        .as_i64()
        .unwrap_or(0)
}

fn export(archiver: &session_archiver::archiver::Archiver, id: &str) -> (Vec<u8>, u64, Source) {
    let mut out = Vec::new();
    let served = archiver.export(id, &mut out).expect("export");
    assert_eq!(served.value.bytes, out.len() as u64, "reported bytes");
    (out, served.value.lines, served.value.source)
}

#[test]
fn sweep_archives_an_inactive_session_and_frees_its_live_file() {
    // Guards the seed's `test_sweep_archives_inactive_session`: same setup, same assertions.
    let host = MockHost::new();
    let id = host
        .session("3f1c2a9e-0000-4000-8000-000000000001")
        .idle_days(10)
        .output(&b"line1\nline2\n"[..])
        .meta("session:line_count", json!(2))
        .create();
    let archiver = host.archiver("inactivity", r#"{"inactive_days":1}"#);

    let report = archiver.sweep(|_| {}).expect("sweep").value;

    assert_eq!(report.archived, 1, "should archive 1 session: {report:?}");
    assert!(report.bytes_archived > 0, "should free bytes");
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(
        host.output(&id).is_none(),
        "filestore entry should be deleted after archive"
    );
    let gz = host
        .archive_bytes(&format!("{id}.jsonl.gz"))
        .expect(".gz file should exist");
    assert_eq!(gunzip(&gz), b"line1\nline2\n");
    assert!(
        archived_at(&host, &id) > 0,
        "session:archived_at should be set"
    );
    assert_eq!(archived_at(&host, &id), host.now_ms());
    assert_eq!(host.meta_value(&id, "session:archived_bytes"), json!(12));
    assert_eq!(
        host.meta_value(&id, "session:archive_path"),
        json!(format!("/memory/archives/{id}.jsonl.gz")),
        "the absolute path of the archive, as the seed recorded it"
    );
}

#[test]
fn the_sweeps_skip_codes_and_counts_equal_the_plans_by_code() {
    // The sweep archives what the plan selects and counts every other session under the plan's
    // own skip code: one vocabulary, and the same numbers, code by code.
    let host = MockHost::new();
    let id = host.session("s1").idle_days(10).lines(2).create();
    host.session("s2").idle_days(12).lines(3).create();
    host.session("recent").idle_days(0).lines(2).create();
    host.session("term")
        .idle_days(10)
        .lines(2)
        .meta("view", json!("term"))
        .create();
    host.session("pinned")
        .idle_days(10)
        .lines(2)
        .meta("session:archive_pinned", json!(true))
        .create();
    host.session("no-lines")
        .idle_days(10)
        .meta("session:line_count", json!(0))
        .create();
    let archiver = host.archiver("inactivity", r#"{"inactive_days":1}"#);

    let plan = archiver.plan().expect("plan").value;
    let report = archiver.sweep(|_| {}).expect("sweep").value;

    let planned_skips: BTreeMap<String, u32> = plan
        .skipped
        .iter()
        .map(|s| (s.reason.clone(), s.count))
        .collect();
    assert_eq!(report.skipped, planned_skips, "{report:?}");
    for code in ["recent", "not-agent", "pinned", "no-lines"] {
        assert_eq!(report.skipped.get(code), Some(&1), "{code}: {report:?}");
    }
    let planned_archives: Vec<_> = plan
        .decisions
        .iter()
        .filter(|d| d.action == Action::Archive)
        .collect();
    assert_eq!(report.scanned, plan.scanned);
    assert_eq!(report.archived as usize, planned_archives.len());
    assert_eq!(report.archived, 2);
    assert_eq!(
        report.bytes_archived,
        planned_archives.iter().map(|d| d.bytes).sum::<u64>()
    );
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(report.bytes_written > 0);
    assert!(host.output(&id).is_none());
    assert!(archived_at(&host, &id) > 0);
}

#[test]
fn export_counts_non_blank_lines_like_the_seed() {
    // Guards the seed's `test_bytecount_lines`, through export (the only place the count surfaces).
    let host = MockHost::new();
    let archiver = host.archiver("inactivity", "{}");
    for (i, (bytes, lines)) in [
        (&b""[..], 0),
        (b"line1\n", 1),
        (b"line1\nline2\n", 2),
        (b"  \n\nline3\n", 1),
        (b"a\r\n\r\n \t \r\nb", 2),
    ]
    .into_iter()
    .enumerate()
    {
        let id = host
            .session(&format!("s{i}"))
            .output(bytes.to_vec())
            .create();
        let (out, n, _) = export(&archiver, &id);
        assert_eq!(out, bytes);
        assert_eq!(n, lines, "{:?}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn archive_then_restore_gives_back_the_exact_bytes() {
    // Guards the seed's `test_gz_roundtrip`, end to end through archive and restore.
    let host = MockHost::new();
    let data = b"hello compressed world\nline2\n".to_vec();
    let id = host.session("rt").output(data.clone()).create();
    let archiver = host.archiver("inactivity", "{}");

    let out = archiver.archive(&id).expect("archive").value;
    assert_eq!(out.raw_bytes, data.len() as u64);
    let name = out.archive_name.clone().expect("an archive name");
    assert_eq!(name, "rt.jsonl.gz");
    assert_eq!(gunzip(&host.archive_bytes(&name).unwrap()), data);
    assert!(host.output(&id).is_none());

    let restored = archiver.restore(&id).expect("restore").value;
    assert_eq!(restored.archived_bytes, data.len() as u64);
    assert_eq!(restored.newer_bytes, 0);
    assert_eq!(host.output(&id).unwrap(), data);
}

#[test]
fn sweep_follows_the_seed_selection_rules() {
    // Guards every seed skip rule and the inclusive threshold (idle exactly inactive_days archives).
    let host = MockHost::new();
    let now = host.now_ms();
    let s = |id: &str| host.session(id).lines(3);
    let archive_expected = [
        s("idle-10d").idle_days(10).create(),
        s("idle-exactly-7d").idle_days(7).create(),
        s("archived-at-zero")
            .idle_days(9)
            .meta("session:archived_at", json!(0))
            .create(),
    ];
    let skip_expected = [
        s("not-agent")
            .idle_days(10)
            .meta("view", json!("term"))
            .create(),
        s("no-view")
            .idle_days(10)
            .meta("view", Value::Null)
            .create(),
        s("already-archived")
            .idle_days(10)
            .meta("session:archived_at", json!(now - DAY_MS))
            .create(),
        s("no-activity").create(),
        s("activity-zero")
            .meta("session:last_activity_ms", json!(0))
            .create(),
        s("activity-negative")
            .meta("session:last_activity_ms", json!(-5))
            .create(),
        s("zero-lines")
            .idle_days(10)
            .meta("session:line_count", json!(0))
            .create(),
        s("no-line-count")
            .idle_days(10)
            .meta("session:line_count", Value::Null)
            .create(),
        s("one-ms-short")
            .meta("session:last_activity_ms", json!(now - 7 * DAY_MS + 1))
            .create(),
        s("recent").idle_days(1).create(),
    ];
    let outputs: Vec<_> = skip_expected.iter().map(|id| host.output(id)).collect();
    let archiver = host.archiver("inactivity", "{}");

    let report = archiver.sweep(|_| {}).expect("sweep").value;

    assert_eq!(report.archived, 3, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    for id in &archive_expected {
        assert!(archived_at(&host, id) > 0, "{id} should be archived");
        assert!(host.output(id).is_none(), "{id}'s live file is freed");
    }
    for (id, before) in skip_expected.iter().zip(outputs) {
        assert_eq!(host.output(id), before, "{id}'s live file is untouched");
        assert!(
            host.archive_bytes(&format!("{id}.jsonl.gz")).is_none(),
            "{id} must not be archived"
        );
    }
    assert_eq!(
        host.meta_value("already-archived", "session:archived_at"),
        json!(now - DAY_MS)
    );
    let skipped: std::collections::BTreeMap<_, _> = report.skipped.clone().into_iter().collect();
    for (code, n) in [
        ("not-agent", 2),
        ("archived", 1),
        ("no-activity", 3),
        ("no-lines", 2),
        ("recent", 2),
    ] {
        assert_eq!(skipped.get(code), Some(&n), "{code}: {skipped:?}");
    }
}

#[test]
fn archiving_a_session_with_missing_or_empty_output_is_a_no_op_reporting_zero_bytes() {
    // Guards the seed's "missing or empty output: a no-op that reports 0 bytes".
    let host = MockHost::new();
    let missing = host.session("missing").idle_days(10).create();
    let empty = host
        .session("empty")
        .idle_days(10)
        .output(Vec::new())
        .create();
    let archiver = host.archiver("inactivity", "{}");

    for id in [&missing, &empty] {
        let before = host.meta(id);
        let out = archiver.archive(id).expect("archive").value;
        assert_eq!((out.raw_bytes, out.archive_bytes), (0, 0), "{id}");
        assert_eq!(out.archive_name, None, "{id}");
        assert_eq!(host.meta(id), before, "{id}: meta untouched");
        assert!(host.archive_bytes(&format!("{id}.jsonl.gz")).is_none());
    }
    assert_eq!(
        host.output(&empty),
        Some(Vec::new()),
        "the empty file stays"
    );
    assert!(host.output(&missing).is_none());
    assert!(host.rec.any_write().is_none(), "{:?}", host.rec.any_write());
}

#[test]
fn export_reads_from_the_live_file_and_from_the_archive() {
    // Guards the seed's `read_session_output`: the same bytes and count whether live or archived.
    let host = MockHost::new();
    let id = host.session("exp").lines(7).create();
    let original = host.output(&id).unwrap();
    let archiver = host.archiver("inactivity", "{}");

    let (live, lines, source) = export(&archiver, &id);
    assert_eq!(
        (live.as_slice(), lines, source),
        (&original[..], 7, Source::Live)
    );

    archiver.archive(&id).expect("archive");
    let (arch, lines, source) = export(&archiver, &id);
    assert_eq!(
        (arch.as_slice(), lines, source),
        (&original[..], 7, Source::Archive)
    );
    assert!(host.output(&id).is_none(), "export does not restore");

    let none = host.session("nothing").create();
    let (bytes, lines, source) = export(&archiver, &none);
    assert_eq!((bytes.len(), lines, source), (0, 0, Source::Empty));
}

#[test]
fn restore_clears_the_three_seed_keys_and_keeps_the_archive_as_a_backup() {
    // Guards the seed's restore contract: keys nulled, `.gz` kept.
    let host = MockHost::new();
    let id = host.session("back").idle_days(10).lines(4).create();
    let original = host.output(&id).unwrap();
    let archiver = host.archiver("inactivity", "{}");
    archiver.archive(&id).expect("archive");
    let gz = host
        .archive_bytes("back.jsonl.gz")
        .expect("archive written");
    for key in SEED_KEYS {
        assert!(!host.meta_value(&id, key).is_null(), "{key} set by archive");
    }

    archiver.restore(&id).expect("restore");

    let meta = host.meta(&id);
    for key in SEED_KEYS {
        assert!(meta.get(key).is_none(), "{key} cleared: {meta:?}");
    }
    assert_eq!(host.output(&id).unwrap(), original);
    assert_eq!(
        host.archive_bytes("back.jsonl.gz"),
        Some(gz),
        "the .gz stays as a backup"
    );
    assert_eq!(
        expect_policy_error(archiver.restore(&id)),
        PolicyError::NotArchived(id.clone()),
        "a second restore has nothing to restore"
    );
    assert_eq!(
        host.meta_value(&id, "view"),
        json!("agent"),
        "other keys kept"
    );
}
