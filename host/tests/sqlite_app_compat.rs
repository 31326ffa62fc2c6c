//! The SQLite stores and the app: databases the app wrote with plain SQL read back right, the
//! rows we write have the app's shape, opening never alters the app's schema, and a second
//! connection writing concurrently loses nothing.

mod store_support;

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection};
use serde_json::{json, Value};
use session_archiver::archive_dir::fs::FsArchiveDir;
use session_archiver::archive_dir::memory::MemoryArchiveDir;
use session_archiver::store::memory::{MemoryFiles, MemoryObjects};
use session_archiver::store::sqlite_files::SqliteFiles;
use session_archiver::store::sqlite_objects::SqliteObjects;
use session_archiver::store::{FileOpts, FileStat, FileStore, Meta, ObjectStore, StoreError};
use session_archiver_testkit::app_schema::{WAVE_BLOCK_SCHEMA, WAVE_FILE_SCHEMA};
use store_support::{meta, pattern, PART};
use tempfile::TempDir;

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
    // The bytes the ring still holds read back from the first one held; an offset that fell
    // out of the ring is a conflict, never a silently later start.
    assert_eq!(
        s.read("blk-2", "output", (300_000 - ring_max) as u64, 1 << 20)
            .unwrap(),
        &ring_data[300_000 - ring_max..]
    );
    assert!(matches!(
        s.read("blk-2", "output", 0, 1 << 20),
        Err(StoreError::Conflict(_))
    ));
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
        s.read(
            "blk-2",
            "output",
            (ring_all.len() - ring_max) as u64,
            1 << 20
        )
        .unwrap(),
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
