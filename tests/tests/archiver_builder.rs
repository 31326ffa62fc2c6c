//! `Archiver::builder()`, the way an app embeds the archiver: its own stores as trait objects,
//! an archive directory, a policy from bytes or a file, its config, limits, workers and locks.

use std::sync::Arc;
use std::time::Duration;

use session_archiver::builder::BuildError;
use session_archiver::error::{ArchiverError, PolicyError};
use session_archiver::locks::SessionLocks;
use session_archiver::runtime::{CacheSetting, Limits};
use session_archiver::store::{FileStore, ObjectStore, OUTPUT_FILE};
use session_archiver::{Archiver, ArchiverBuilder};
use session_archiver_testkit::mem::mem_stores;
use session_archiver_testkit::{policy_bytes, policy_path, test_cache_dir as cache_dir};

#[test]
fn a_built_archiver_archives_through_the_stores_it_was_given() {
    let mem = mem_stores();
    let lines = mem.agent_session("s1", 10, 50);
    let dir = tempfile::tempdir().unwrap();
    let objects: Arc<dyn ObjectStore> = Arc::new(mem.objects.clone());
    let files: Arc<dyn FileStore> = mem.files.clone();
    let limits = Limits {
        memory_bytes: 64 << 20,
        deadline: Duration::from_secs(60),
        ..Limits::default()
    };
    let archiver = Archiver::builder()
        .objects(objects)
        .files(files)
        .archive_dir_path(dir.path().join("archives"))
        .policy_bytes(policy_bytes("inactivity"), "app-bundled inactivity")
        .config(r#"{"inactive_days": 3}"#)
        .limits(limits.clone())
        .cache(CacheSetting::Dir(cache_dir()))
        .workers(3)
        .build()
        .expect("build the archiver");
    assert_eq!(archiver.runtime().limits(), &limits);
    assert_eq!(archiver.workers(), 3);
    assert_eq!(archiver.config(), r#"{"inactive_days": 3}"#);
    assert!(
        matches!(archiver.locks(), SessionLocks::Files(p) if *p == dir.path().join("archives/.locks")),
        "an archive directory given as a path gets lock files beside the CLI's: {:?}",
        archiver.locks()
    );

    let outcome = archiver.archive("s1").unwrap().value;
    assert_eq!(outcome.raw_bytes, lines.len() as u64);
    assert!(dir.path().join("archives/s1.jsonl.gz").is_file());
    assert_eq!(mem.files.stat("s1", OUTPUT_FILE).unwrap(), None);
    let mut out = Vec::new();
    archiver.export("s1", &mut out).unwrap();
    assert_eq!(out, lines);
}

#[test]
fn a_config_the_policy_rejects_fails_the_build_with_the_policys_reason() {
    let mem = mem_stores();
    let err = ArchiverBuilder::new()
        .stores(mem.stores.clone())
        .policy_file(policy_path("inactivity"))
        .cache(CacheSetting::Dir(cache_dir()))
        .config(r#"{"inactive_days": 0}"#)
        .build()
        .err()
        .expect("inactive_days 0 is refused");
    assert!(
        matches!(
            &err,
            BuildError::Archiver(ArchiverError::Policy {
                error: PolicyError::InvalidConfig(_),
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("inactive_days"), "{err}");
}

#[test]
fn a_missing_policy_file_fails_the_build_naming_the_path() {
    let mem = mem_stores();
    let err = Archiver::builder()
        .stores(mem.stores.clone())
        .policy_file("/nonexistent/policy.wasm")
        .cache(CacheSetting::Disabled)
        .build()
        .err()
        .expect("no such file");
    assert!(
        matches!(&err, BuildError::Archiver(ArchiverError::Load { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("/nonexistent/policy.wasm"),
        "{err}"
    );
}
