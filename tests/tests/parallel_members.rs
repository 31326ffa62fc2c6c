//! Parallel gzip members: one large session compressed by helper instances on the archiver's
//! workers, sharing one pool with the sweep's own workers.

use session_archiver::archiver::{Archiver, ArchiverOptions};
use session_archiver::locks::SessionLocks;
use session_archiver_testkit::fixtures::jsonl_lines;
use session_archiver_testkit::{load_policy, shared_runtime, MockHost};

fn archiver(host: &MockHost, workers: usize, config: &str) -> Archiver {
    Archiver::new(
        host.stores(),
        shared_runtime(),
        load_policy("inactivity"),
        ArchiverOptions {
            config: config.to_string(),
            workers: Some(workers),
            locks: SessionLocks::in_process(),
        },
    )
    .expect("archiver")
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

#[test]
fn a_sweep_mixing_large_and_small_sessions_on_two_workers_archives_every_one_byte_exact() {
    // Guards the shared pool: sweep workers hold slots while large sessions' members take the
    // free ones; nothing waits for a slot while holding one, so the sweep finishes.
    let host = MockHost::new();
    let mut sessions = Vec::new();
    for (i, lines) in [4000, 3000, 40, 2500, 10, 60].into_iter().enumerate() {
        let id = format!("s{i}");
        host.session(&id).idle_days(10).lines(lines).create();
        let out = host.output(&id).expect("output");
        sessions.push((id, out));
    }
    let a = archiver(
        &host,
        2,
        r#"{"inactive_days":1,"parallel_min_bytes":65536,"member_bytes":32768}"#,
    );
    let report = a.sweep(|_| {}).expect("sweep").value;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.archived as usize, sessions.len());
    for (id, out) in &sessions {
        assert_eq!(host.output(id), None, "{id}: live copy freed");
        let gz = host
            .archive_bytes(&format!("{id}.jsonl.gz"))
            .expect("archive");
        assert!(gunzip(&gz) == *out, "{id}: archive holds the output");
    }
    for (id, out) in &sessions {
        a.restore(id).expect("restore");
        assert!(host.output(id).as_ref() == Some(out), "{id}: restored");
    }
}

#[test]
fn parallel_members_cost_little_against_one_member() {
    // Guards the size claim at the default member size: 4 MiB members of agent JSONL compress
    // within 0.5 % of one member.
    let raw = jsonl_lines(42, 80_000);
    assert!(raw.len() > 8 << 20, "two members at least");
    let sizes: Vec<u64> = ["{}", r#"{"parallel_min_bytes":1000000000000}"#]
        .iter()
        .map(|config| {
            let host = MockHost::new();
            host.session("s").output(raw.clone()).create();
            archiver(&host, 2, config)
                .archive("s")
                .expect("archive")
                .value
                .archive_bytes
        })
        .collect();
    let (members, one) = (sizes[0] as f64, sizes[1] as f64);
    assert!(members > one, "members add headers: {members} vs {one}");
    assert!(
        members <= one * 1.005,
        "members {members} bytes vs one member {one}"
    );
}

/// Archives `s` on the parallel path with `damage` applied to the committed file just before it
/// is read back; returns the policy's error.
fn archive_damaged(damage: fn(&mut Vec<u8>)) -> (MockHost, Vec<u8>, String) {
    let host = MockHost::new();
    host.session("s").idle_days(10).lines(3000).create();
    let original = host.output("s").expect("output");
    let archives = host.archives.clone();
    host.before_next("archive-dir.open", move || {
        let mut gz = archives.inner.get("s.jsonl.gz").expect("committed");
        damage(&mut gz);
        archives.inner.put("s.jsonl.gz", &gz, 0).unwrap();
    });
    let a = archiver(&host, 2, r#"{"parallel_min_bytes":1,"member_bytes":65536}"#);
    let err = a.archive("s").expect_err("a damaged archive is refused");
    assert_eq!(host.rec.pending_hooks(), 0, "the archive was read back");
    (host, original, err.to_string())
}

#[test]
fn parallel_members_damaged_after_commit_keep_the_live_copy_and_report_corrupt() {
    // Guards the parallel read-back verify: a flipped byte in one member, a lost tail and
    // trailing garbage are each caught before the live copy goes.
    let damages: [fn(&mut Vec<u8>); 3] = [
        |gz| {
            let mid = gz.len() / 2;
            gz[mid] ^= 0x55;
        },
        |gz| gz.truncate(gz.len() - 3),
        |gz| gz.extend_from_slice(b"garbage"),
    ];
    for (i, damage) in damages.into_iter().enumerate() {
        let (host, original, err) = archive_damaged(damage);
        assert!(err.contains("corrupt"), "damage {i}: {err}");
        assert!(
            host.output("s").as_deref() == Some(&original[..]),
            "damage {i}: live copy kept"
        );
        assert!(
            host.archive_bytes("s.jsonl.gz").is_none(),
            "damage {i}: the unverifiable archive is removed"
        );
        assert!(
            host.meta("s").get("session:archive_intent").is_none(),
            "damage {i}: no intent left"
        );
        assert!(host.calls_to("files.delete-if-unchanged").is_empty());
    }
}

/// Where each member of an archive written on the parallel path starts, read from the index
/// every member's header carries (FLG.FEXTRA, subfield `SA`: member length, raw length).
fn member_starts(gz: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at < gz.len() {
        let h = &gz[at..];
        assert_eq!(&h[..4], &[0x1f, 0x8b, 8, 4], "member at {at}: FEXTRA set");
        assert_eq!(
            &h[10..16],
            &[12, 0, b'S', b'A', 8, 0],
            "member at {at}: the index"
        );
        starts.push(at);
        at += u32::from_le_bytes(h[16..20].try_into().unwrap()) as usize;
    }
    assert_eq!(at, gz.len(), "the indexes tile the file");
    starts
}

#[test]
fn restore_and_export_inflate_indexed_members_on_helpers_and_a_damaged_one_is_corrupt() {
    // Guards the parallel inflate: every worker count gives the bytes back exactly, and a
    // member that does not inflate fails the restore by number with nothing changed.
    let host = MockHost::new();
    host.session("s").idle_days(10).lines(3000).create();
    let original = host.output("s").expect("output");
    let config = r#"{"parallel_min_bytes":1,"member_bytes":65536}"#;
    let a = archiver(&host, 2, config);
    a.archive("s").expect("archive");
    let gz = host.archive_bytes("s.jsonl.gz").expect("archive");
    let starts = member_starts(&gz);
    assert!(starts.len() > 3, "{} members", starts.len());
    assert!(gunzip(&gz) == original, "any gzip reader skips the index");
    for workers in [1, 2, 3] {
        let mut out = Vec::new();
        let done = archiver(&host, workers, config)
            .export("s", &mut out)
            .expect("export");
        assert_eq!(done.value.bytes, original.len() as u64);
        assert!(out == original, "export on {workers} workers");
    }
    a.restore("s").expect("restore");
    assert!(host.output("s").as_ref() == Some(&original), "restored");

    a.archive("s").expect("archive again");
    let mut gz = host.archive_bytes("s.jsonl.gz").expect("archive");
    let at = member_starts(&gz)[1] + 24 + 100;
    gz[at] ^= 0x55;
    host.archives.inner.put("s.jsonl.gz", &gz, 0).unwrap();
    let err = a.restore("s").expect_err("damaged").to_string();
    assert!(err.contains("corrupt") && err.contains("member 2"), "{err}");
    assert_eq!(host.output("s"), None, "nothing restored");
    assert!(
        host.archive_bytes("s.jsonl.gz") == Some(gz),
        "the archive is kept"
    );
    assert!(
        host.meta_value("s", "session:archived_at").is_i64(),
        "still archived"
    );
}

#[test]
fn each_member_helper_keeps_one_instance_for_all_the_members_it_takes() {
    // Guards the helpers' instance reuse: a fresh instance per member faulted in new linear
    // memory for every 4 MiB and cost a tenth of a restore's CPU.
    use session_archiver_testkit::{policy_path, tight_runtime};
    let host = MockHost::new();
    host.session("s").idle_days(10).lines(3000).create();
    let original = host.output("s").expect("output");
    // A runtime of its own, so its instance count is this test's alone.
    let runtime = tight_runtime(256 << 20, 600_000, None);
    let policy = runtime.load_file(&policy_path("inactivity")).expect("load");
    let a = Archiver::new(
        host.stores(),
        runtime.clone(),
        policy,
        ArchiverOptions {
            config: r#"{"parallel_min_bytes":1,"member_bytes":65536}"#.to_string(),
            workers: Some(2),
            locks: SessionLocks::in_process(),
        },
    )
    .expect("archiver");
    let made = || runtime.instances_made();

    let before = made();
    a.archive("s").expect("archive");
    let members = member_starts(&host.archive_bytes("s.jsonl.gz").expect("archive")).len() as u64;
    assert!(members >= 6, "{members} members");
    // The operation's own and up to 2 helpers, which verify each member they compress; the
    // read-back then only compares bytes, on no helper.
    let archive = made() - before;
    assert!(
        archive <= 3,
        "archive of {members} members made {archive} instances"
    );

    let before = made();
    let mut out = Vec::new();
    a.export("s", &mut out).expect("export");
    assert!(out == original);
    let export = made() - before;
    assert!(
        export <= 3,
        "export of {members} members made {export} instances"
    );

    let before = made();
    a.restore("s").expect("restore");
    assert!(host.output("s").as_ref() == Some(&original), "restored");
    let restore = made() - before;
    assert!(
        restore <= 3,
        "restore of {members} members made {restore} instances"
    );
}
