//! One contract for every backend: each generic test below runs against the SQLite store and the
//! in-memory one (and, for the archive directory, the `cap-std` directory and the in-memory one),
//! so the mock host used by the policy tests behaves like the real stores.
//!
//! The SQLite-only tests at the end check compatibility with databases the app wrote with plain
//! SQL, and behaviour under a second connection writing concurrently.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection};
use serde_json::{json, Value};
use session_archiver::archive_dir::fs::FsArchiveDir;
use session_archiver::archive_dir::memory::MemoryArchiveDir;
use session_archiver::archive_dir::{ArchiveDir, MAX_NAME_LEN};
use session_archiver::store::memory::{MemoryFiles, MemoryObjects};
use session_archiver::store::sqlite_files::SqliteFiles;
use session_archiver::store::sqlite_objects::SqliteObjects;
use session_archiver::store::{
    Clock, FileOpts, FileStat, FileStore, Meta, ObjectStore, StoreError, MAX_CHUNK,
};
use session_archiver_testkit::app_schema::{WAVE_BLOCK_SCHEMA, WAVE_FILE_SCHEMA};
use tempfile::TempDir;

const PART: usize = 64 * 1024;

/// A clock that stands still unless a test moves it: proves modts advances without real time.
struct FrozenClock(AtomicI64);

impl Clock for FrozenClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

const T0: i64 = 1_700_000_000_000;

fn frozen() -> Arc<FrozenClock> {
    Arc::new(FrozenClock(AtomicI64::new(T0)))
}

fn meta(v: Value) -> Meta {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// Deterministic bytes that differ at every offset a test is likely to confuse.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Factories

fn sqlite_objects() -> (TempDir, Box<dyn ObjectStore>) {
    let dir = TempDir::new().unwrap();
    let store = SqliteObjects::open(dir.path().join("objects.db")).unwrap();
    (dir, Box::new(store))
}

fn memory_objects() -> (TempDir, Box<dyn ObjectStore>) {
    (TempDir::new().unwrap(), Box::new(MemoryObjects::new()))
}

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

/// Leaves a temp file named `.0` as a writer that died would, last modified `.1` ms ago.
type PlantTemp = Box<dyn Fn(&str, i64)>;

/// An archive directory plus the backend-specific hooks the generic tests need.
struct ArchiveFx {
    dir: Box<dyn ArchiveDir>,
    plant_temp: PlantTemp,
    /// How many temp files exist.
    temps: Box<dyn Fn() -> usize>,
    /// What `path("x")` must return, minus the trailing `x`.
    root: String,
    _tmp: TempDir,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn fs_archives() -> ArchiveFx {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("archives");
    let dir = FsArchiveDir::open(&path).unwrap();
    let root = format!("{}/", std::fs::canonicalize(&path).unwrap().display());
    let (p1, p2) = (path.clone(), path.clone());
    ArchiveFx {
        dir: Box::new(dir),
        plant_temp: Box::new(move |name, age_ms| {
            let f = std::fs::File::create(p1.join(name)).unwrap();
            f.set_modified(SystemTime::now() - Duration::from_millis(age_ms as u64))
                .unwrap();
        }),
        temps: Box::new(move || count_temps(&p2)),
        root,
        _tmp: tmp,
    }
}

fn count_temps(path: &Path) -> usize {
    std::fs::read_dir(path)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .count()
}

fn memory_archives() -> ArchiveFx {
    let dir = MemoryArchiveDir::new().with_root("/srv/archives");
    let (d1, d2) = (dir.clone(), dir.clone());
    ArchiveFx {
        dir: Box::new(dir),
        plant_temp: Box::new(move |name, age_ms| {
            d1.put(name, b"partial", now_ms() - age_ms).unwrap()
        }),
        temps: Box::new(move || d2.temp_count()),
        root: "/srv/archives/".into(),
        _tmp: TempDir::new().unwrap(),
    }
}

/// Runs each named generic test once per backend, as `<module>::<test>`.
macro_rules! contract {
    ($module:ident, $make:ident, [$($test:ident),* $(,)?]) => {
        mod $module {
            $(
                #[test]
                fn $test() {
                    let (_dir, store) = super::$make();
                    super::$test(&*store);
                }
            )*
        }
    };
}

macro_rules! archive_contract {
    ($module:ident, $make:ident, [$($test:ident),* $(,)?]) => {
        mod $module {
            $(
                #[test]
                fn $test() {
                    super::$test(&super::$make());
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Object store contract

fn list_pages_through_2500_objects_in_id_order(s: &dyn ObjectStore) {
    // Inserted out of order: the listing must sort.
    for i in (0..2500).rev() {
        s.insert(&format!("obj-{i:05}"), &meta(json!({ "n": i })))
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let page = s.list(after.as_deref(), 1000).unwrap();
        sizes.push(page.objects.len());
        for o in &page.objects {
            assert_eq!(o.version, 1);
            assert_eq!(o.meta["n"], json!(seen.len()));
            seen.push(o.id.clone());
        }
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), seen.last(), "next is the last id of the page");
                after = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(sizes, [1000, 1000, 500]);
    let expected: Vec<String> = (0..2500).map(|i| format!("obj-{i:05}")).collect();
    assert_eq!(seen, expected);

    // Limits: over 1000 is capped, 0 is refused.
    assert_eq!(s.list(None, 5000).unwrap().objects.len(), 1000);
    assert!(matches!(s.list(None, 0), Err(StoreError::Invalid(_))));
    // `after` need not be an existing id.
    let page = s.list(Some("obj-00041x"), 2).unwrap();
    let ids: Vec<_> = page.objects.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["obj-00042", "obj-00043"]);
    assert_eq!(page.next.as_deref(), Some("obj-00043"));
    // After the last id: an empty last page.
    let page = s.list(Some("obj-02499"), 10).unwrap();
    assert!(page.objects.is_empty());
    assert_eq!(page.next, None);
}

fn a_page_that_ends_exactly_at_the_last_object_has_no_next(s: &dyn ObjectStore) {
    for id in ["a", "b", "c", "d"] {
        s.insert(id, &Meta::new()).unwrap();
    }
    let p1 = s.list(None, 2).unwrap();
    assert_eq!(p1.next.as_deref(), Some("b"));
    let p2 = s.list(p1.next.as_deref(), 2).unwrap();
    let ids: Vec<_> = p2.objects.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["c", "d"]);
    assert_eq!(p2.next, None);
    assert_eq!(s.list(None, 4).unwrap().next, None);
    assert_eq!(s.list(None, 3).unwrap().next.as_deref(), Some("c"));
}

fn an_empty_store_lists_one_empty_last_page(s: &dyn ObjectStore) {
    let page = s.list(None, 10).unwrap();
    assert!(page.objects.is_empty());
    assert_eq!(page.next, None);
}

fn get_of_a_missing_object_is_not_found(s: &dyn ObjectStore) {
    assert!(matches!(s.get("nope"), Err(StoreError::NotFound(_))));
    s.insert("yes", &meta(json!({"view": "agent"}))).unwrap();
    let o = s.get("yes").unwrap();
    assert_eq!(o.id, "yes");
    assert_eq!(o.meta, meta(json!({"view": "agent"})));
    assert_eq!(o.version, 1);
}

fn insert_of_a_taken_id_is_already_exists(s: &dyn ObjectStore) {
    s.insert("x", &meta(json!({"a": 1}))).unwrap();
    assert!(matches!(
        s.insert("x", &meta(json!({"a": 2}))),
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(s.get("x").unwrap().meta["a"], json!(1));
    assert!(matches!(
        s.insert("", &Meta::new()),
        Err(StoreError::Invalid(_))
    ));
}

fn update_meta_merges_removes_nulls_and_bumps_the_version(s: &dyn ObjectStore) {
    s.insert(
        "s1",
        &meta(json!({"view": "agent", "session:line_count": 3, "keep": {"nested": true}})),
    )
    .unwrap();
    let o = s
        .update_meta(
            "s1",
            &meta(
                json!({"session:line_count": 7, "session:archived_at": 123, "view": null,
                         "absent": null}),
            ),
        )
        .unwrap();
    let want = meta(json!({"session:line_count": 7, "session:archived_at": 123,
                           "keep": {"nested": true}}));
    assert_eq!(o.meta, want);
    assert_eq!(o.version, 2);
    assert_eq!(
        s.get("s1").unwrap(),
        o,
        "the update is stored, not just returned"
    );
    let o = s.update_meta("s1", &Meta::new()).unwrap();
    assert_eq!(o.version, 3, "even an empty patch bumps the version");
    assert_eq!(o.meta, want);
    assert!(matches!(
        s.update_meta("missing", &Meta::new()),
        Err(StoreError::NotFound(_))
    ));
}

fn concurrent_meta_updates_lose_nothing(s: &dyn ObjectStore) {
    s.insert("hot", &Meta::new()).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            scope.spawn(move || {
                for i in 0..25 {
                    s.update_meta("hot", &meta(json!({ format!("k{t}-{i}"): i })))
                        .unwrap();
                }
            });
        }
    });
    let o = s.get("hot").unwrap();
    assert_eq!(o.meta.len(), 100);
    assert_eq!(o.version, 101);
}

contract!(
    sqlite_objects_contract,
    sqlite_objects,
    [
        list_pages_through_2500_objects_in_id_order,
        a_page_that_ends_exactly_at_the_last_object_has_no_next,
        an_empty_store_lists_one_empty_last_page,
        get_of_a_missing_object_is_not_found,
        insert_of_a_taken_id_is_already_exists,
        update_meta_merges_removes_nulls_and_bumps_the_version,
        concurrent_meta_updates_lose_nothing,
    ]
);
contract!(
    memory_objects_contract,
    memory_objects,
    [
        list_pages_through_2500_objects_in_id_order,
        a_page_that_ends_exactly_at_the_last_object_has_no_next,
        an_empty_store_lists_one_empty_last_page,
        get_of_a_missing_object_is_not_found,
        insert_of_a_taken_id_is_already_exists,
        update_meta_merges_removes_nulls_and_bumps_the_version,
        concurrent_meta_updates_lose_nothing,
    ]
);

// ---------------------------------------------------------------------------------------------
// File store contract

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
    // From offset 0: the read starts at the oldest byte still held.
    assert_eq!(s.read("z1", "ring", 0, 1_000_000).unwrap(), held);
    assert_eq!(
        s.read("z1", "ring", 600_000 - max as u64 - 5, 10).unwrap(),
        &held[..10]
    );
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
        s.read("z1", "ring", 0, 1_000_000).unwrap(),
        &all[all.len() - max..]
    );
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
    ]
);

// ---------------------------------------------------------------------------------------------
// SQLite only: databases the app wrote, and a second connection

fn schema_of(path: &Path) -> Vec<(String, String, Option<String>)> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Writes `data` as a circular file of `max` bytes would hold it, the way the app does: byte `o`
/// into part `(o / 64K) % (max / 64K)` at `o % 64K`. Returns the parts.
fn circular_parts(data: &[u8], max: usize) -> HashMap<i64, Vec<u8>> {
    let mut parts: HashMap<i64, Vec<u8>> = HashMap::new();
    for (o, b) in data.iter().enumerate() {
        let p = parts.entry(((o / PART) % (max / PART)) as i64).or_default();
        let off = o % PART;
        if p.len() <= off {
            p.resize(off + 1, 0);
        }
        p[off] = *b;
    }
    parts
}

#[test]
fn a_filestore_written_by_plain_sql_reads_back_right() {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("filestore.db");
    let plain = pattern(3 * PART + 3392, 10);
    let ring_data = pattern(300_000, 11);
    let ring_max = 2 * PART;
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(WAVE_FILE_SCHEMA).unwrap();
        let file = "INSERT INTO db_wave_file VALUES (?1, ?2, ?3, 1000, 2000, ?4, '{}')";
        let part = "INSERT INTO db_file_data VALUES (?1, ?2, ?3, ?4)";
        conn.execute(file, params!["blk-1", "output", plain.len() as i64, "{}"])
            .unwrap();
        for (i, chunk) in plain.chunks(PART).enumerate() {
            conn.execute(part, params!["blk-1", "output", i as i64, chunk])
                .unwrap();
        }
        conn.execute(
            file,
            params![
                "blk-2",
                "output",
                ring_data.len() as i64,
                format!(
                    r#"{{"maxsize":{ring_max},"circular":true,"ijson":false,"ijsonbudget":0}}"#
                )
            ],
        )
        .unwrap();
        for (i, bytes) in circular_parts(&ring_data, ring_max) {
            conn.execute(part, params!["blk-2", "output", i, bytes])
                .unwrap();
        }
    }
    let s = SqliteFiles::open(&path).unwrap();
    let st = s.stat("blk-1", "output").unwrap().unwrap();
    assert_eq!(
        st,
        FileStat {
            size: plain.len() as u64,
            created_ms: 1000,
            modified_ms: 2000,
            circular_max_size: None
        }
    );
    assert_eq!(s.read("blk-1", "output", 0, 1 << 20).unwrap(), plain);
    assert_eq!(
        s.read("blk-1", "output", 3 * PART as u64 - 1, 100).unwrap(),
        &plain[3 * PART - 1..3 * PART + 99]
    );
    // Appending extends the short last part in place, then starts new parts.
    let more = pattern(PART, 12);
    s.append("blk-1", "output", &more).unwrap();
    let all = [&plain[..], &more[..]].concat();
    assert_eq!(s.read("blk-1", "output", 0, 1 << 20).unwrap(), all);
    let conn = Connection::open(&path).unwrap();
    let lens: Vec<i64> = conn
        .prepare("SELECT length(data) FROM db_file_data WHERE zoneid='blk-1' ORDER BY partidx")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        lens,
        [65536, 65536, 65536, 65536, 3392],
        "64 KiB parts, short last"
    );

    let st = s.stat("blk-2", "output").unwrap().unwrap();
    assert_eq!(st.circular_max_size, Some(ring_max as u64));
    assert_eq!(st.size, 300_000);
    assert_eq!(
        s.read("blk-2", "output", 0, 1 << 20).unwrap(),
        &ring_data[300_000 - ring_max..]
    );
    // A range that crosses from physical part 1 back to physical part 0.
    assert_eq!(
        s.read("blk-2", "output", 4 * PART as u64 - 3, 10).unwrap(),
        &ring_data[4 * PART - 3..4 * PART + 7]
    );
    // And appends we make match what the app would have written.
    let tail = pattern(90_000, 13);
    s.append("blk-2", "output", &tail).unwrap();
    let ring_all = [&ring_data[..], &tail[..]].concat();
    let expected_parts = circular_parts(&ring_all, ring_max);
    for (i, bytes) in expected_parts {
        let stored: Vec<u8> = conn
            .query_row(
                "SELECT data FROM db_file_data WHERE zoneid='blk-2' AND partidx=?1",
                [i],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            stored == bytes,
            "circular part {i} differs from the app's layout"
        );
    }
    // Also after one append longer than the whole ring (only its tail is written).
    let huge = pattern(300_000, 14);
    s.append("blk-2", "output", &huge).unwrap();
    let ring_all = [&ring_all[..], &huge[..]].concat();
    for (i, bytes) in circular_parts(&ring_all, ring_max) {
        let stored: Vec<u8> = conn
            .query_row(
                "SELECT data FROM db_file_data WHERE zoneid='blk-2' AND partidx=?1",
                [i],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            stored == bytes,
            "circular part {i} differs after a long append"
        );
    }
    assert_eq!(
        s.read("blk-2", "output", 0, 1 << 20).unwrap(),
        &ring_all[ring_all.len() - ring_max..]
    );
}

#[test]
fn files_we_create_have_the_apps_row_shape() {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("filestore.db");
    let s = SqliteFiles::open(&path).unwrap();
    s.create("z", "output", FileOpts::default()).unwrap();
    s.create(
        "z",
        "ring",
        FileOpts {
            circular_max_size: Some(1),
        },
    )
    .unwrap();
    let conn = Connection::open(&path).unwrap();
    let opts = |name: &str| -> Value {
        let text: String = conn
            .query_row(
                "SELECT opts FROM db_wave_file WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .unwrap();
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(
        opts("ring"),
        json!({"maxsize": 65536, "circular": true, "ijson": false})
    );
    assert_eq!(
        opts("output"),
        json!({"maxsize": 0, "circular": false, "ijson": false})
    );
    let meta: String = conn
        .query_row(
            "SELECT meta FROM db_wave_file WHERE name = 'output'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(meta, "{}");
}

#[test]
fn opening_does_not_alter_an_existing_schema() {
    let tmp = TempDir::new().unwrap();
    let objects = tmp.path().join("objects.db");
    let files = tmp.path().join("filestore.db");
    Connection::open(&objects)
        .unwrap()
        .execute_batch(WAVE_BLOCK_SCHEMA)
        .unwrap();
    Connection::open(&files)
        .unwrap()
        .execute_batch(WAVE_FILE_SCHEMA)
        .unwrap();
    let (before_o, before_f) = (schema_of(&objects), schema_of(&files));
    {
        let o = SqliteObjects::open(&objects).unwrap();
        o.insert("b1", &meta(json!({"view": "agent"}))).unwrap();
        o.update_meta("b1", &meta(json!({"x": 1}))).unwrap();
        let f = SqliteFiles::open(&files).unwrap();
        f.create("b1", "output", FileOpts::default()).unwrap();
        f.append("b1", "output", b"line\n").unwrap();
    }
    assert_eq!(schema_of(&objects), before_o);
    assert_eq!(schema_of(&files), before_f);
    // Fresh databases get exactly the app's tables.
    let fresh = tmp.path().join("fresh.db");
    SqliteFiles::open(&fresh).unwrap();
    let names: Vec<_> = schema_of(&fresh)
        .into_iter()
        .filter(|(t, _, _)| t == "table")
        .map(|(_, n, _)| n)
        .collect();
    assert_eq!(names, ["db_file_data", "db_wave_file"]);
}

#[test]
fn a_meta_update_keeps_every_other_block_field_and_bumps_both_versions() {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("objects.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(WAVE_BLOCK_SCHEMA).unwrap();
    let block = json!({
        "otype": "block", "oid": "b1", "version": 3, "parentoref": "tab:t1",
        "runtimeopts": {"termsize": {"rows": 24, "cols": 80}}, "stickers": null,
        "subblockids": ["x", "y"],
        "meta": {"view": "agent", "session:last_activity_ms": 5, "display:order": 1.5}
    });
    conn.execute(
        "INSERT INTO db_block VALUES ('b1', 3, ?1)",
        [block.to_string()],
    )
    .unwrap();
    let s = SqliteObjects::open(&path).unwrap();
    let o = s
        .update_meta(
            "b1",
            &meta(json!({"session:archived_at": 9, "session:last_activity_ms": null})),
        )
        .unwrap();
    assert_eq!(o.version, 4);
    let (version, data): (i64, String) = conn
        .query_row(
            "SELECT version, data FROM db_block WHERE oid='b1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(version, 4);
    let mut expected = block.clone();
    expected["version"] = json!(4);
    expected["meta"] = json!({"view": "agent", "display:order": 1.5, "session:archived_at": 9});
    assert_eq!(serde_json::from_str::<Value>(&data).unwrap(), expected);
}

#[test]
fn unreadable_block_data_is_an_error_for_that_id_and_skipped_by_list() {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("objects.db");
    let s = SqliteObjects::open(&path).unwrap();
    let conn = Connection::open(&path).unwrap();
    for (oid, data) in [
        ("a-good", r#"{"oid":"a-good","meta":{"view":"agent"}}"#),
        ("b-not-json", "not json"),
        ("c-array", "[1, 2]"),
        ("d-no-meta", r#"{"oid":"d-no-meta"}"#),
        ("e-null-meta", r#"{"oid":"e","meta":null}"#),
        ("f-meta-number", r#"{"oid":"f","meta":5}"#),
        ("g-good", r#"{"oid":"g-good","meta":{}}"#),
    ] {
        conn.execute(
            "INSERT INTO db_block (oid, data) VALUES (?1, ?2)",
            [oid, data],
        )
        .unwrap();
    }
    for bad in ["b-not-json", "c-array", "f-meta-number"] {
        assert!(
            matches!(s.get(bad), Err(StoreError::Io(m)) if m.contains(bad)),
            "{bad}"
        );
        assert!(matches!(
            s.update_meta(bad, &Meta::new()),
            Err(StoreError::Io(_))
        ));
    }
    assert_eq!(s.get("d-no-meta").unwrap().meta, Meta::new());
    assert_eq!(s.get("e-null-meta").unwrap().meta, Meta::new());
    let page = s.list(None, 3).unwrap();
    let ids: Vec<_> = page.objects.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["a-good"], "bad rows skipped, paging not disturbed");
    assert_eq!(page.next.as_deref(), Some("c-array"));
    let page = s.list(page.next.as_deref(), 10).unwrap();
    let ids: Vec<_> = page.objects.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["d-no-meta", "e-null-meta", "g-good"]);
    assert_eq!(page.next, None);
    // A missing meta becomes a real map on the first update.
    let o = s
        .update_meta("d-no-meta", &meta(json!({"k": true})))
        .unwrap();
    assert_eq!(o.meta, meta(json!({"k": true})));
}

#[test]
fn a_second_connection_appending_while_we_read_loses_nothing() {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("filestore.db");
    let reader = SqliteFiles::open(&path).unwrap();
    let writer = SqliteFiles::open(&path).unwrap();
    writer.create("blk", "output", FileOpts::default()).unwrap();
    let lines: Vec<Vec<u8>> = (0..600)
        .map(|i| {
            let mut l = format!("{{\"n\":{i},\"pad\":\"").into_bytes();
            l.extend(std::iter::repeat_n(b'x', (i * 7919) % 3000));
            l.extend_from_slice(b"\"}\n");
            l
        })
        .collect();
    let expected: Vec<u8> = lines.concat();
    let total = expected.len() as u64;
    assert!(total > 10 * PART as u64);
    let mut got = Vec::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for l in &lines {
                writer.append("blk", "output", l).unwrap();
            }
        });
        let mut reads = 0;
        while (got.len() as u64) < total {
            let chunk = reader
                .read("blk", "output", got.len() as u64, 50_000)
                .unwrap();
            got.extend_from_slice(&chunk);
            reads += 1;
            assert!(reads < 1_000_000, "reader never caught up");
        }
    });
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "bytes read while appending differ");
}

#[test]
fn two_connections_updating_meta_concurrently_lose_nothing() {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("objects.db");
    let a = SqliteObjects::open(&path).unwrap();
    let b = SqliteObjects::open(&path).unwrap();
    a.insert("hot", &Meta::new()).unwrap();
    std::thread::scope(|scope| {
        for (t, s) in [(0, &a), (1, &b)] {
            scope.spawn(move || {
                for i in 0..40 {
                    s.update_meta("hot", &meta(json!({ format!("k{t}-{i}"): i })))
                        .unwrap();
                }
            });
        }
    });
    let o = a.get("hot").unwrap();
    assert_eq!(o.meta.len(), 80);
    assert_eq!(o.version, 81);
}

#[test]
fn insert_many_inserts_all_or_nothing() {
    let tmp = TempDir::new().unwrap();
    let s = SqliteObjects::open(tmp.path().join("objects.db")).unwrap();
    let m = meta(json!({"view": "agent"}));
    let ids: Vec<String> = (0..5000).map(|i| format!("s{i:05}")).collect();
    assert_eq!(
        s.insert_many(ids.iter().map(|id| (id.as_str(), &m)))
            .unwrap(),
        5000
    );
    assert_eq!(s.get("s04999").unwrap().meta, m);
    assert!(matches!(
        s.insert_many([("new", &m), ("s00001", &m)]),
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(s.get("new"), Err(StoreError::NotFound(_))));
}

#[test]
fn stores_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SqliteObjects>();
    check::<SqliteFiles>();
    check::<MemoryObjects>();
    check::<MemoryFiles>();
    check::<FsArchiveDir>();
    check::<MemoryArchiveDir>();
}

// ---------------------------------------------------------------------------------------------
// Archive directory contract

fn names_that_are_not_one_safe_component_are_refused(fx: &ArchiveFx) {
    let long = "a".repeat(300);
    let max = format!("{}.jsonl.gz", "a".repeat(MAX_NAME_LEN - ".jsonl.gz".len()));
    for bad in [
        "../x",
        "/etc/passwd",
        "a/b",
        "",
        ".",
        "..",
        ".hidden",
        ".tmp-x-1",
        "a\0b",
        "a\\b",
        "caf\u{e9}",
        "a b",
        long.as_str(),
    ] {
        let d = &*fx.dir;
        let invalid = |r: Result<(), StoreError>| matches!(r, Err(StoreError::InvalidName(_)));
        assert!(invalid(d.stat(bad).map(drop)), "stat {bad:?}");
        assert!(invalid(d.create(bad).map(drop)), "create {bad:?}");
        assert!(invalid(d.open(bad).map(drop)), "open {bad:?}");
        assert!(invalid(d.remove(bad)), "remove {bad:?}");
        assert!(invalid(d.path(bad).map(drop)), "path {bad:?}");
    }
    assert_eq!(fx.dir.list().unwrap(), []);
    // The longest allowed name works end to end (its temp name must fit too).
    let mut w = fx.dir.create(&max).unwrap();
    w.write(b"x").unwrap();
    w.commit().unwrap();
    assert_eq!(fx.dir.stat(&max).unwrap().unwrap().size, 1);
}

fn a_dropped_or_aborted_writer_leaves_no_final_file_and_no_temp(fx: &ArchiveFx) {
    let mut w = fx.dir.create("s1.jsonl.gz").unwrap();
    w.write(b"partial archive").unwrap();
    assert_eq!((fx.temps)(), 1, "the writer writes to a temp file");
    drop(w);
    assert_eq!(fx.dir.stat("s1.jsonl.gz").unwrap(), None);
    assert_eq!(fx.dir.list().unwrap(), []);
    assert_eq!((fx.temps)(), 0);

    let mut w = fx.dir.create("s1.jsonl.gz").unwrap();
    w.write(b"partial archive").unwrap();
    w.abort();
    assert_eq!(fx.dir.stat("s1.jsonl.gz").unwrap(), None);
    assert_eq!((fx.temps)(), 0);
    assert!(matches!(
        fx.dir.open("s1.jsonl.gz").map(drop),
        Err(StoreError::NotFound(_))
    ));
}

fn commit_makes_the_archive_visible_with_its_bytes(fx: &ArchiveFx) {
    let data = pattern(300_000, 20);
    let mut w = fx.dir.create("s1.jsonl.gz").unwrap();
    for chunk in data.chunks(70_000) {
        w.write(chunk).unwrap();
    }
    assert_eq!(
        fx.dir.stat("s1.jsonl.gz").unwrap(),
        None,
        "invisible until commit"
    );
    assert_eq!(fx.dir.list().unwrap(), [], "temps are not listed");
    let before = now_ms();
    let entry = w.commit().unwrap();
    assert_eq!(entry.name, "s1.jsonl.gz");
    assert_eq!(entry.size, 300_000);
    assert!((entry.modified_ms - before).abs() < 60_000);
    assert_eq!(fx.dir.stat("s1.jsonl.gz").unwrap(), Some(entry.clone()));
    assert_eq!(fx.dir.list().unwrap(), [entry]);
    assert_eq!((fx.temps)(), 0);

    let mut r = fx.dir.open("s1.jsonl.gz").unwrap();
    assert_eq!(r.size(), 300_000);
    let mut back = Vec::new();
    loop {
        let chunk = r.read(64 * 1024).unwrap();
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() <= 64 * 1024);
        back.extend(chunk);
    }
    assert!(back == data, "read back differs");
    assert!(matches!(r.read(MAX_CHUNK + 1), Err(StoreError::Invalid(_))));

    // A second commit under the same name replaces the first, atomically.
    let mut w = fx.dir.create("s1.jsonl.gz").unwrap();
    w.write(b"v2").unwrap();
    assert_eq!(fx.dir.stat("s1.jsonl.gz").unwrap().unwrap().size, 300_000);
    w.commit().unwrap();
    let mut r = fx.dir.open("s1.jsonl.gz").unwrap();
    assert_eq!(r.read(100).unwrap(), b"v2");
    assert!(r.read(100).unwrap().is_empty());

    fx.dir.remove("s1.jsonl.gz").unwrap();
    assert_eq!(fx.dir.stat("s1.jsonl.gz").unwrap(), None);
    assert!(matches!(
        fx.dir.remove("s1.jsonl.gz"),
        Err(StoreError::NotFound(_))
    ));
}

fn list_is_in_name_order_and_excludes_temps(fx: &ArchiveFx) {
    for name in ["c.jsonl.gz", "a.jsonl.gz", "b.jsonl.gz"] {
        let mut w = fx.dir.create(name).unwrap();
        w.write(name.as_bytes()).unwrap();
        w.commit().unwrap();
    }
    (fx.plant_temp)(".tmp-d.jsonl.gz-1", 0);
    let _live = fx.dir.create("e.jsonl.gz").unwrap();
    let names: Vec<_> = fx.dir.list().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["a.jsonl.gz", "b.jsonl.gz", "c.jsonl.gz"]);
}

fn clean_temps_removes_only_temps_older_than_the_age(fx: &ArchiveFx) {
    let hour = 3_600_000;
    (fx.plant_temp)(".tmp-old.jsonl.gz-1", 2 * hour);
    (fx.plant_temp)(".tmp-young.jsonl.gz-2", 1_000);
    let mut live = fx.dir.create("live.jsonl.gz").unwrap();
    live.write(b"still writing").unwrap();
    let mut done = fx.dir.create("kept.jsonl.gz").unwrap();
    done.write(b"kept").unwrap();
    done.commit().unwrap();
    assert_eq!((fx.temps)(), 3);

    assert_eq!(fx.dir.clean_temps(hour).unwrap(), 1);
    assert_eq!((fx.temps)(), 2);
    assert_eq!(fx.dir.stat("kept.jsonl.gz").unwrap().unwrap().size, 4);
    // The live writer is untouched and still commits.
    live.commit().unwrap();
    assert_eq!(fx.dir.stat("live.jsonl.gz").unwrap().unwrap().size, 13);
    assert_eq!(fx.dir.clean_temps(0).unwrap(), 1);
    assert_eq!((fx.temps)(), 0);
    assert_eq!(fx.dir.list().unwrap().len(), 2);
}

fn path_is_the_directory_joined_with_the_name(fx: &ArchiveFx) {
    assert_eq!(
        fx.dir.path("s1.jsonl.gz").unwrap(),
        format!("{}s1.jsonl.gz", fx.root)
    );
    assert_eq!(
        fx.dir.stat("s1.jsonl.gz").unwrap(),
        None,
        "path creates nothing"
    );
}

fn a_writer_refuses_use_after_commit_and_oversized_chunks(fx: &ArchiveFx) {
    let mut w = fx.dir.create("s.jsonl.gz").unwrap();
    assert!(matches!(
        w.write(&vec![0; MAX_CHUNK + 1]),
        Err(StoreError::Invalid(_))
    ));
    w.write(&vec![7; MAX_CHUNK]).unwrap();
    assert_eq!(w.commit().unwrap().size, MAX_CHUNK as u64);
}

archive_contract!(
    fs_archive_contract,
    fs_archives,
    [
        names_that_are_not_one_safe_component_are_refused,
        a_dropped_or_aborted_writer_leaves_no_final_file_and_no_temp,
        commit_makes_the_archive_visible_with_its_bytes,
        list_is_in_name_order_and_excludes_temps,
        clean_temps_removes_only_temps_older_than_the_age,
        path_is_the_directory_joined_with_the_name,
        a_writer_refuses_use_after_commit_and_oversized_chunks,
    ]
);
archive_contract!(
    memory_archive_contract,
    memory_archives,
    [
        names_that_are_not_one_safe_component_are_refused,
        a_dropped_or_aborted_writer_leaves_no_final_file_and_no_temp,
        commit_makes_the_archive_visible_with_its_bytes,
        list_is_in_name_order_and_excludes_temps,
        clean_temps_removes_only_temps_older_than_the_age,
        path_is_the_directory_joined_with_the_name,
        a_writer_refuses_use_after_commit_and_oversized_chunks,
    ]
);

#[test]
fn a_symlink_planted_in_the_archive_dir_cannot_lead_outside() {
    let tmp = TempDir::new().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let secret = outside.join("passwd");
    std::fs::write(&secret, b"root:x:0:0").unwrap();
    let archives = tmp.path().join("archives");
    let dir = FsArchiveDir::open(&archives).unwrap();
    std::os::unix::fs::symlink(&secret, archives.join("evil.jsonl.gz")).unwrap();
    std::os::unix::fs::symlink("../outside/passwd", archives.join("rel.jsonl.gz")).unwrap();
    std::os::unix::fs::symlink(&outside, archives.join("out")).unwrap();

    for name in ["evil.jsonl.gz", "rel.jsonl.gz"] {
        // Reading through the link is refused by cap-std.
        assert!(dir.open(name).is_err(), "{name} opened through a symlink");
        // Not listed as an archive, and stat does not report the target's size.
        assert!(dir.stat(name).is_err());
    }
    assert_eq!(dir.list().unwrap(), []);
    // A committed archive replaces the link itself; the target is untouched.
    let mut w = dir.create("evil.jsonl.gz").unwrap();
    w.write(b"archive").unwrap();
    w.commit().unwrap();
    assert_eq!(std::fs::read(&secret).unwrap(), b"root:x:0:0");
    assert_eq!(
        std::fs::read(archives.join("evil.jsonl.gz")).unwrap(),
        b"archive"
    );
    // Remove unlinks the link, never its target.
    dir.remove("rel.jsonl.gz").unwrap();
    assert!(secret.exists());
    assert!(!archives.join("rel.jsonl.gz").exists());
    // Stale temps are looked for in the directory only, not behind a directory symlink.
    std::fs::write(outside.join(".tmp-x-1"), b"not ours").unwrap();
    assert_eq!(dir.clean_temps(0).unwrap(), 0);
    assert!(outside.join(".tmp-x-1").exists());
}

#[test]
fn a_missing_archive_dir_is_created_with_its_parents() {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("data").join("archives");
    let dir = FsArchiveDir::open(&path).unwrap();
    assert!(path.is_dir());
    assert_eq!(dir.root(), std::fs::canonicalize(&path).unwrap());
}

/// Timing probe for the 100 000-session no-op sweep budget (run with `--ignored --nocapture`,
/// ideally in release): lists every object of a 100 000-row `objects.db`.
#[test]
#[ignore]
fn listing_100_000_objects_is_fast() {
    let tmp = TempDir::new().unwrap();
    let s = SqliteObjects::open(tmp.path().join("objects.db")).unwrap();
    let m = meta(
        json!({"view": "agent", "session:last_activity_ms": T0, "session:line_count": 120,
                        "controller": "shell", "cmd:cwd": "/home/user/project"}),
    );
    let ids: Vec<String> = (0..100_000)
        .map(|i| format!("{i:08x}-1111-2222-3333-444444444444"))
        .collect();
    s.insert_many(ids.iter().map(|id| (id.as_str(), &m)))
        .unwrap();
    let start = std::time::Instant::now();
    let (mut n, mut after) = (0, None::<String>);
    loop {
        let page = s.list(after.as_deref(), 1000).unwrap();
        n += page.objects.len();
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let took = start.elapsed();
    eprintln!("listed {n} objects in {took:?}");
    assert_eq!(n, 100_000);
}
