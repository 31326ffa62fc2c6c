//! Sandbox limits on hand-made components: a loop is stopped by the deadline or stall rule, an
//! unbounded allocation by the memory cap, each with an error naming the policy and operation.

use std::time::{Duration, Instant};

use session_archiver::error::{ArchiverError, LimitKind, Op};
use session_archiver_testkit::components::*;
use session_archiver_testkit::{shared_runtime as runtime, tight_runtime};

#[test]
fn a_hand_made_component_with_a_good_info_loads() {
    let p = runtime()
        .load_bytes(&policy_with_info_body(INFO_OK), "wat.wasm")
        .unwrap();
    assert_eq!(p.info.name, "wat");
    assert_eq!(p.info.version, "1");
    assert_eq!(p.sha256.len(), 64);
}

#[test]
fn a_policy_that_loops_is_stopped_by_the_stall_rule() {
    let rt = tight_runtime(64 << 20, 60_000, Some(300));
    let start = Instant::now();
    let err = rt
        .load_bytes(&policy_with_info_body(INFO_LOOP), "loop.wasm")
        .unwrap_err();
    let elapsed = start.elapsed();
    let ArchiverError::Limit { which, op, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((*which, *op), (LimitKind::Deadline, Op::Info));
    assert!(err.to_string().contains("no host call"), "{err}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn a_policy_that_loops_is_stopped_by_the_deadline_when_the_stall_rule_is_off() {
    let rt = tight_runtime(64 << 20, 300, None);
    let start = Instant::now();
    let err = rt
        .load_bytes(&policy_with_info_body(INFO_LOOP), "loop.wasm")
        .unwrap_err();
    let ArchiverError::Limit { which, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*which, LimitKind::Deadline);
    assert!(err.to_string().contains("deadline"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_policy_that_allocates_without_bound_hits_the_memory_cap() {
    let rt = tight_runtime(8 << 20, 60_000, None);
    let err = rt
        .load_bytes(&policy_with_info_body(INFO_ALLOC), "alloc.wasm")
        .unwrap_err();
    let ArchiverError::Limit {
        which, op, policy, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((*which, *op), (LimitKind::Memory, Op::Info));
    assert_eq!(policy, "alloc.wasm");
    assert!(err.to_string().contains("memory"), "{err}");
}

#[test]
fn the_runtime_keeps_serving_after_a_policy_hit_a_limit() {
    let rt = tight_runtime(8 << 20, 300, Some(200));
    assert!(rt
        .load_bytes(&policy_with_info_body(INFO_LOOP), "loop.wasm")
        .is_err());
    assert!(rt
        .load_bytes(&policy_with_info_body(INFO_ALLOC), "alloc.wasm")
        .is_err());
    let ok = rt
        .load_bytes(&policy_with_info_body(INFO_OK), "ok.wasm")
        .unwrap();
    assert_eq!(ok.info.name, "wat");
}
