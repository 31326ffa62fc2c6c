//! The archive directory keeps its hands off what is not its own and off what it cannot read
//! safely: a user's files are never listed, created or removed; a FIFO named like an archive is
//! refused without blocking; everything it creates is owner-only; and a moved directory is noticed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::channel;
use std::time::Duration;

use session_archiver::archive_dir::fs::FsArchiveDir;
use session_archiver::archive_dir::memory::MemoryArchiveDir;
use session_archiver::archive_dir::{archive_id, ArchiveDir};
use session_archiver::data_dir::DataDirPaths;
use session_archiver::locks::SessionLocks;
use session_archiver::store::StoreError;

/// Names a user might keep next to the archives; none is `<session id>.jsonl.gz`.
const FOREIGN: [&str; 6] = [
    "notes-2026.tar.gz",
    "README",
    "backup.gz",
    "x.jsonl",
    "session.jsonl.gz.bak",
    "old.JSONL.GZ",
];

fn commit(dir: &dyn ArchiveDir, name: &str, bytes: &[u8]) {
    let mut w = dir.create(name).unwrap();
    w.write(bytes).unwrap();
    w.commit().unwrap();
}

fn listed(dir: &dyn ArchiveDir) -> Vec<String> {
    dir.list().unwrap().into_iter().map(|e| e.name).collect()
}

fn is_invalid_name<T>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::InvalidName(m)) if m.contains("not an archive name"))
}

/// Lists, creates and removes only archive names; `plant` puts a user's file in the directory
/// and `exists` says whether it is still there.
fn foreign_files_are_never_listed_created_or_removed(
    dir: &dyn ArchiveDir,
    plant: &dyn Fn(&str, &[u8]),
    exists: &dyn Fn(&str) -> Option<Vec<u8>>,
) {
    for name in FOREIGN {
        plant(name, name.as_bytes());
    }
    commit(dir, "s1.jsonl.gz", b"one");
    commit(dir, "0d5c6a4e-1111-4c1e-9a7b-2f0e5d6c7b8a.jsonl.gz", b"two");

    assert_eq!(
        listed(dir),
        [
            "0d5c6a4e-1111-4c1e-9a7b-2f0e5d6c7b8a.jsonl.gz",
            "s1.jsonl.gz"
        ]
    );
    assert_eq!(dir.foreign_count().unwrap(), FOREIGN.len() as u64);
    for name in FOREIGN {
        assert!(is_invalid_name(dir.remove(name)), "remove {name}");
        assert!(is_invalid_name(dir.create(name).map(drop)), "create {name}");
        assert!(is_invalid_name(dir.open(name).map(drop)), "open {name}");
        assert!(is_invalid_name(dir.stat(name)), "stat {name}");
        assert_eq!(exists(name).as_deref(), Some(name.as_bytes()), "{name}");
    }
    // Archives are still ordinary: removable, and the count of foreign files does not move.
    dir.remove("s1.jsonl.gz").unwrap();
    assert_eq!(dir.foreign_count().unwrap(), FOREIGN.len() as u64);
}

#[test]
fn foreign_files_in_the_disk_archive_dir_are_never_listed_created_or_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archives");
    let dir = FsArchiveDir::open(&root).unwrap();
    foreign_files_are_never_listed_created_or_removed(
        &dir,
        &|name, bytes| std::fs::write(root.join(name), bytes).unwrap(),
        &|name| std::fs::read(root.join(name)).ok(),
    );
    // A subdirectory is not an archive either, and is counted as the user's.
    std::fs::create_dir(root.join("old")).unwrap();
    assert_eq!(dir.foreign_count().unwrap(), FOREIGN.len() as u64 + 1);
    assert!(root.join("old").is_dir());
}

#[test]
fn foreign_files_in_the_memory_archive_dir_are_never_listed_created_or_removed() {
    let dir = MemoryArchiveDir::new();
    foreign_files_are_never_listed_created_or_removed(
        &dir,
        &|name, bytes| dir.put(name, bytes, 1).unwrap(),
        &|name| dir.get(name),
    );
}

#[test]
fn only_session_id_dot_jsonl_gz_is_an_archive_name() {
    assert_eq!(archive_id("s1.jsonl.gz"), Some("s1"));
    assert_eq!(archive_id("a.b-c_d.jsonl.gz"), Some("a.b-c_d"));
    for name in [
        ".jsonl.gz",
        "..jsonl.gz",
        ".hidden.jsonl.gz",
        "notes-2026.tar.gz",
        "s1.jsonl",
        "s1.JSONL.GZ",
        "a b.jsonl.gz",
        "a/b.jsonl.gz",
    ] {
        assert_eq!(archive_id(name), None, "{name}");
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Every entry under `root` (recursively), with its mode.
fn modes_under(root: &Path) -> Vec<(String, bool, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let is_dir = path.is_dir();
        out.push((path.display().to_string(), is_dir, mode(&path)));
        if is_dir {
            out.extend(modes_under(&path));
        }
    }
    out
}

#[test]
fn the_archive_directory_and_every_file_in_it_are_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = DataDirPaths::under(tmp.path().join("data"));
    let stores = paths.open(false).unwrap();
    assert_eq!(mode(&paths.archive_dir), 0o700, "archive directory");

    // A writer's temp file, before commit.
    let mut w = stores.archive_dir.create("s1.jsonl.gz").unwrap();
    w.write(b"transcript with a token").unwrap();
    let temps: Vec<_> = std::fs::read_dir(&paths.archive_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .collect();
    assert_eq!(temps.len(), 1, "{temps:?}");
    assert_eq!(mode(&temps[0]), 0o600, "temp file");
    w.commit().unwrap();
    assert_eq!(
        mode(&paths.archive_dir.join("s1.jsonl.gz")),
        0o600,
        "archive"
    );

    // Lock directory and lock files.
    let locks = paths.locks();
    drop(locks.lock("s1").unwrap());
    drop(locks.lock("../odd id").unwrap());
    assert_eq!(mode(&paths.locks_dir()), 0o700, "lock directory");

    let all = modes_under(&paths.archive_dir);
    assert!(all.len() >= 4, "{all:?}");
    for (path, is_dir, m) in all {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(m, want, "{path} is {m:o}");
    }
}

#[test]
fn a_lock_directory_made_by_the_locks_alone_is_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archives/.locks");
    let locks = SessionLocks::files(&dir);
    drop(locks.lock("s1").unwrap());
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&tmp.path().join("archives")), 0o700);
    assert_eq!(mode(&dir.join("s1.lock")), 0o600);
}

/// Runs `f` on a thread; fails the test instead of hanging if it does not return (the watchdog
/// is generous: it only turns a hang into a failure, it measures nothing).
fn without_hanging<T: Send + 'static>(
    what: &str,
    unblock: impl FnOnce(),
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(v) => v,
        Err(_) => {
            unblock();
            panic!("{what} blocked");
        }
    }
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo")
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

#[test]
fn a_fifo_named_like_an_archive_is_refused_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archives");
    let dir = FsArchiveDir::open(&root).unwrap();
    let fifo = root.join("s1.jsonl.gz");
    mkfifo(&fifo);

    let reader = dir.clone();
    let unblock_path = fifo.clone();
    let result = without_hanging(
        "opening a FIFO named like an archive",
        move || {
            // A writer lets a blocked open return, so the thread does not outlive the test.
            let _ = std::fs::OpenOptions::new().write(true).open(&unblock_path);
        },
        move || reader.open("s1.jsonl.gz").map(|r| r.size()),
    );
    match result {
        Err(StoreError::Io(m)) => {
            assert!(m.contains("s1.jsonl.gz") && m.contains("FIFO"), "{m}")
        }
        other => panic!("a FIFO opened as an archive: {other:?}"),
    }
    // Neither listed nor stat'ed as an archive; counted among the files left alone.
    assert_eq!(dir.list().unwrap(), []);
    assert!(matches!(dir.stat("s1.jsonl.gz"), Err(StoreError::Io(_))));
    assert_eq!(dir.foreign_count().unwrap(), 1);
}

#[test]
fn a_symlink_named_like_an_archive_is_not_opened_even_inside_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archives");
    let dir = FsArchiveDir::open(&root).unwrap();
    commit(&dir, "real.jsonl.gz", b"bytes");
    std::os::unix::fs::symlink("real.jsonl.gz", root.join("link.jsonl.gz")).unwrap();
    match dir.open("link.jsonl.gz").map(|r| r.size()) {
        Err(StoreError::Io(m)) => assert!(m.contains("symlink"), "{m}"),
        other => panic!("a symlink opened as an archive: {other:?}"),
    }
    assert_eq!(listed(&dir), ["real.jsonl.gz"]);
}

#[test]
fn a_moved_or_replaced_archive_directory_is_noticed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archives");
    let dir = FsArchiveDir::open(&root).unwrap();
    dir.check_still_at_path().unwrap();

    let moved = tmp.path().join("archives.moved");
    std::fs::rename(&root, &moved).unwrap();
    match dir.check_still_at_path() {
        Err(StoreError::Io(m)) => assert!(m.contains("archives") && m.contains("moved"), "{m}"),
        other => panic!("a moved directory went unnoticed: {other:?}"),
    }

    // Something else at the old path is not the directory either.
    std::fs::create_dir(&root).unwrap();
    assert!(matches!(dir.check_still_at_path(), Err(StoreError::Io(_))));

    // Back in place: the same directory again.
    std::fs::remove_dir(&root).unwrap();
    std::fs::rename(&moved, &root).unwrap();
    dir.check_still_at_path().unwrap();
}
