//! Issue 7's memory bound, guest side: archive, export and restore stream in chunks, so the
//! policy's linear memory stays far below the session size (≤ 16 MiB for any size). A policy
//! that buffered the session would need more than the 24 MiB session here; wasm memory never
//! shrinks, so the peak the host's limiter saw is what the operation cost.
//!
//! Host RSS is checked by `cargo xtask bench` in a fresh process (a test binary's RSS is shared
//! with every other test).

use std::sync::Arc;

use session_archiver::archiver::{Archiver, ArchiverOptions};
use session_archiver::store::{FileOpts, FileStore, ObjectStore, OUTPUT_FILE};
use session_archiver_demo::{count_lines, session_jsonl};
use session_archiver_testkit::mem::{mem_stores, now_ms};
use session_archiver_testkit::{policy_path, test_cache_dir};

const SESSION_BYTES: u64 = 24 << 20;
const GUEST_BOUND: u64 = 16 << 20;

#[test]
fn archive_export_and_restore_of_a_24_mib_session_keep_guest_memory_under_16_mib() {
    let mem = mem_stores();
    let id = "big-session";
    mem.files
        .create(id, OUTPUT_FILE, FileOpts::default())
        .expect("create");
    let (mut bytes, mut lines) = (0u64, 0u64);
    for chunk in session_jsonl(7, SESSION_BYTES) {
        mem.files.append(id, OUTPUT_FILE, &chunk).expect("append");
        bytes += chunk.len() as u64;
        lines += count_lines(&chunk);
    }
    let meta = serde_json::json!({
        "view": "agent",
        "session:last_activity_ms": now_ms() - 30 * session_archiver::store::DAY_MS,
        "session:line_count": lines,
    });
    let serde_json::Value::Object(meta) = meta else {
        unreachable!()
    };
    mem.objects.insert(id, &meta).expect("insert");

    // A runtime of our own: the peak counter is per runtime, and other tests share theirs.
    let runtime = Arc::new(
        session_archiver::runtime::Runtime::new(session_archiver::runtime::RuntimeOptions {
            cache: session_archiver::runtime::CacheSetting::Dir(test_cache_dir()),
            ..Default::default()
        })
        .expect("runtime"),
    );
    let policy = runtime.load_file(&policy_path("inactivity")).expect("load");
    let archiver = Archiver::new(
        mem.stores.clone(),
        runtime.clone(),
        policy,
        ArchiverOptions::default(),
    )
    .expect("archiver");
    runtime.take_peak_guest_memory();

    let archived = archiver.archive(id).expect("archive");
    assert_eq!(archived.value.raw_bytes, bytes);
    let archive_peak = runtime.take_peak_guest_memory();

    let mut exported = Vec::new();
    archiver.export(id, &mut exported).expect("export");
    assert_eq!(exported.len() as u64, bytes);
    let export_peak = runtime.take_peak_guest_memory();

    archiver.restore(id).expect("restore");
    let restore_peak = runtime.take_peak_guest_memory();
    assert_eq!(
        mem.files
            .stat(id, OUTPUT_FILE)
            .expect("stat")
            .map(|s| s.size),
        Some(bytes)
    );

    for (op, peak) in [
        ("archive", archive_peak),
        ("export", export_peak),
        ("restore", restore_peak),
    ] {
        // Non-zero: the limiter saw the instance's memory being created.
        assert!(peak > 0, "{op}: no guest memory recorded");
        assert!(
            peak <= GUEST_BOUND,
            "{op}: guest memory peaked at {peak} bytes for a {bytes}-byte session (bound {GUEST_BOUND})"
        );
    }
}
