//! Hostile policies on the mock host: the `hostile` component misbehaving in
//! every mode (loop, alloc, trap, trap-mid-archive, bad-args, garbage) in *every* export, over a
//! store holding live and archived sessions. `hostile_policy_limits.rs` checks one export
//! per mode; this file sweeps the whole matrix. Guards, for each (mode, export): the call ends
//! within its limit with a typed error (`Limit`/`Trap`/`Policy`) naming the policy and the
//! operation; every live file, archive and meta value is byte-for-byte unchanged and no temp
//! file is left; and the same archiver then serves correctly (the `ok` mode answers, and after
//! a swap to `inactivity` a real archive → export → restore round trip works).

mod reliability;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reliability::{archive_name, gunzip};
use session_archiver::archive_dir::ArchiveDir;
use session_archiver::archiver::Archiver;
use session_archiver::error::{ArchiverError, LimitKind, Op};
use session_archiver::policy::LoadedPolicy;
use session_archiver::runtime::{Limits, Runtime};
use session_archiver::store::{FileStore, ObjectStore};
use session_archiver_testkit::{policy_path, read_all, runtime_with_limits, MockHost};

const DEADLINE: Duration = Duration::from_secs(2);
const STALL: Duration = Duration::from_millis(500);
const MEMORY: usize = 32 << 20;

/// The tight runtime with `hostile` and `inactivity` loaded into it (once per binary).
fn policies() -> (Arc<Runtime>, LoadedPolicy, LoadedPolicy) {
    static P: OnceLock<(Arc<Runtime>, LoadedPolicy, LoadedPolicy)> = OnceLock::new();
    P.get_or_init(|| {
        let rt = runtime_with_limits(Limits {
            memory_bytes: MEMORY,
            deadline: DEADLINE,
            stall: Some(STALL),
            tick: Duration::from_millis(10),
            ..Limits::default()
        });
        let load = |n: &str| rt.load_file(&policy_path(n)).expect("load policy");
        let (h, i) = (load("hostile"), load("inactivity"));
        (rt, h, i)
    })
    .clone()
}

/// Every export, as the archiver calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    ValidateConfig,
    Archive,
    Restore,
    Export,
    Plan,
    Prune,
    Recover,
}

impl Call {
    const ALL: [Call; 7] = [
        Call::ValidateConfig,
        Call::Archive,
        Call::Restore,
        Call::Export,
        Call::Plan,
        Call::Prune,
        Call::Recover,
    ];

    /// The WIT export name (for the config's `only`).
    fn wit(self) -> &'static str {
        match self {
            Call::ValidateConfig => "validate-config",
            Call::Archive => "archive",
            Call::Restore => "restore",
            Call::Export => "export",
            Call::Plan => "plan",
            Call::Prune => "prune",
            Call::Recover => "recover",
        }
    }

    fn op(self) -> Op {
        match self {
            Call::ValidateConfig => Op::ValidateConfig,
            Call::Archive => Op::Archive,
            Call::Restore => Op::Restore,
            Call::Export => Op::Export,
            Call::Plan => Op::Plan,
            Call::Prune => Op::Prune,
            Call::Recover => Op::Recover,
        }
    }

    /// Calls it; for `export`, also returns the bytes that reached the destination.
    fn call(self, a: &Archiver, config: &str) -> (Result<String, ArchiverError>, Vec<u8>) {
        let mut out = Vec::new();
        let r = match self {
            Call::ValidateConfig => a.set_config(config).map(|s| format!("{:?}", s.value)),
            Call::Archive => a.archive("live").map(|s| format!("{:?}", s.value)),
            Call::Restore => a.restore("archived").map(|s| format!("{:?}", s.value)),
            Call::Export => a
                .export("archived", &mut out)
                .map(|s| format!("{:?}", s.value)),
            Call::Plan => a.plan().map(|s| format!("{:?}", s.value.scanned)),
            Call::Prune => a.prune().map(|s| format!("{:?}", s.value)),
            Call::Recover => a.recover("live").map(|s| format!("{:?}", s.value)),
        };
        (r, out)
    }

    /// The session the call names, if any.
    fn target(self) -> Option<&'static str> {
        match self {
            Call::Archive | Call::Recover => Some("live"),
            Call::Restore | Call::Export => Some("archived"),
            _ => None,
        }
    }
}

/// Everything in the stores, read without recording: meta and version of every object, every
/// live file's bytes, every archive's bytes, and the temp file count.
#[derive(Debug, PartialEq)]
struct Snapshot {
    objects: BTreeMap<String, (String, u64)>,
    files: BTreeMap<(String, String), Vec<u8>>,
    archives: BTreeMap<String, Vec<u8>>,
    temps: usize,
}

fn snapshot(h: &MockHost) -> Snapshot {
    let page = h.objects.inner.list(None, 1000).unwrap();
    Snapshot {
        objects: page
            .objects
            .into_iter()
            .map(|o| {
                let meta = serde_json::Value::Object(o.meta).to_string();
                (o.id, (meta, o.version))
            })
            .collect(),
        files: h
            .files
            .inner
            .list_files()
            .unwrap()
            .into_iter()
            .map(|(z, n, _)| {
                let bytes = read_all(&h.files.inner, &z, &n).unwrap();
                ((z, n), bytes)
            })
            .collect(),
        archives: h
            .archives
            .inner
            .list()
            .unwrap()
            .into_iter()
            .map(|e| {
                let b = h.archives.inner.get(&e.name).unwrap();
                (e.name, b)
            })
            .collect(),
        temps: h.archives.inner.temp_count(),
    }
}

/// A store with a live idle session (`live`) and an archived one (`archived`), archived by the
/// real policy; returns the host and an archiver running `hostile` with `config`.
fn store_with(config: &str) -> (MockHost, Archiver) {
    let (rt, hostile, inactivity) = policies();
    let h = MockHost::new();
    h.session("live").idle_days(30).lines(20).create();
    h.session("archived").idle_days(30).lines(30).create();
    let setup = h.archiver_with(inactivity, rt.clone(), "{}");
    setup.archive("archived").expect("archive fixture");
    let a = h.archiver_with(hostile, rt, r#"{"mode":"ok"}"#);
    // Unchecked: in these modes `validate-config` itself misbehaves.
    a.set_config_unchecked(config);
    (h, a)
}

/// After a misbehaving call: the same archiver answers in `ok` mode, then (swapped to
/// `inactivity`) archives, exports and restores a session correctly.
fn serves_next(h: &MockHost, a: &Archiver, context: &str) {
    a.set_config(r#"{"mode":"ok"}"#)
        .unwrap_or_else(|e| panic!("{context}: ok mode refused: {e}"));
    a.plan()
        .unwrap_or_else(|e| panic!("{context}: ok-mode plan failed: {e}"));
    let (_, _, inactivity) = policies();
    a.set_config_unchecked("{}");
    a.swap_loaded(inactivity)
        .unwrap_or_else(|e| panic!("{context}: swap to inactivity failed: {e}"));
    let original = h.output("live").expect("live output");
    let out = a
        .archive("live")
        .unwrap_or_else(|e| panic!("{context}: archive after the bad call failed: {e}"));
    assert_eq!(out.value.raw_bytes, original.len() as u64, "{context}");
    assert_eq!(
        gunzip(&h.archive_bytes(&archive_name("live")).unwrap()).unwrap(),
        original,
        "{context}: the archive does not hold the session's bytes"
    );
    let mut exported = Vec::new();
    a.export("live", &mut exported)
        .unwrap_or_else(|e| panic!("{context}: export failed: {e}"));
    assert_eq!(exported, original, "{context}: export differs");
    a.restore("live")
        .unwrap_or_else(|e| panic!("{context}: restore failed: {e}"));
    assert_eq!(
        h.output("live"),
        Some(original),
        "{context}: restore differs"
    );
}

/// What a mode must end in.
fn assert_typed(mode: &str, export: Call, err: &ArchiverError, elapsed: Duration) {
    let context = format!("mode {mode} in {}", export.wit());
    let msg = err.to_string();
    assert!(
        msg.contains("hostile"),
        "{context}: {msg} does not name the policy"
    );
    assert!(
        msg.contains(&export.op().to_string()),
        "{context}: {msg} does not name the operation"
    );
    if let Some(t) = export.target() {
        assert!(
            msg.contains(t),
            "{context}: {msg} does not name the session {t}"
        );
    }
    let op_of = |e: &ArchiverError| match e {
        ArchiverError::Limit { op, .. }
        | ArchiverError::Trap { op, .. }
        | ArchiverError::Policy { op, .. }
        | ArchiverError::Refused { op, .. } => Some(*op),
        _ => None,
    };
    assert_eq!(op_of(err), Some(export.op()), "{context}: {err:?}");
    match mode {
        "loop" => {
            assert!(
                matches!(
                    err,
                    ArchiverError::Limit {
                        which: LimitKind::Deadline,
                        ..
                    }
                ),
                "{context}: {err:?}"
            );
            // The stall rule (500 ms) stops it long before the 2 s deadline.
            assert!(elapsed < DEADLINE, "{context}: took {elapsed:?}");
        }
        "alloc" => assert!(
            matches!(
                err,
                ArchiverError::Limit {
                    which: LimitKind::Memory,
                    ..
                }
            ),
            "{context}: {err:?}"
        ),
        "trap" => {
            assert!(
                matches!(err, ArchiverError::Trap { .. }),
                "{context}: {err:?}"
            )
        }
        // Both also reach outside the operation's scope (another session's zone, an archive
        // name that is not the session's, a write in a read-only plan): the host refuses that
        // call first, which ends the operation with a typed refusal instead.
        "trap-mid-archive" => {
            assert!(
                matches!(
                    err,
                    ArchiverError::Trap { .. } | ArchiverError::Refused { .. }
                ),
                "{context}: {err:?}"
            )
        }
        "bad-args" => assert!(
            matches!(
                err.policy_error(),
                Some(session_archiver::error::PolicyError::Invalid(r)) if r.starts_with("bad-args")
            ) || matches!(err, ArchiverError::Refused { .. }),
            "{context}: {err:?}"
        ),
        other => unreachable!("{other}"),
    }
    assert!(
        elapsed < DEADLINE + Duration::from_secs(1),
        "{context}: took {elapsed:?}"
    );
}

/// Runs `mode` confined to each export in turn on a fresh store.
fn misbehave_everywhere(mode: &str) {
    for export in Call::ALL {
        let config = format!(r#"{{"mode":"{mode}","only":"{}"}}"#, export.wit());
        let (h, a) = store_with(&config);
        let before = snapshot(&h);
        let start = Instant::now();
        let (result, out) = export.call(&a, &config);
        let elapsed = start.elapsed();
        let context = format!("mode {mode} in {}", export.wit());
        let err = match result {
            Ok(v) => panic!("{context}: succeeded with {v}"),
            Err(e) => e,
        };
        assert_typed(mode, export, &err, elapsed);
        assert!(
            out.is_empty(),
            "{context}: {} bytes reached the export destination",
            out.len()
        );
        assert_eq!(snapshot(&h), before, "{context}: the stores changed");
        if export == Call::ValidateConfig {
            assert_eq!(
                a.config(),
                config,
                "{context}: a refused config replaced the old one"
            );
        }
        serves_next(&h, &a, &context);
    }
}

#[test]
fn a_policy_that_loops_in_any_export_is_stopped_by_the_stall_rule_and_changes_nothing() {
    misbehave_everywhere("loop");
}

#[test]
fn a_policy_that_allocates_without_bound_in_any_export_hits_the_memory_cap_and_changes_nothing() {
    misbehave_everywhere("alloc");
}

#[test]
fn a_policy_that_traps_in_any_export_is_a_trap_naming_it_and_changes_nothing() {
    misbehave_everywhere("trap");
}

#[test]
fn a_policy_that_traps_mid_archive_in_any_export_leaves_no_archive_change_and_no_temp_file() {
    // In `restore` and `export` the half-written archive has the name of an existing one: that
    // archive must be byte-identical afterwards.
    misbehave_everywhere("trap-mid-archive");
}

#[test]
fn a_policy_abusing_import_arguments_in_any_export_gets_errors_and_changes_nothing() {
    misbehave_everywhere("bad-args");
}

#[test]
fn a_policy_looping_with_the_stall_rule_off_is_stopped_by_the_deadline() {
    let rt = runtime_with_limits(Limits {
        memory_bytes: MEMORY,
        deadline: Duration::from_millis(800),
        stall: None,
        tick: Duration::from_millis(10),
        ..Limits::default()
    });
    let hostile = rt.load_file(&policy_path("hostile")).unwrap();
    let h = MockHost::new();
    h.session("live").idle_days(30).lines(5).create();
    let a = h.archiver_with(hostile, rt, r#"{"mode":"ok"}"#);
    a.set_config_unchecked(r#"{"mode":"loop","only":"archive"}"#);
    let before = snapshot(&h);
    let start = Instant::now();
    let err = a.archive("live").unwrap_err();
    let elapsed = start.elapsed();
    assert!(
        matches!(
            err,
            ArchiverError::Limit {
                which: LimitKind::Deadline,
                op: Op::Archive,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("deadline"), "{err}");
    assert!(
        elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(3),
        "took {elapsed:?}"
    );
    assert_eq!(snapshot(&h), before);
}

#[test]
fn garbage_results_change_nothing_and_the_next_call_is_served() {
    for export in Call::ALL {
        let config = format!(r#"{{"mode":"garbage","only":"{}"}}"#, export.wit());
        let (h, a) = store_with(&config);
        let before = snapshot(&h);
        let (result, out) = export.call(&a, &config);
        let context = format!("garbage from {}", export.wit());
        match export {
            // `validate-config` returning text that is not JSON as the "normalised" config: the
            // host passes it through; the config in force stays what the caller gave.
            Call::ValidateConfig => {
                let _ = result;
                assert_eq!(a.config(), config, "{context}");
            }
            Call::Export => {
                // The policy claims u64::MAX bytes but wrote none: the destination got nothing.
                // (What the host reports about it: see the next test.)
                assert!(out.is_empty(), "{context}");
            }
            _ => {
                assert!(result.is_ok(), "{context}: {result:?}");
            }
        }
        assert_eq!(snapshot(&h), before, "{context}: the stores changed");
        serves_next(&h, &a, &context);
    }
}

#[test]
fn an_export_claiming_bytes_it_never_wrote_is_not_reported_as_written() {
    // The host counts what reached the destination; a policy's own count must not override it.
    let config = r#"{"mode":"garbage","only":"export"}"#;
    let (_h, a) = store_with(config);
    let mut out = Vec::new();
    match a.export("archived", &mut out) {
        Err(e) => assert!(e.to_string().contains("hostile"), "{e}"),
        Ok(served) => assert_eq!(
            served.value.bytes,
            out.len() as u64,
            "the host reported the policy's claim of {} bytes, but {} reached the destination",
            served.value.bytes,
            out.len()
        ),
    }
}

#[test]
fn the_same_archiver_survives_every_mode_in_a_row() {
    // One archiver, one store: every kind of misbehaviour back to back, then real work.
    let (h, a) = store_with(r#"{"mode":"ok"}"#);
    let before = snapshot(&h);
    for mode in [
        "trap",
        "alloc",
        "loop",
        "trap-mid-archive",
        "bad-args",
        "garbage",
    ] {
        a.set_config_unchecked(&format!(r#"{{"mode":"{mode}","only":"archive"}}"#));
        let r = a.archive("live");
        assert!(r.is_err() || mode == "garbage", "mode {mode}: {r:?}");
        assert_eq!(snapshot(&h), before, "mode {mode}: the stores changed");
    }
    serves_next(&h, &a, "after every mode in a row");
}
