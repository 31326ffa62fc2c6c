//! The archive directory contract: each generic test runs against the `cap-std` directory, the
//! in-memory one and the object-store one (over an in-memory object store); the tests at the
//! end are for the real directory only (symlinks, creation).

#[macro_use]
mod store_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::path::Path as ObjectPath;
use session_archiver::archive_dir::fs::FsArchiveDir;
use session_archiver::archive_dir::memory::MemoryArchiveDir;
use session_archiver::archive_dir::object::ObjectArchiveDir;
use session_archiver::archive_dir::{ArchiveDir, Entry, MAX_NAME_LEN};
use session_archiver::store::{StoreError, SystemClock, MAX_CHUNK};
use session_archiver_testkit::object_mock::MockObjectStore;
use session_archiver_testkit::Recorder;
use store_support::{now_ms, pattern};
use tempfile::TempDir;

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

/// The object-store backend over the testkit's in-memory object store, with parts of 5 bytes
/// so every archive but the smallest is a multipart upload; its "temps" are the uploads left
/// neither completed nor aborted (it writes no temp objects; a planted one is a foreign object).
fn object_archives() -> ArchiveFx {
    let store = MockObjectStore::new(Arc::new(Recorder::default()), Arc::new(SystemClock));
    let dir = ObjectArchiveDir::new(
        Arc::new(store.clone()),
        "team/archives",
        "s3://b/team/archives",
    )
    .unwrap()
    .with_part_size(5);
    let key = |name: &str| ObjectPath::from(format!("team/archives/{name}"));
    let quiet = store.quiet();
    ArchiveFx {
        dir: Box::new(dir),
        plant_temp: Box::new(move |name, age_ms| {
            quiet.put_at(&key(name), b"partial", now_ms() - age_ms)
        }),
        temps: Box::new(move || store.open_uploads()),
        root: "s3://b/team/archives/".into(),
        _tmp: TempDir::new().unwrap(),
    }
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

fn remove_if_unchanged_removes_only_the_file_that_was_listed(fx: &ArchiveFx) {
    let write = |data: &[u8]| {
        let mut w = fx.dir.create("s1.jsonl.gz").unwrap();
        w.write(data).unwrap();
        w.commit().unwrap()
    };
    let listed = write(b"first archive");
    // Another process commits a new archive of the session after the listing.
    let newer = write(b"a newer archive of the same session");
    assert!(matches!(
        fx.dir.remove_if_unchanged("s1.jsonl.gz", &listed),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(fx.dir.stat("s1.jsonl.gz").unwrap(), Some(newer.clone()));
    let mut r = fx.dir.open("s1.jsonl.gz").unwrap();
    assert_eq!(r.read(100).unwrap(), b"a newer archive of the same session");
    assert_eq!((fx.temps)(), 0, "nothing left aside");
    // The file listed is removed.
    fx.dir.remove_if_unchanged("s1.jsonl.gz", &newer).unwrap();
    assert_eq!(fx.dir.stat("s1.jsonl.gz").unwrap(), None);
    assert_eq!((fx.temps)(), 0);
    assert!(matches!(
        fx.dir.remove_if_unchanged("s1.jsonl.gz", &newer),
        Err(StoreError::NotFound(_))
    ));
}

fn remove_if_unchanged_tells_a_replacement_of_the_same_size_and_millisecond_apart(fx: &ArchiveFx) {
    let write = || {
        let mut w = fx.dir.create("s1.jsonl.gz").unwrap();
        w.write(b"the same bytes").unwrap();
        w.commit().unwrap()
    };
    let listed = write();
    let newer = write();
    assert!(listed.identity.is_some(), "the backend reports identities");
    assert_ne!(listed.identity, newer.identity, "two commits, two files");
    // The listed file as it would look had the newer one landed in the same millisecond.
    let stale = Entry {
        modified_ms: newer.modified_ms,
        ..listed
    };
    assert!(matches!(
        fx.dir.remove_if_unchanged("s1.jsonl.gz", &stale),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(fx.dir.stat("s1.jsonl.gz").unwrap(), Some(newer));
    assert_eq!((fx.temps)(), 0, "nothing left aside");
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
        remove_if_unchanged_removes_only_the_file_that_was_listed,
        remove_if_unchanged_tells_a_replacement_of_the_same_size_and_millisecond_apart,
    ]
);
// No clean_temps test: the object store backend writes no temp objects, and uploads a killed
// process left are for a bucket lifecycle rule (README).
archive_contract!(
    object_archive_contract,
    object_archives,
    [
        names_that_are_not_one_safe_component_are_refused,
        a_dropped_or_aborted_writer_leaves_no_final_file_and_no_temp,
        commit_makes_the_archive_visible_with_its_bytes,
        list_is_in_name_order_and_excludes_temps,
        path_is_the_directory_joined_with_the_name,
        a_writer_refuses_use_after_commit_and_oversized_chunks,
        remove_if_unchanged_removes_only_the_file_that_was_listed,
        remove_if_unchanged_tells_a_replacement_of_the_same_size_and_millisecond_apart,
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
        remove_if_unchanged_removes_only_the_file_that_was_listed,
        remove_if_unchanged_tells_a_replacement_of_the_same_size_and_millisecond_apart,
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
