//! The compile cache and hot swap, on hand-made components (no guest toolchain needed).

use std::sync::{Arc, Condvar, Mutex};

use session_archiver::archiver::{Archiver, ArchiverOptions};
use session_archiver::error::ArchiverError;
use session_archiver::runtime::{CacheSetting, Runtime, RuntimeOptions};
use session_archiver::store::Clock;
use session_archiver_testkit::components::*;
use session_archiver_testkit::mem::*;
use session_archiver_testkit::shared_runtime as runtime;

fn runtime_with_cache(cache: CacheSetting) -> Runtime {
    Runtime::new(RuntimeOptions {
        cache,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn a_second_load_of_the_same_bytes_comes_from_the_compile_cache() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = null_policy('1');
    let first = runtime_with_cache(CacheSetting::Dir(dir.path().into()));
    let p1 = first.load_bytes(&bytes, "p.wasm").unwrap();
    assert!(!p1.from_cache);
    assert_eq!(first.cache_stats().compiles, 1);
    // A restart: a new runtime (same engine configuration) reuses the compiled code.
    let second = runtime_with_cache(CacheSetting::Dir(dir.path().into()));
    let p2 = second.load_bytes(&bytes, "p.wasm").unwrap();
    assert!(p2.from_cache);
    assert_eq!(
        (second.cache_stats().hits, second.cache_stats().compiles),
        (1, 0)
    );
    assert_eq!(p1.sha256, p2.sha256);
    assert_eq!(p2.info.name, "wat");
}

#[test]
fn different_bytes_get_different_cache_entries() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_with_cache(CacheSetting::Dir(dir.path().into()));
    rt.load_bytes(&null_policy('1'), "a").unwrap();
    let b = rt.load_bytes(&null_policy('2'), "b").unwrap();
    assert!(!b.from_cache);
    assert_eq!(rt.cache_stats().compiles, 2);
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 2);
}

#[test]
fn a_corrupt_cache_entry_is_recompiled_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = null_policy('1');
    runtime_with_cache(CacheSetting::Dir(dir.path().into()))
        .load_bytes(&bytes, "p")
        .unwrap();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(e.unwrap().path(), b"not a compiled component").unwrap();
    }
    let rt = runtime_with_cache(CacheSetting::Dir(dir.path().into()));
    let p = rt.load_bytes(&bytes, "p").unwrap();
    assert!(!p.from_cache);
    assert_eq!(rt.cache_stats().compiles, 1);
}

#[test]
fn a_disabled_cache_always_compiles() {
    let rt = runtime_with_cache(CacheSetting::Disabled);
    assert!(rt.cache_dir().is_none());
    let bytes = null_policy('1');
    rt.load_bytes(&bytes, "p").unwrap();
    let again = rt.load_bytes(&bytes, "p").unwrap();
    assert!(!again.from_cache);
    assert_eq!(rt.cache_stats().compiles, 2);
}

/// A clock whose first `now_ms` call blocks until released, holding a guest call in flight.
#[derive(Default)]
struct GateClock {
    state: Mutex<(bool, bool)>, // (entered, released)
    cv: Condvar,
}

impl GateClock {
    fn wait_entered(&self) {
        let mut s = self.state.lock().unwrap();
        while !s.0 {
            s = self.cv.wait(s).unwrap();
        }
    }
    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

impl Clock for GateClock {
    fn now_ms(&self) -> i64 {
        let mut s = self.state.lock().unwrap();
        s.0 = true;
        self.cv.notify_all();
        while !s.1 {
            s = self.cv.wait(s).unwrap();
        }
        0
    }
}

fn archiver_with(clock: Arc<dyn Clock>, version: char) -> Archiver {
    let mut mem = mem_stores();
    mem.stores.clock = clock;
    let policy = runtime()
        .load_bytes(&null_policy(version), "v1.wasm")
        .unwrap();
    Archiver::new(mem.stores, runtime(), policy, ArchiverOptions::default()).unwrap()
}

#[test]
fn a_call_in_flight_during_a_swap_finishes_on_the_old_policy_and_new_calls_use_the_new() {
    let gate = Arc::new(GateClock::default());
    let archiver = archiver_with(gate.clone(), '1');
    let old = archiver.current_policy().id();
    let new_policy = runtime().load_bytes(&null_policy('2'), "v2.wasm").unwrap();
    let new = new_policy.id();
    assert_ne!(old.sha256, new.sha256);

    std::thread::scope(|s| {
        let in_flight = s.spawn(|| archiver.plan().unwrap());
        gate.wait_entered(); // the plan is inside the guest, blocked in clock.now-ms
        let swap = archiver.swap_loaded(new_policy).unwrap();
        assert_eq!(
            (swap.old.clone(), swap.new.clone()),
            (old.clone(), new.clone())
        );
        // New calls see the new policy at once, while the old call is still running.
        assert_eq!(archiver.info().policy, new);
        gate.release();
        let served = in_flight.join().unwrap();
        assert_eq!(
            served.policy, old,
            "the in-flight call must finish on the old policy"
        );
    });
    let after = archiver.plan().unwrap();
    assert_eq!(after.policy, new);
    assert_eq!(after.policy.version, "2");
}

#[test]
fn a_failed_swap_keeps_the_old_policy() {
    let archiver = archiver_with(Arc::new(session_archiver::store::SystemClock), '1');
    let old = archiver.current_policy().id();
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>); 4] = [
        ("garbage.wasm", b"garbage".to_vec()),
        ("core.wasm", wat::parse_str("(module)").unwrap()),
        ("other.wasm", wrong_world_component()),
        ("v2.wasm", our_world_component("0.2.0")),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = archiver.swap_policy(&path).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
        assert_eq!(
            archiver.current_policy().id(),
            old,
            "after failed swap to {name}"
        );
        assert_eq!(archiver.plan().unwrap().policy, old);
    }
    let missing = archiver
        .swap_policy(&dir.path().join("missing.wasm"))
        .unwrap_err();
    assert!(matches!(missing, ArchiverError::Load { .. }), "{missing:?}");
    assert_eq!(archiver.current_policy().id(), old);
}

#[test]
fn a_swap_to_a_policy_whose_info_traps_keeps_the_old_policy() {
    let archiver = archiver_with(Arc::new(session_archiver::store::SystemClock), '1');
    let old = archiver.current_policy().id();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trap.wasm");
    std::fs::write(
        &path,
        our_world_component(session_archiver::bindings::WIT_VERSION),
    )
    .unwrap();
    assert!(matches!(
        archiver.swap_policy(&path),
        Err(ArchiverError::Trap { .. })
    ));
    assert_eq!(archiver.current_policy().id(), old);
}

#[test]
fn a_swap_from_a_file_reports_both_policies() {
    let archiver = archiver_with(Arc::new(session_archiver::store::SystemClock), '1');
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.wasm");
    std::fs::write(&path, null_policy('2')).unwrap();
    let swap = archiver.swap_policy(&path).unwrap();
    assert_eq!(
        (swap.old.version.as_str(), swap.new.version.as_str()),
        ("1", "2")
    );
    assert_eq!(
        archiver.current_policy().path.as_deref(),
        Some(path.as_path())
    );
}
