//! The `hostile` test policy against the real host: loops, unbounded allocation, traps (also
//! mid-archive) and abused import arguments each end in a clear error naming the policy, the
//! operation and the session, leave nothing half-done, and the archiver keeps serving.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use session_archiver::archiver::{Archiver, ArchiverOptions};
use session_archiver::bindings::guest;
use session_archiver::error::{ArchiverError, LimitKind, Op};
use session_archiver::policy::LoadedPolicy;
use session_archiver::runtime::Runtime;
use session_archiver::store::{FileStore, OUTPUT_FILE};
use session_archiver_testkit::mem::*;
use session_archiver_testkit::{load_policy, policy_path, tight_runtime};

/// The test-only hostile policy, loaded into the shared runtime.
fn hostile() -> LoadedPolicy {
    load_policy("hostile")
}

/// Tight limits: 64 MiB of memory, a 2 s deadline, a 500 ms stall rule.
fn tight() -> (Arc<Runtime>, LoadedPolicy) {
    static T: OnceLock<(Arc<Runtime>, LoadedPolicy)> = OnceLock::new();
    T.get_or_init(|| {
        let rt = tight_runtime(64 << 20, 2_000, Some(500));
        let p = rt.load_file(&policy_path("hostile")).expect("load hostile");
        (rt, p)
    })
    .clone()
}

fn hostile_archiver(mem: &Mem, config: &str) -> Archiver {
    let (rt, policy) = tight();
    let options = ArchiverOptions {
        config: r#"{"mode":"ok"}"#.into(),
        workers: Some(2),
        ..Default::default()
    };
    let a = Archiver::new(mem.stores.clone(), rt, policy, options).unwrap();
    // Unchecked: in these modes `validate-config` itself may misbehave.
    a.set_config_unchecked(config);
    a
}

fn live_size(mem: &Mem, id: &str) -> Option<u64> {
    mem.files.stat(id, OUTPUT_FILE).unwrap().map(|s| s.size)
}

#[test]
fn hostile_loads_and_says_who_it_is() {
    assert_eq!(hostile().info.name, "hostile");
}

#[test]
fn a_policy_that_loops_in_archive_is_stopped_and_the_session_is_untouched() {
    let mem = mem_stores();
    let bytes = mem.agent_session("s1", 30, 100);
    let a = hostile_archiver(&mem, r#"{"mode":"loop","only":"archive"}"#);
    let start = Instant::now();
    let err = a.archive("s1").unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    let ArchiverError::Limit {
        which,
        op,
        target,
        policy,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((*which, *op), (LimitKind::Deadline, Op::Archive));
    assert_eq!(target.as_deref(), Some("s1"));
    assert!(policy.starts_with("hostile@"), "{policy}");
    let msg = err.to_string();
    assert!(
        msg.contains("hostile") && msg.contains("archive") && msg.contains("s1"),
        "{msg}"
    );
    assert_eq!(live_size(&mem, "s1"), Some(bytes.len() as u64));
    // The archiver keeps serving: the next call runs on a fresh instance.
    a.set_config(r#"{"mode":"ok"}"#).unwrap();
    assert!(a.plan().is_ok());
}

#[test]
fn a_config_that_makes_validate_config_loop_is_refused_with_a_limit_error() {
    let mem = mem_stores();
    let a = hostile_archiver(&mem, r#"{"mode":"ok"}"#);
    let err = a.set_config(r#"{"mode":"loop"}"#).unwrap_err();
    assert!(
        matches!(
            err,
            ArchiverError::Limit {
                op: Op::ValidateConfig,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(a.config(), r#"{"mode":"ok"}"#);
}

#[test]
fn a_policy_that_allocates_without_bound_hits_the_memory_cap() {
    let mem = mem_stores();
    let a = hostile_archiver(&mem, r#"{"mode":"alloc","only":"plan"}"#);
    let err = a.plan().unwrap_err();
    let ArchiverError::Limit { which, op, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((*which, *op), (LimitKind::Memory, Op::Plan));
    assert!(err.to_string().contains("memory"), "{err}");
    a.set_config(r#"{"mode":"ok"}"#).unwrap();
    assert!(a.prune().is_ok(), "the archiver keeps serving");
}

#[test]
fn a_policy_that_panics_is_a_trap_naming_the_operation() {
    let mem = mem_stores();
    mem.agent_session("s2", 30, 10);
    let a = hostile_archiver(&mem, r#"{"mode":"trap","only":"restore"}"#);
    let err = a.restore("s2").unwrap_err();
    let ArchiverError::Trap { op, target, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((*op, target.as_deref()), (Op::Restore, Some("s2")));
    assert!(
        err.to_string().contains("trapped in restore on \"s2\""),
        "{err}"
    );
}

#[test]
fn a_trap_mid_archive_leaves_no_archive_and_no_temp_file() {
    let mem = mem_stores();
    let bytes = mem.agent_session("s3", 30, 200);
    let a = hostile_archiver(&mem, r#"{"mode":"trap-mid-archive","only":"archive"}"#);
    let err = a.archive("s3").unwrap_err();
    assert!(
        matches!(
            err,
            ArchiverError::Trap {
                op: Op::Archive,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        mem.dir.get("s3.jsonl.gz").is_none(),
        "no archive under the final name"
    );
    assert_eq!(
        mem.dir.temp_count(),
        0,
        "the dropped writer's temp file is gone"
    );
    assert_eq!(live_size(&mem, "s3"), Some(bytes.len() as u64));
}

#[test]
fn abused_import_arguments_get_errors_not_crashes() {
    let mem = mem_stores();
    mem.agent_session("s4", 30, 10);
    let a = hostile_archiver(&mem, r#"{"mode":"bad-args","only":"archive"}"#);
    let err = a.archive("s4").unwrap_err();
    let Some(guest::Error::Invalid(report)) = err.policy_error() else {
        panic!("{err:?}")
    };
    for expect in [
        "files.read len 1 GiB -> Err(Error::Invalid",
        "archive-dir.create ../x -> Err(Error::InvalidName",
        "archive-dir.open /etc/passwd -> Err(Error::InvalidName",
        "archive-dir.path empty -> Err(Error::InvalidName",
        "objects.list limit 0 -> Err(Error::Invalid",
        "objects.update-meta not an object -> Err(Error::Invalid",
        "writer.write 5 MiB -> Err(Error::Invalid",
        "writer.write after commit -> Err(Error::Invalid",
        "writer.commit twice -> Err(Error::Invalid",
    ] {
        assert!(report.contains(expect), "missing {expect:?} in:\n{report}");
    }
    assert!(mem.dir.get("s4.jsonl.gz").is_none());
    assert_eq!(live_size(&mem, "s4").map(|s| s > 0), Some(true));
}

#[test]
fn a_sweep_whose_plan_traps_fails_cleanly_and_the_next_sweep_runs() {
    let mem = mem_stores();
    mem.agent_session("t1", 30, 10);
    let a = hostile_archiver(&mem, r#"{"mode":"trap"}"#);
    let err = a.sweep(|_| {}).unwrap_err();
    assert!(
        matches!(err, ArchiverError::Trap { op: Op::Plan, .. }),
        "{err:?}"
    );
    assert!(live_size(&mem, "t1").is_some());
    a.set_config(r#"{"mode":"ok"}"#).unwrap();
    let s = a.sweep(|_| {}).unwrap().value;
    assert!(s.failed.is_empty(), "{:?}", s.failed);
}
