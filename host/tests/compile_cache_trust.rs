//! The compiled-component cache is native code: a cache directory writable by others is not
//! used (the policy still loads, compiled), and a planted symlink or foreign-writable file at an
//! entry's name is neither run nor followed; it is replaced by a private file of our own.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use session_archiver::runtime::{CacheSetting, Runtime, RuntimeOptions};
use session_archiver_testkit::components::*;

fn runtime_caching_in(dir: &Path) -> Runtime {
    Runtime::new(RuntimeOptions {
        cache: CacheSetting::Dir(dir.to_path_buf()),
        ..Default::default()
    })
    .expect("runtime")
}

/// A small valid policy, unique per `tag` so each test has its own cache entry.
fn policy(tag: &str) -> Vec<u8> {
    with_custom_section(&policy_with_info_body(INFO_OK), tag)
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    v.sort();
    v
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Loads once in a good directory and returns the entry's path and its bytes.
fn cached_entry(dir: &Path, bytes: &[u8]) -> (PathBuf, Vec<u8>) {
    let rt = runtime_caching_in(dir);
    rt.load_bytes(bytes, "p.wasm").expect("load");
    let found = entries(dir);
    assert_eq!(found.len(), 1, "{found:?}");
    let data = std::fs::read(&found[0]).expect("read entry");
    (found[0].clone(), data)
}

#[test]
fn a_cache_entry_is_written_private_to_its_owner_and_served_next_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let bytes = policy("private");
    let (entry, _) = cached_entry(&dir, &bytes);
    let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    let rt = runtime_caching_in(&dir);
    assert!(rt.load_bytes(&bytes, "p.wasm").unwrap().from_cache);
    assert_eq!(rt.cache_stats().hits, 1);
}

#[test]
fn a_world_writable_cache_directory_is_not_used_and_the_policy_still_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let bytes = policy("world-writable");
    let (entry, good) = cached_entry(&dir, &bytes);
    chmod(&dir, 0o777);
    let rt = runtime_caching_in(&dir);
    for _ in 0..2 {
        let p = rt.load_bytes(&bytes, "p.wasm").expect("loads compiled");
        assert!(!p.from_cache);
        assert_eq!(p.info.name, "wat");
    }
    let stats = rt.cache_stats();
    assert_eq!((stats.hits, stats.compiles), (0, 2));
    // Nothing was written there either.
    assert_eq!(entries(&dir), vec![entry.clone()]);
    assert_eq!(std::fs::read(&entry).unwrap(), good);
    // Made private again, it is used.
    chmod(&dir, 0o700);
    assert!(rt.load_bytes(&bytes, "p.wasm").unwrap().from_cache);
}

#[test]
fn a_group_writable_cache_directory_is_not_used() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let bytes = policy("group-writable");
    cached_entry(&dir, &bytes);
    chmod(&dir, 0o770);
    let rt = runtime_caching_in(&dir);
    assert!(!rt.load_bytes(&bytes, "p.wasm").unwrap().from_cache);
}

#[test]
fn a_symlink_planted_at_an_entry_name_is_neither_run_nor_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let bytes = policy("symlink");
    let (entry, good) = cached_entry(&dir, &bytes);
    // The symlink points at a valid compiled entry elsewhere (what an attacker would plant,
    // with their own code): reading through it would run it.
    let elsewhere = tmp.path().join("elsewhere.cwasm");
    std::fs::write(&elsewhere, &good).unwrap();
    chmod(&elsewhere, 0o600);
    std::fs::remove_file(&entry).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
    let rt = runtime_caching_in(&dir);
    let p = rt.load_bytes(&bytes, "p.wasm").expect("loads compiled");
    assert!(!p.from_cache, "the symlinked entry was used");
    // The link was replaced by a regular private file; its target was not written through.
    let meta = std::fs::symlink_metadata(&entry).unwrap();
    assert!(meta.file_type().is_file(), "{meta:?}");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&elsewhere).unwrap(), good);
}

#[test]
fn a_symlink_to_a_victim_file_at_an_entry_name_does_not_overwrite_the_victim() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o700);
    let bytes = policy("victim");
    // Learn the entry name, then plant a link there to a file the attacker wants clobbered.
    let (entry, _) = cached_entry(&dir, &bytes);
    std::fs::remove_file(&entry).unwrap();
    let victim = tmp.path().join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, &entry).unwrap();
    let rt = runtime_caching_in(&dir);
    assert!(!rt.load_bytes(&bytes, "p.wasm").unwrap().from_cache);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(&entry)
        .unwrap()
        .file_type()
        .is_file());
}

#[test]
fn an_entry_writable_by_others_is_not_run_and_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let bytes = policy("writable-entry");
    let (entry, _) = cached_entry(&dir, &bytes);
    chmod(&entry, 0o666);
    let rt = runtime_caching_in(&dir);
    assert!(!rt.load_bytes(&bytes, "p.wasm").unwrap().from_cache);
    assert_eq!(
        std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The replacement is trusted and served.
    assert!(rt.load_bytes(&bytes, "p.wasm").unwrap().from_cache);
}
