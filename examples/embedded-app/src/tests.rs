//! The cache behaves like the app's: stat from the cache, appends at the cached size, flushes
//! by parts then size; and the archiver's calls keep that cache coherent.

use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use session_archiver::store::{FileOpts, FileStore, StoreError};

use crate::files::{AppFiles, PART_SIZE};
use crate::AppClock;

fn open() -> (tempfile::TempDir, Arc<AppFiles>, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("filestore.db");
    let files = AppFiles::open(&path, Arc::new(AppClock::default())).unwrap();
    (dir, files, path)
}

/// Another connection's view of the database: (size in the header, every part's length).
fn on_disk(path: &std::path::Path, zone: &str, name: &str) -> (Option<i64>, Vec<(i64, usize)>) {
    let conn = Connection::open(path).unwrap();
    let size = conn
        .query_row(
            "SELECT size FROM db_wave_file WHERE zoneid = ?1 AND name = ?2",
            params![zone, name],
            |r| r.get(0),
        )
        .optional()
        .unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT partidx, length(data) FROM db_file_data WHERE zoneid = ?1 AND name = ?2
             ORDER BY partidx",
        )
        .unwrap();
    let parts = stmt
        .query_map(params![zone, name], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<(i64, usize)>, _>>()
        .unwrap();
    (size, parts)
}

#[test]
fn stat_comes_from_the_cache_and_appends_go_at_the_cached_size() {
    let (_dir, files, path) = open();
    files.create("s", "output", FileOpts::default()).unwrap();
    files.append_buffered("s", "output", b"hello\n").unwrap();
    assert_eq!(files.stat("s", "output").unwrap().unwrap().size, 6);
    assert_eq!(
        on_disk(&path, "s", "output"),
        (Some(0), vec![]),
        "a buffered append is not in the database before the flush"
    );
    files.flush_all().unwrap();
    assert_eq!(on_disk(&path, "s", "output"), (Some(6), vec![(0, 6)]));

    // Another process changes the header underneath: the app does not see it.
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE db_wave_file SET size = 0", [])
        .unwrap();
    assert_eq!(
        files.stat("s", "output").unwrap().unwrap().size,
        6,
        "stat is answered from the cache"
    );
    files.append_buffered("s", "output", b"world\n").unwrap();
    files.flush_all().unwrap();
    assert_eq!(
        on_disk(&path, "s", "output"),
        (Some(12), vec![(0, 12)]),
        "the append went at the cached size and the flush overwrote the other writer's size"
    );
    assert_eq!(
        files.read("s", "output", 0, 100).unwrap(),
        b"hello\nworld\n"
    );
}

#[test]
fn a_flush_writes_the_parts_then_the_size_in_separate_statements() {
    let (_dir, files, path) = open();
    files.create("s", "output", FileOpts::default()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (seen2, path2) = (seen.clone(), path.clone());
    files.set_flush_hook(Some(Box::new(move |zone, name| {
        seen2.lock().unwrap().push(on_disk(&path2, zone, name));
    })));
    let data = vec![b'x'; PART_SIZE as usize + 100];
    files.append_buffered("s", "output", &data).unwrap();
    files.flush_all().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(Some(0), vec![(0, PART_SIZE as usize), (1, 100)])],
        "between the statements another reader sees the new parts under the old size"
    );
    assert_eq!(
        on_disk(&path, "s", "output"),
        (
            Some(PART_SIZE as i64 + 100),
            vec![(0, PART_SIZE as usize), (1, 100)]
        )
    );
    assert!(files.flushes() >= 1);
}

#[test]
fn the_archivers_conditional_calls_change_the_cache_with_the_database() {
    let (_dir, files, path) = open();
    files.create("s", "output", FileOpts::default()).unwrap();
    files.append_buffered("s", "output", b"one\n").unwrap();
    let before = files.stat("s", "output").unwrap().unwrap();

    // The app appends after the archiver's stat: the delete must refuse and change nothing.
    files.append_buffered("s", "output", b"two\n").unwrap();
    assert!(matches!(
        files.delete_if_unchanged("s", "output", &before),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(files.read("s", "output", 0, 100).unwrap(), b"one\ntwo\n");

    // Deleted through the app's store: the app sees the file gone at once, flushed or not.
    let now = files.stat("s", "output").unwrap().unwrap();
    files.delete_if_unchanged("s", "output", &now).unwrap();
    assert_eq!(files.stat("s", "output").unwrap(), None);
    assert!(matches!(
        files.append_buffered("s", "output", b"three\n"),
        Err(StoreError::NotFound(_))
    ));
    files.flush_all().unwrap();
    assert_eq!(
        on_disk(&path, "s", "output"),
        (None, vec![]),
        "no orphan parts"
    );

    // A restore renames its scratch file over a new output the app started meanwhile.
    files.create("s", "output", FileOpts::default()).unwrap();
    files.append_buffered("s", "output", b"three\n").unwrap();
    let live = files.stat("s", "output").unwrap().unwrap();
    files.create("s", "outnew", FileOpts::default()).unwrap();
    files.append("s", "outnew", b"one\ntwo\nthree\n").unwrap();
    files
        .rename_if_unchanged("s", "outnew", "output", Some(&live))
        .unwrap();
    assert_eq!(files.stat("s", "outnew").unwrap(), None);
    assert_eq!(files.stat("s", "output").unwrap().unwrap().size, 14);
    files.append_buffered("s", "output", b"four\n").unwrap();
    files.flush_all().unwrap();
    assert_eq!(
        files.read("s", "output", 0, 100).unwrap(),
        b"one\ntwo\nthree\nfour\n",
        "the app's next append goes after the renamed bytes"
    );
    assert_eq!(on_disk(&path, "s", "output"), (Some(19), vec![(0, 19)]));
}
