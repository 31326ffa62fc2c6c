//! The file store contract: each generic test runs against the SQLite store (`filestore.db`,
//! with a clock that stands still) and the in-memory one, so the mock host used by the policy
//! tests behaves like the real store.

#[macro_use]
mod store_support;

use serde_json::json;
use session_archiver::store::memory::MemoryFiles;
use session_archiver::store::sqlite_files::SqliteFiles;
use session_archiver::store::{FileOpts, FileStat, FileStore, StoreError, MAX_CHUNK};
use store_support::{frozen, meta, pattern, PART, T0};
use tempfile::TempDir;

fn sqlite_files() -> (TempDir, Box<dyn FileStore>) {
    let dir = TempDir::new().unwrap();
    let store = SqliteFiles::open_with_clock(dir.path().join("filestore.db"), frozen()).unwrap();
    (dir, Box::new(store))
}

fn memory_files() -> (TempDir, Box<dyn FileStore>) {
    (
        TempDir::new().unwrap(),
        Box::new(MemoryFiles::with_clock(frozen())),
    )
}

/// Every byte still held, read in 100 000-byte ranges from the first held offset.
fn read_all(s: &dyn FileStore, zone: &str, name: &str) -> Vec<u8> {
    let mut off = first_held(s, zone, name);
    let mut out = Vec::new();
    loop {
        let chunk = s.read(zone, name, off, 100_000).unwrap();
        if chunk.is_empty() {
            return out;
        }
        off += chunk.len() as u64;
        out.extend_from_slice(&chunk);
    }
}

fn first_held(s: &dyn FileStore, zone: &str, name: &str) -> u64 {
    let st = s.stat(zone, name).unwrap().unwrap();
    st.circular_max_size
        .map_or(0, |m| st.size.saturating_sub(m))
}

fn create_append_and_ranged_reads_cross_part_boundaries(s: &dyn FileStore) {
    let st = s.create("z1", "output", FileOpts::default()).unwrap();
    assert_eq!(st.size, 0);
    assert_eq!(st.circular_max_size, None);
    assert_eq!(st.created_ms, T0);
    let data = pattern(200_000, 1);
    // Uneven chunks: a 1-byte part start, a chunk ending one short of a part, one spanning two.
    let mut at = 0;
    for len in [
        1,
        PART - 2,
        1,
        70_000,
        3,
        200_000 - (1 + PART - 2 + 1 + 70_000 + 3),
    ] {
        let st = s.append("z1", "output", &data[at..at + len]).unwrap();
        at += len;
        assert_eq!(st.size, at as u64);
    }
    assert_eq!(s.stat("z1", "output").unwrap().unwrap().size, 200_000);
    for (off, len) in [
        (0usize, 10usize),
        (PART - 10, 20),
        (PART, PART),
        (PART - 1, 2 * PART + 2),
        (131_000, 10_000),
        (199_990, 10),
    ] {
        let got = s.read("z1", "output", off as u64, len as u32).unwrap();
        assert_eq!(got, &data[off..off + len], "read({off}, {len})");
    }
    // Short at the end, empty at and past it, empty for len 0.
    assert_eq!(
        s.read("z1", "output", 199_990, 100).unwrap(),
        &data[199_990..]
    );
    assert!(s.read("z1", "output", 200_000, 10).unwrap().is_empty());
    assert!(s.read("z1", "output", 1 << 40, 10).unwrap().is_empty());
    assert!(s.read("z1", "output", 5, 0).unwrap().is_empty());
    assert_eq!(s.read("z1", "output", 0, MAX_CHUNK as u32).unwrap(), data);
    assert!(matches!(
        s.read("z1", "output", 0, MAX_CHUNK as u32 + 1),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.append("z1", "output", &vec![0; MAX_CHUNK + 1]),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.read("z1", "missing", 0, 10),
        Err(StoreError::NotFound(_))
    ));
    // A maximal append lands intact after the existing bytes.
    let big = pattern(MAX_CHUNK, 2);
    s.append("z1", "output", &big).unwrap();
    assert_eq!(
        s.read("z1", "output", 200_000 - 7, MAX_CHUNK as u32)
            .unwrap(),
        [&data[200_000 - 7..], &big[..MAX_CHUNK - 7]].concat()
    );
}

fn a_circular_file_reads_its_last_max_size_bytes_in_order(s: &dyn FileStore) {
    // 100 000 rounds up to two whole parts, as the app does.
    let st = s
        .create(
            "z1",
            "ring",
            FileOpts {
                circular_max_size: Some(100_000),
            },
        )
        .unwrap();
    let max = 2 * PART;
    assert_eq!(st.circular_max_size, Some(max as u64));
    let data = pattern(600_000, 3);
    let mut at = 0;
    for (i, len) in [30_001, 65_536, 1, 99_999, 140_000].into_iter().enumerate() {
        s.append("z1", "ring", &data[at..at + len]).unwrap();
        at += len;
        let held = &data[at.saturating_sub(max)..at];
        assert_eq!(read_all(s, "z1", "ring"), held, "after append {i}");
    }
    // One append longer than the whole ring keeps only its tail.
    let rest = &data[at..];
    assert!(rest.len() > max);
    let st = s.append("z1", "ring", rest).unwrap();
    assert_eq!(st.size, 600_000);
    let held = &data[600_000 - max..];
    // An offset that has fallen out of the ring is a conflict, never a silent later start.
    let first = 600_000 - max as u64;
    for gone in [0, first - 5, first - 1] {
        assert!(
            matches!(s.read("z1", "ring", gone, 10), Err(StoreError::Conflict(_))),
            "read at {gone}"
        );
    }
    assert_eq!(s.read("z1", "ring", first, 1_000_000).unwrap(), held);
    assert_eq!(s.read("z1", "ring", first, 10).unwrap(), &held[..10]);
    assert_eq!(
        s.read("z1", "ring", 550_000, 20_000).unwrap(),
        &data[550_000..570_000]
    );
    assert_eq!(s.read("z1", "ring", 599_999, 20).unwrap(), &data[599_999..]);
    // Appending after the wrap keeps order across the physical part boundary.
    let more = pattern(70_000, 4);
    s.append("z1", "ring", &more).unwrap();
    let all = [&data[..], &more[..]].concat();
    assert_eq!(
        s.read("z1", "ring", (all.len() - max) as u64, 1_000_000)
            .unwrap(),
        &all[all.len() - max..]
    );
    assert!(matches!(
        s.read("z1", "ring", first, 10),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.create(
            "z1",
            "zero",
            FileOpts {
                circular_max_size: Some(0)
            }
        ),
        Err(StoreError::Invalid(_))
    ));
}

fn every_append_changes_the_stat_even_within_one_millisecond(s: &dyn FileStore) {
    // The factories' clock is frozen: only the store's own rule can move modts.
    let created = s.create("z", "output", FileOpts::default()).unwrap();
    let mut prev = created;
    for i in 0..50 {
        let st = s.append("z", "output", b"x").unwrap();
        assert_ne!(st, prev, "append {i} left the stat unchanged");
        assert!(st.modified_ms > prev.modified_ms);
        assert_eq!(st.created_ms, created.created_ms);
        assert_eq!(s.stat("z", "output").unwrap(), Some(st));
        prev = st;
    }
    // An empty append adds nothing, so it changes nothing.
    assert_eq!(s.append("z", "output", b"").unwrap(), prev);
    assert!(matches!(
        s.append("z", "missing", b"x"),
        Err(StoreError::NotFound(_))
    ));
}

fn delete_if_unchanged_refuses_a_changed_file_and_deletes_an_unchanged_one(s: &dyn FileStore) {
    s.create("z", "output", FileOpts::default()).unwrap();
    let before = s.append("z", "output", &pattern(70_000, 5)).unwrap();
    let after = s.append("z", "output", b"late line\n").unwrap();
    assert!(matches!(
        s.delete_if_unchanged("z", "output", &before),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.stat("z", "output").unwrap(),
        Some(after),
        "nothing deleted"
    );
    assert_eq!(s.read("z", "output", 70_000, 100).unwrap(), b"late line\n");
    s.delete_if_unchanged("z", "output", &after).unwrap();
    assert_eq!(s.stat("z", "output").unwrap(), None);
    assert!(matches!(
        s.read("z", "output", 0, 10),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.delete_if_unchanged("z", "output", &after),
        Err(StoreError::NotFound(_))
    ));
    // A new file of the same name starts empty: no bytes of the old one leak into it.
    s.create("z", "output", FileOpts::default()).unwrap();
    s.append("z", "output", b"new").unwrap();
    assert_eq!(s.read("z", "output", 0, 1_000_000).unwrap(), b"new");
}

fn rename_if_unchanged_replaces_the_target_only_when_it_matches(s: &dyn FileStore) {
    let new = pattern(150_000, 6);
    s.create("z", "restore-tmp", FileOpts::default()).unwrap();
    let src = s.append("z", "restore-tmp", &new).unwrap();
    s.create("z", "output", FileOpts::default()).unwrap();
    let old_stale = s.append("z", "output", b"old").unwrap();
    let old = s.append("z", "output", b" and appended").unwrap();

    for expected in [None, Some(&old_stale)] {
        assert!(matches!(
            s.rename_if_unchanged("z", "restore-tmp", "output", expected),
            Err(StoreError::Conflict(_))
        ));
    }
    assert_eq!(
        s.read("z", "output", 0, 100).unwrap(),
        b"old and appended",
        "a refused rename changes nothing"
    );
    assert_eq!(s.stat("z", "restore-tmp").unwrap(), Some(src));

    s.rename_if_unchanged("z", "restore-tmp", "output", Some(&old))
        .unwrap();
    assert_eq!(s.stat("z", "restore-tmp").unwrap(), None);
    assert_eq!(s.stat("z", "output").unwrap(), Some(src));
    assert_eq!(s.read("z", "output", 0, 1_000_000).unwrap(), new);
    // The renamed file keeps working: its parts moved with it.
    s.append("z", "output", b"tail").unwrap();
    assert_eq!(
        s.read("z", "output", 149_998, 100).unwrap(),
        [&new[149_998..], b"tail"].concat()
    );

    // `None` means the target must not exist.
    s.create("z", "a", FileOpts::default()).unwrap();
    s.append("z", "a", b"aaa").unwrap();
    s.rename_if_unchanged("z", "a", "b", None).unwrap();
    assert_eq!(s.read("z", "b", 0, 10).unwrap(), b"aaa");
    assert!(matches!(
        s.rename_if_unchanged("z", "a", "c", None),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.rename_if_unchanged("z", "b", "b", None),
        Err(StoreError::Invalid(_))
    ));
    // Zones are separate namespaces.
    assert_eq!(s.stat("other", "b").unwrap(), None);
}

fn delete_removes_a_file_and_a_missing_one_is_not_found(s: &dyn FileStore) {
    s.create("z", "scratch", FileOpts::default()).unwrap();
    s.append("z", "scratch", &pattern(100_000, 7)).unwrap();
    s.create("z2", "scratch", FileOpts::default()).unwrap();
    s.delete("z", "scratch").unwrap();
    assert_eq!(s.stat("z", "scratch").unwrap(), None);
    assert!(
        s.stat("z2", "scratch").unwrap().is_some(),
        "other zone untouched"
    );
    assert!(matches!(
        s.delete("z", "scratch"),
        Err(StoreError::NotFound(_))
    ));
}

fn create_of_an_existing_file_is_already_exists(s: &dyn FileStore) {
    s.create("z", "output", FileOpts::default()).unwrap();
    s.append("z", "output", b"keep").unwrap();
    assert!(matches!(
        s.create("z", "output", FileOpts::default()),
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(s.read("z", "output", 0, 10).unwrap(), b"keep");
    assert!(matches!(
        s.create("", "output", FileOpts::default()),
        Err(StoreError::Invalid(_))
    ));
}

fn list_files_reports_every_file_in_zone_and_name_order(s: &dyn FileStore) {
    s.create("b", "output", FileOpts::default()).unwrap();
    let ring = s
        .create(
            "a",
            "ring",
            FileOpts {
                circular_max_size: Some(PART as u64),
            },
        )
        .unwrap();
    let out = s.create("a", "output", FileOpts::default()).unwrap();
    let out = FileStat {
        size: 2,
        modified_ms: out.modified_ms + 1,
        ..out
    };
    assert_eq!(s.append("a", "output", b"hi").unwrap(), out);
    let all = s.list_files().unwrap();
    let keys: Vec<_> = all.iter().map(|(z, n, _)| format!("{z}/{n}")).collect();
    assert_eq!(keys, ["a/output", "a/ring", "b/output"]);
    assert_eq!(all[0].2, out);
    assert_eq!(all[1].2, ring);
}

fn file_meta_is_kept_replaced_and_carried_by_a_rename(s: &dyn FileStore) {
    s.create("z", "scratch", FileOpts::default()).unwrap();
    assert_eq!(
        s.meta("z", "scratch").unwrap(),
        meta(json!({})),
        "a new file has none"
    );
    let m = meta(json!({"term:rows": 40, "nested": {"a": [1, 2]}}));
    s.set_meta("z", "scratch", &m).unwrap();
    assert_eq!(s.meta("z", "scratch").unwrap(), m);
    s.rename_if_unchanged("z", "scratch", "output", None)
        .unwrap();
    assert_eq!(s.meta("z", "output").unwrap(), m, "the rename carries it");
    s.set_meta("z", "output", &meta(json!({"b": true})))
        .unwrap();
    assert_eq!(
        s.meta("z", "output").unwrap(),
        meta(json!({"b": true})),
        "replaced"
    );
    assert!(matches!(
        s.meta("z", "scratch"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.set_meta("z", "missing", &m),
        Err(StoreError::NotFound(_))
    ));
}

contract!(
    sqlite_files_contract,
    sqlite_files,
    [
        create_append_and_ranged_reads_cross_part_boundaries,
        a_circular_file_reads_its_last_max_size_bytes_in_order,
        every_append_changes_the_stat_even_within_one_millisecond,
        delete_if_unchanged_refuses_a_changed_file_and_deletes_an_unchanged_one,
        rename_if_unchanged_replaces_the_target_only_when_it_matches,
        delete_removes_a_file_and_a_missing_one_is_not_found,
        create_of_an_existing_file_is_already_exists,
        list_files_reports_every_file_in_zone_and_name_order,
        file_meta_is_kept_replaced_and_carried_by_a_rename,
    ]
);
contract!(
    memory_files_contract,
    memory_files,
    [
        create_append_and_ranged_reads_cross_part_boundaries,
        a_circular_file_reads_its_last_max_size_bytes_in_order,
        every_append_changes_the_stat_even_within_one_millisecond,
        delete_if_unchanged_refuses_a_changed_file_and_deletes_an_unchanged_one,
        rename_if_unchanged_replaces_the_target_only_when_it_matches,
        delete_removes_a_file_and_a_missing_one_is_not_found,
        create_of_an_existing_file_is_already_exists,
        list_files_reports_every_file_in_zone_and_name_order,
        file_meta_is_kept_replaced_and_carried_by_a_rename,
    ]
);
