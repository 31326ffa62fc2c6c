//! Hand-made hostile components (WAT) that, while the host serves one operation, reach outside
//! it: another session's output, archive or meta, an unconditional delete of live output, a
//! write during a read-only plan, two memories grown to the cap each, thousands of open writers,
//! writes far beyond what was read. Each is refused with a typed error naming the operation, the
//! session and the target; every store stays byte-identical; the next operation is served.

use std::sync::{Arc, OnceLock};

use session_archiver::archiver::{Archiver, ArchiverOptions};
use session_archiver::error::{ArchiverError, LimitKind, Op};
use session_archiver::policy::LoadedPolicy;
use session_archiver::runtime::{CacheSetting, Limits, Runtime, RuntimeOptions};
use session_archiver::store::{FileStore, ObjectStore};
use session_archiver_testkit::components::*;
use session_archiver_testkit::mem::*;
use session_archiver_testkit::*;

// The WIT package version the hand-made components import (one place to change it).
use session_archiver::bindings::WIT_VERSION;

/// Memory cap of the test runtime: each of two memories may grow to most of it, not both.
const MEMORY: usize = 32 << 20;
/// Write floor of the test runtime: small, so "writes 100x what it read" is cheap to test.
const WRITE_FLOOR: u64 = 256 << 10;

/// One runtime for this binary, with small memory and write allowances.
fn rt() -> Arc<Runtime> {
    static RT: OnceLock<Arc<Runtime>> = OnceLock::new();
    RT.get_or_init(|| {
        Arc::new(
            Runtime::new(RuntimeOptions {
                limits: Limits {
                    memory_bytes: MEMORY,
                    write_floor_bytes: WRITE_FLOOR,
                    ..Limits::default()
                },
                cache: CacheSetting::Dir(test_cache_dir()),
            })
            .expect("runtime"),
        )
    })
    .clone()
}

/// The real default policy on the test runtime.
fn inactivity_here() -> LoadedPolicy {
    static P: OnceLock<LoadedPolicy> = OnceLock::new();
    P.get_or_init(|| {
        rt().load_file(&policy_path("inactivity"))
            .expect("load inactivity")
    })
    .clone()
}

/// Static strings of the hand-made components, at fixed addresses.
const DATA: &[(u32, &str)] = &[
    (1024, "a"),
    (1032, "b"),
    (1040, "output"),
    (1056, "b.jsonl.gz"),
    (1072, "a.jsonl.gz"),
    (1088, r#"{"x":1}"#),
    (1104, "scratch"),
    (1120, "c"),
];
const A: &str = "(i32.const 1024) (i32.const 1)";
const B: &str = "(i32.const 1032) (i32.const 1)";
const C: &str = "(i32.const 1120) (i32.const 1)";
const OUT: &str = "(i32.const 1040) (i32.const 6)";
const B_GZ: &str = "(i32.const 1056) (i32.const 10)";
const A_GZ: &str = "(i32.const 1072) (i32.const 10)";
const PATCH: &str = "(i32.const 1088) (i32.const 7)";
const SCRATCH: &str = "(i32.const 1104) (i32.const 7)";
/// Where import results go.
const RET: &str = "(i32.const 2048)";
/// A zeroed area: the canonical ABI reads it as `ok` with zero fields and empty lists.
const OK: &str = "(i32.const 4096)";

/// A policy whose `archive`, `plan` and `prune` run the given bodies (each must end with a
/// result pointer, e.g. [`OK`]); everything else succeeds with zeroes. It has a second memory
/// and imports the calls the tests abuse.
fn hostile_component(archive: &str, plan: &str, prune: &str) -> Vec<u8> {
    let v = WIT_VERSION;
    let p = format!("session-archiver:policy/policy@{v}#");
    let files = format!("session-archiver:policy/files@{v}");
    let objects = format!("session-archiver:policy/objects@{v}");
    let dir = format!("session-archiver:policy/archive-dir@{v}");
    let data: String = DATA
        .iter()
        .map(|(at, s)| format!("(data (i32.const {at}) {s:?})\n"))
        .collect();
    let info = INFO_OK;
    let wat = format!(
        r#"(module
          (import "{files}" "read" (func $read (param i32 i32 i32 i32 i64 i32 i32)))
          (import "{files}" "create" (func $create (param i32 i32 i32 i32 i32 i64 i32)))
          (import "{files}" "append" (func $append (param i32 i32 i32 i32 i32 i32 i32)))
          (import "{files}" "delete" (func $delete (param i32 i32 i32 i32 i32)))
          (import "{files}" "delete-if-unchanged"
            (func $delete_if (param i32 i32 i32 i32 i64 i64 i64 i32 i64 i32)))
          (import "{objects}" "update-meta" (func $patch (param i32 i32 i32 i32 i32)))
          (import "{dir}" "remove" (func $remove (param i32 i32 i32)))
          (import "{dir}" "create" (func $writer (param i32 i32 i32)))
          (import "{dir}" "[method]writer.write" (func $write (param i32 i32 i32 i32)))
          (memory $m0 (export "memory") 1)
          (memory $m1 1)
          {data}
          (global $heap (mut i32) (i32.const 16384))
          (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
            (local $r i32)
            (local.set $r (global.get $heap))
            (global.set $heap (i32.add (global.get $heap) (local.get 3)))
            (local.get $r))
          (func (export "{p}info") (result i32) {info})
          (func (export "{p}validate-config") (param i32 i32) (result i32) {OK})
          (func (export "{p}archive") (param i32 i32 i32 i32) (result i32) (local $i i32) {archive})
          (func (export "{p}restore") (param i32 i32 i32 i32) (result i32) {OK})
          (func (export "{p}export") (param i32 i32 i32 i32) (result i32) {OK})
          (func (export "{p}plan") (param i32 i32 i32) (result i32) {plan})
          (func (export "{p}prune") (param i32 i32) (result i32) {prune})
          (func (export "{p}recover") (param i32 i32 i32 i32) (result i32) {OK})
          (func (export "{p}compress-member") (param i32 i32 i32 i32 i64 i64) (result i32) unreachable)
          (func (export "{p}verify-member") (param i32 i32 i32 i32 i64 i32) (result i32) unreachable)
          (func (export "{p}inflate-member") (param i32 i32 i32 i32 i64) (result i32) unreachable)
        )"#
    );
    policy_component_from_wat(&wat)
}

/// An archiver serving a hand-made policy whose `archive` runs `body`.
fn archiver_with(mem: &Mem, archive: &str, plan: &str, prune: &str) -> Archiver {
    let bytes = hostile_component(archive, plan, prune);
    let policy = rt()
        .load_bytes(&bytes, "scope.wasm")
        .expect("load hand-made");
    Archiver::new(mem.stores.clone(), rt(), policy, ArchiverOptions::default()).expect("archiver")
}

fn hostile_archive(mem: &Mem, body: &str) -> Archiver {
    archiver_with(mem, body, OK, OK)
}

/// Everything in the three stores, to compare before and after.
#[derive(Debug, PartialEq)]
struct Snapshot {
    objects: Vec<(String, String, u64)>,
    files: Vec<(String, String, Vec<u8>)>,
    archives: Vec<(String, Vec<u8>)>,
}

fn snapshot(mem: &Mem) -> Snapshot {
    let page = mem.objects.list(None, 1000).expect("list objects");
    let objects = page
        .objects
        .into_iter()
        .map(|o| (o.id, serde_json::to_string(&o.meta).unwrap(), o.version))
        .collect();
    let mut files: Vec<_> = mem
        .files
        .list_files()
        .expect("list files")
        .into_iter()
        .map(|(zone, name, stat)| {
            let data = mem
                .files
                .read(&zone, &name, 0, stat.size as u32)
                .expect("read file");
            (zone, name, data)
        })
        .collect();
    files.sort();
    let archives = session_archiver::archive_dir::ArchiveDir::list(&mem.dir)
        .expect("list archives")
        .into_iter()
        .map(|e| {
            let data = mem.dir.get(&e.name).expect("archive bytes");
            (e.name, data)
        })
        .collect();
    Snapshot {
        objects,
        files,
        archives,
    }
}

/// Two idle agent sessions `a` and `b`, and an archive of `b` (a backup).
fn two_sessions() -> Mem {
    let mem = mem_stores();
    mem.agent_session("a", 30, 50);
    mem.agent_session("b", 30, 50);
    mem.dir
        .put("b.jsonl.gz", b"not really gzip", now_ms() - 1000)
        .expect("put b's archive");
    mem
}

/// Asserts a refusal naming `op`, session `session`, `import` and `denied`.
fn assert_refused(err: &ArchiverError, op: Op, session: Option<&str>, import: &str, denied: &str) {
    let ArchiverError::Refused {
        op: got_op,
        target,
        import: got_import,
        denied: got_denied,
        ..
    } = err
    else {
        panic!("expected a refusal, got {err:?}")
    };
    assert_eq!(*got_op, op, "{err}");
    assert_eq!(target.as_deref(), session, "{err}");
    assert_eq!(*got_import, import, "{err}");
    assert_eq!(got_denied, denied, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&op.to_string()) && msg.contains(import) && msg.contains(denied),
        "{msg}"
    );
    if let Some(s) = session {
        assert!(msg.contains(s), "{msg}");
    }
    assert_eq!(err.code(), "refused");
}

/// The real policy archives `a` on the same stores and runtime: the host serves on.
fn next_operation_is_served(mem: &Mem) {
    let real = Archiver::new(
        mem.stores.clone(),
        rt(),
        inactivity_here(),
        ArchiverOptions::default(),
    )
    .expect("archiver");
    let outcome = real
        .archive("a")
        .expect("archive a after the refusal")
        .value;
    assert!(outcome.raw_bytes > 0, "{outcome:?}");
    assert!(mem.files.stat("a", "output").unwrap().is_none());
}

/// Runs `body` as `archive(a)`, expects a refusal, an unchanged store and a served next op.
fn refused_in_archive_of_a(body: &str, import: &str, denied: &str) {
    let mem = two_sessions();
    let before = snapshot(&mem);
    let err = hostile_archive(&mem, body).archive("a").unwrap_err();
    assert_refused(&err, Op::Archive, Some("a"), import, denied);
    assert_eq!(snapshot(&mem), before, "a store changed");
    next_operation_is_served(&mem);
}

#[test]
fn archive_of_one_session_may_not_delete_another_sessions_output() {
    let body = format!(
        "(call $delete_if {B} {OUT} (i64.const 0) (i64.const 0) (i64.const 0) (i32.const 0) \
         (i64.const 0) {RET}) {OK}"
    );
    refused_in_archive_of_a(&body, "files.delete-if-unchanged", "file b/output");
}

#[test]
fn archive_of_one_session_may_not_remove_another_sessions_archive() {
    let body = format!("(call $remove {B_GZ} {RET}) {OK}");
    refused_in_archive_of_a(&body, "archive-dir.remove", "archive b.jsonl.gz");
}

#[test]
fn archive_of_one_session_may_not_patch_another_sessions_meta() {
    let body = format!("(call $patch {B} {PATCH} {RET}) {OK}");
    refused_in_archive_of_a(&body, "objects.update-meta", "object b");
}

#[test]
fn archive_of_one_session_may_not_read_another_sessions_output() {
    let body = format!("(call $read {B} {OUT} (i64.const 0) (i32.const 100) {RET}) {OK}");
    refused_in_archive_of_a(&body, "files.read", "file b/output");
}

#[test]
fn no_policy_may_delete_live_output_unconditionally_even_its_own() {
    let body = format!("(call $delete {A} {OUT} {RET}) {OK}");
    refused_in_archive_of_a(&body, "files.delete", "file a/output");
}

#[test]
fn a_policy_may_still_delete_its_own_scratch_file() {
    let mem = two_sessions();
    let body =
        format!("(call $create {A} {SCRATCH} (i32.const 0) (i64.const 0) {RET}) (call $delete {A} {SCRATCH} {RET}) {OK}");
    let before = snapshot(&mem);
    hostile_archive(&mem, &body)
        .archive("a")
        .expect("creating and deleting a scratch file of its own session is allowed");
    assert_eq!(snapshot(&mem), before);
}

#[test]
fn plan_is_read_only_whatever_the_policy_does() {
    let mem = two_sessions();
    let before = snapshot(&mem);
    let plan = format!("(call $patch {A} {PATCH} {RET}) {OK}");
    let err = archiver_with(&mem, OK, &plan, OK).plan().unwrap_err();
    assert_refused(&err, Op::Plan, None, "objects.update-meta", "object a");
    assert_eq!(snapshot(&mem), before);
    next_operation_is_served(&mem);
}

#[test]
fn prune_may_remove_listed_archives_but_not_touch_files_or_other_sessions() {
    let mem = two_sessions();
    mem.agent_session("c", 30, 5);
    // Allowed: the archive listed at the start and its session's meta.
    let prune = format!("(call $patch {B} {PATCH} {RET}) (call $remove {B_GZ} {RET}) {OK}");
    archiver_with(&mem, OK, OK, &prune)
        .prune()
        .expect("prune of a listed archive");
    assert!(mem.dir.get("b.jsonl.gz").is_none());
    // Refused: a session that has no listed archive, and the file store.
    let before = snapshot(&mem);
    let prune = format!("(call $patch {C} {PATCH} {RET}) {OK}");
    let err = archiver_with(&mem, OK, OK, &prune).prune().unwrap_err();
    assert_refused(&err, Op::Prune, None, "objects.update-meta", "object c");
    let prune = format!("(call $read {A} {OUT} (i64.const 0) (i32.const 100) {RET}) {OK}");
    let err = archiver_with(&mem, OK, OK, &prune).prune().unwrap_err();
    assert_refused(&err, Op::Prune, None, "files.read", "file a/output");
    assert_eq!(snapshot(&mem), before);
    next_operation_is_served(&mem);
}

/// Runs `body` as `archive(a)` and expects the `which` limit.
fn limit_in_archive_of_a(body: &str, which: LimitKind, outside_unchanged: bool) {
    let mem = two_sessions();
    let before = snapshot(&mem);
    let err = hostile_archive(&mem, body).archive("a").unwrap_err();
    let ArchiverError::Limit {
        which: got,
        op,
        target,
        ..
    } = &err
    else {
        panic!("expected the {which} limit, got {err:?}")
    };
    assert_eq!(
        (*got, *op, target.as_deref()),
        (which, Op::Archive, Some("a"))
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&which.to_string()) && msg.contains("archive") && msg.contains("\"a\""),
        "{msg}"
    );
    if outside_unchanged {
        assert_eq!(snapshot(&mem), before, "a store changed");
    } else {
        // Only the session's own scratch file may have been written.
        let mut after = snapshot(&mem);
        after
            .files
            .retain(|(zone, name, _)| !(zone == "a" && name == "scratch"));
        assert_eq!(after, before, "a store changed outside a/scratch");
    }
    // Drop a's scratch so the next archive sees only its output, then serve it.
    let _ = mem.files.delete("a", "scratch");
    next_operation_is_served(&mem);
}

#[test]
fn two_memories_grown_to_the_cap_each_hit_the_memory_limit_together() {
    // Each grows by 20 MiB: under the 32 MiB cap alone, over it together.
    let pages = (20 << 20) / 65536;
    let body = format!(
        "(if (i32.eq (memory.grow $m0 (i32.const {pages})) (i32.const -1)) (then unreachable))
         (if (i32.eq (memory.grow $m1 (i32.const {pages})) (i32.const -1)) (then unreachable))
         {OK}"
    );
    limit_in_archive_of_a(&body, LimitKind::Memory, true);
}

#[test]
fn one_memory_under_the_cap_is_allowed() {
    let mem = two_sessions();
    let pages = (20 << 20) / 65536;
    let body = format!(
        "(if (i32.eq (memory.grow $m1 (i32.const {pages})) (i32.const -1)) (then unreachable)) {OK}"
    );
    hostile_archive(&mem, &body)
        .archive("a")
        .expect("20 MiB in one memory is under the cap");
}

#[test]
fn thousands_of_open_writers_hit_the_open_archives_limit() {
    let body = format!(
        "(loop $l
           (call $writer {A_GZ} {RET})
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $l (i32.lt_u (local.get $i) (i32.const 5000))))
         {OK}"
    );
    limit_in_archive_of_a(&body, LimitKind::OpenArchives, true);
}

#[test]
fn writing_a_hundred_times_what_was_read_hits_the_write_limit() {
    // Reads 4 KiB of its own output, then appends 4 KiB a hundred times to its scratch file;
    // copies the read bytes from the result list (pointer at RET+4) each time.
    let body = format!(
        "(call $read {A} {OUT} (i64.const 0) (i32.const 4096) {RET})
         (call $create {A} {SCRATCH} (i32.const 0) (i64.const 0) (i32.const 2304))
         (loop $l
           (call $append {A} {SCRATCH} (i32.load (i32.const 2052)) (i32.const 4096) (i32.const 2304))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $l (i32.lt_u (local.get $i) (i32.const 100))))
         {OK}"
    );
    limit_in_archive_of_a(&body, LimitKind::Writes, false);
}

#[test]
fn writing_to_an_archive_from_nothing_stops_at_the_write_floor() {
    // No reads at all: 1 MiB of writes to its own archive writer, 4 KiB at a time, is over the
    // 256 KiB floor; the writer is never committed, so no archive appears.
    let body = format!(
        "(call $writer {A_GZ} {RET})
         (loop $l
           (call $write (i32.load (i32.const 2052)) (i32.const 8192) (i32.const 4096) (i32.const 2304))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $l (i32.lt_u (local.get $i) (i32.const 256))))
         {OK}"
    );
    limit_in_archive_of_a(&body, LimitKind::Writes, true);
}

#[test]
fn restore_of_highly_compressible_output_is_not_refused_by_the_write_limit() {
    // 8 MiB of identical lines gzips to a few KiB; its restore writes 8 MiB, far over
    // 4 x the archive plus the 256 KiB floor, but within what the archive can inflate to.
    let mem = mem_stores();
    mem.agent_session("z", 30, 0);
    let line = format!("{{\"text\":\"{}\"}}\n", "x".repeat(1000));
    let mut data = Vec::new();
    while data.len() < 8 << 20 {
        data.extend_from_slice(line.as_bytes());
    }
    for chunk in data.chunks(1 << 20) {
        mem.files.append("z", "output", chunk).unwrap();
    }
    let real = Archiver::new(
        mem.stores.clone(),
        rt(),
        inactivity_here(),
        ArchiverOptions::default(),
    )
    .unwrap();
    let archived = real.archive("z").expect("archive").value;
    assert_eq!(archived.raw_bytes, data.len() as u64);
    assert!(archived.archive_bytes < (data.len() / 100) as u64);
    real.restore("z")
        .expect("restore within the inflate allowance");
    let back = mem.files.read("z", "output", 0, 4 << 20).unwrap();
    assert_eq!(back, data[..4 << 20]);
}
