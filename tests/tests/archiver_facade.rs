//! The built `inactivity` policy through the `Archiver` facade on in-memory stores: info,
//! config validation, archive/restore/export round trips, the parallel sweep and session locks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use session_archiver::archiver::{Archiver, ArchiverOptions};
use session_archiver::bindings::guest;
use session_archiver::error::{ArchiverError, Op};
use session_archiver::locks::SessionLocks;
use session_archiver::policy::LoadedPolicy;
use session_archiver::store::{FileStore, ObjectStore, OUTPUT_FILE};
use session_archiver_testkit::components::with_custom_section;
use session_archiver_testkit::mem::{mem_stores, Mem};
use session_archiver_testkit::{load_policy, policy_bytes, shared_runtime as runtime};

/// The default policy, loaded into the shared runtime.
fn inactivity() -> LoadedPolicy {
    load_policy("inactivity")
}

fn archiver(mem: &Mem, workers: usize) -> Archiver {
    let options = ArchiverOptions {
        workers: Some(workers),
        ..Default::default()
    };
    Archiver::new(mem.stores.clone(), runtime(), inactivity(), options).unwrap()
}

fn read_live(mem: &Mem, id: &str) -> Option<Vec<u8>> {
    let stat = mem.files.stat(id, OUTPUT_FILE).unwrap()?;
    let mut out = Vec::new();
    while (out.len() as u64) < stat.size {
        let chunk = mem
            .files
            .read(id, OUTPUT_FILE, out.len() as u64, 1 << 20)
            .unwrap();
        assert!(!chunk.is_empty());
        out.extend_from_slice(&chunk);
    }
    Some(out)
}

#[test]
fn the_built_policy_loads_and_says_who_it_is() {
    let p = inactivity();
    assert_eq!(p.info.name, "inactivity");
    assert!(!p.info.version.is_empty());
    assert!(!p.info.description.is_empty());
    assert_eq!(p.sha256.len(), 64);
}

#[test]
fn a_bad_config_is_refused_by_the_policy_naming_the_field() {
    let mem = mem_stores();
    let a = archiver(&mem, 1);
    let err = a.set_config(r#"{"inactive_days": "soon"}"#).unwrap_err();
    let Some(guest::Error::InvalidConfig(msg)) = err.policy_error() else {
        panic!("{err:?}")
    };
    assert!(msg.contains("inactive_days"), "{msg}");
    assert_eq!(a.config(), "{}", "a refused config is not installed");
    let ok = a.set_config(r#"{"inactive_days": 3}"#).unwrap();
    assert_eq!(ok.policy.name, "inactivity");
    let normalised: Value = serde_json::from_str(&ok.value).unwrap();
    assert_eq!(normalised["inactive_days"], json!(3));
}

#[test]
fn archive_then_restore_gives_back_the_same_bytes_and_export_streams_them() {
    let mem = mem_stores();
    let a = archiver(&mem, 1);
    let original = mem.agent_session("sess-1", 30, 500);

    let archived = a.archive("sess-1").unwrap();
    assert_eq!(archived.policy, a.current_policy().id());
    assert_eq!(archived.value.raw_bytes, original.len() as u64);
    assert_eq!(
        archived.value.archive_name.as_deref(),
        Some("sess-1.jsonl.gz")
    );
    assert!(
        archived.value.archive_bytes > 0 && archived.value.archive_bytes < original.len() as u64
    );
    assert_eq!(archived.value.crc32, crc32(&original));
    assert!(
        read_live(&mem, "sess-1").is_none(),
        "live output deleted after archiving"
    );
    assert!(mem.dir.get("sess-1.jsonl.gz").is_some());

    let mut exported = Vec::new();
    let ex = a.export("sess-1", &mut exported).unwrap();
    assert_eq!(exported, original);
    assert_eq!(ex.value.bytes, original.len() as u64);
    assert_eq!(ex.value.lines, 500);
    assert_eq!(ex.value.source, guest::Source::Archive);

    let restored = a.restore("sess-1").unwrap();
    assert_eq!(restored.value.archived_bytes, original.len() as u64);
    assert_eq!(read_live(&mem, "sess-1").unwrap(), original);
}

#[test]
fn policy_errors_name_the_operation_the_session_and_the_policy() {
    let mem = mem_stores();
    let a = archiver(&mem, 1);
    let err = a.restore("no-such-session").unwrap_err();
    let ArchiverError::Policy {
        op,
        target,
        policy,
        error,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*op, Op::Restore);
    assert_eq!(target.as_deref(), Some("no-such-session"));
    assert!(policy.starts_with("inactivity@"), "{policy}");
    assert!(matches!(error, guest::Error::NotFound(_)), "{error:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("restore") && msg.contains("no-such-session") && msg.contains("inactivity"),
        "{msg}"
    );
}

#[test]
fn an_export_into_a_failing_writer_reports_the_write_error() {
    struct Broken;
    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "reader went away",
            ))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mem = mem_stores();
    let a = archiver(&mem, 1);
    mem.agent_session("s", 0, 100);
    let err = a.export("s", Broken).unwrap_err();
    assert!(matches!(err, ArchiverError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("reader went away"), "{err}");
    // Nothing was lost: the live file is intact.
    assert!(read_live(&mem, "s").is_some());
}

/// 12 idle agent sessions, 5 recent ones, 3 terminals.
fn seed_sweep_fixture(mem: &Mem) -> Vec<String> {
    let mut idle = Vec::new();
    for i in 0..12 {
        let id = format!("idle-{i:02}");
        mem.agent_session(&id, 30, 50 + i * 10);
        idle.push(id);
    }
    for i in 0..5 {
        mem.agent_session(&format!("recent-{i}"), 0, 20);
    }
    for i in 0..3 {
        let Value::Object(meta) = json!({"view": "term"}) else {
            unreachable!()
        };
        mem.objects.insert(&format!("term-{i}"), &meta).unwrap();
    }
    idle
}

#[test]
fn a_parallel_sweep_archives_exactly_the_planned_sessions_and_counts_the_rest() {
    let mem = mem_stores();
    let idle = seed_sweep_fixture(&mem);
    let a = archiver(&mem, 3);
    let plan = a.plan().unwrap().value;
    let planned = plan
        .decisions
        .iter()
        .filter(|d| d.action == guest::Action::Archive)
        .count();
    assert_eq!(planned, 12);

    let calls = AtomicUsize::new(0);
    let seen = Mutex::new(Vec::new());
    let served = a
        .sweep(|p| {
            calls.fetch_add(1, Ordering::Relaxed);
            assert_eq!(p.total, 12);
            seen.lock().unwrap().push((p.done, p.id.to_string()));
        })
        .unwrap();
    let s = served.value;
    assert_eq!(served.policy.name, "inactivity");
    assert_eq!(s.scanned, 20);
    assert_eq!(s.archived, 12, "{s:?}");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(s.workers, 3);
    let skipped: u32 = s.skipped.values().sum();
    assert_eq!(skipped, 8, "{:?}", s.skipped);
    assert_eq!(calls.load(Ordering::Relaxed), 12);
    let mut done: Vec<usize> = seen.lock().unwrap().iter().map(|(d, _)| *d).collect();
    done.sort();
    assert_eq!(done, (1..=12).collect::<Vec<_>>());
    let raw: u64 = idle
        .iter()
        .map(|id| {
            mem.dir
                .get(&format!("{id}.jsonl.gz"))
                .map(|_| 1)
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(raw, 12, "every idle session has an archive");
    assert!(s.bytes_archived > s.bytes_written && s.bytes_written > 0);
    assert!(s.prune.is_some());
    for id in &idle {
        assert!(read_live(&mem, id).is_none(), "{id} still live");
    }
    // A second sweep finds nothing to do.
    let again = a.sweep(|_| {}).unwrap().value;
    assert_eq!(again.archived, 0);
}

#[test]
fn a_parallel_sweeps_skip_codes_and_counts_equal_the_plans_by_code() {
    // One sweep owner: whatever the worker count, the sweep archives what the plan selects and
    // counts the rest under the plan's codes.
    for workers in [1, 2] {
        let mem = mem_stores();
        seed_sweep_fixture(&mem);
        let a = archiver(&mem, workers);
        let plan = a.plan().unwrap().value;
        let s = a.sweep(|_| {}).unwrap().value;
        let planned_skips: BTreeMap<String, u32> = plan
            .skipped
            .iter()
            .map(|k| (k.reason.clone(), k.count))
            .collect();
        assert_eq!(s.skipped, planned_skips, "workers={workers}");
        assert_eq!(
            (s.skipped.get("recent"), s.skipped.get("not-agent")),
            (Some(&5), Some(&3)),
            "workers={workers}"
        );
        let due: Vec<_> = plan
            .decisions
            .iter()
            .filter(|d| d.action == guest::Action::Archive)
            .collect();
        assert_eq!(s.scanned, plan.scanned, "workers={workers}");
        assert_eq!(s.archived as usize, due.len(), "workers={workers}");
        assert_eq!(
            s.bytes_archived,
            due.iter().map(|d| d.bytes).sum::<u64>(),
            "workers={workers}"
        );
    }
}

#[test]
fn a_sweep_skips_a_session_another_operation_holds_and_archives_the_rest() {
    let mem = mem_stores();
    seed_sweep_fixture(&mem);
    let locks = SessionLocks::in_process();
    let options = ArchiverOptions {
        workers: Some(2),
        locks: locks.clone(),
        ..Default::default()
    };
    let a = Archiver::new(mem.stores.clone(), runtime(), inactivity(), options).unwrap();
    let held = locks.lock("idle-03").unwrap();
    let s = a.sweep(|_| {}).unwrap().value;
    assert_eq!(s.archived, 11);
    assert_eq!(s.skipped.get("locked"), Some(&1));
    assert!(read_live(&mem, "idle-03").is_some());
    drop(held);
    assert_eq!(a.sweep(|_| {}).unwrap().value.archived, 1);
}

#[test]
fn a_restore_waits_only_for_its_own_session_not_for_the_others() {
    let mem = mem_stores();
    mem.agent_session("a", 30, 50);
    mem.agent_session("b", 30, 50);
    let a = Arc::new(archiver(&mem, 1));
    a.archive("a").unwrap();
    a.archive("b").unwrap();
    let held = a.locks().lock("a").unwrap();
    // "b" is free: restoring it does not wait for "a".
    a.restore("b").unwrap();
    let a2 = a.clone();
    let t = std::thread::spawn(move || a2.restore("a").map(|r| r.value.archived_bytes));
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!t.is_finished(), "restore of a locked session must wait");
    drop(held);
    assert!(t.join().unwrap().unwrap() > 0);
}

#[test]
fn file_locks_work_for_the_archiver_too() {
    let mem = mem_stores();
    mem.agent_session("x", 30, 10);
    let dir = tempfile::tempdir().unwrap();
    let locks = SessionLocks::files(dir.path().join(".locks"));
    let options = ArchiverOptions {
        workers: Some(1),
        locks,
        ..Default::default()
    };
    let a = Archiver::new(mem.stores.clone(), runtime(), inactivity(), options).unwrap();
    a.archive("x").unwrap();
    assert!(dir.path().join(".locks/x.lock").exists());
}

fn crc32(bytes: &[u8]) -> u32 {
    // Bitwise CRC-32 (IEEE), enough for a test.
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_swap_during_a_running_sweep_lets_it_complete_and_new_calls_use_the_new_policy() {
    let mem = mem_stores();
    seed_sweep_fixture(&mem);
    let a = archiver(&mem, 2);
    let old = a.current_policy().id();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inactivity-next.wasm");
    std::fs::write(
        &path,
        with_custom_section(&policy_bytes("inactivity"), "next"),
    )
    .unwrap();

    let swapped = Mutex::new(None);
    let served = a
        .sweep(|p| {
            let mut s = swapped.lock().unwrap();
            if s.is_none() && p.done == 1 {
                *s = Some(a.swap_policy(&path).unwrap());
            }
        })
        .unwrap();
    let swap = swapped.into_inner().unwrap().expect("swapped mid-sweep");
    assert_eq!(swap.old, old);
    assert_ne!(swap.new.sha256, old.sha256);
    assert_eq!(
        served.policy, old,
        "the sweep finished on the policy it started with"
    );
    assert_eq!(served.value.archived, 12);
    assert!(served.value.failed.is_empty());
    assert_eq!(a.plan().unwrap().policy, swap.new);
}
