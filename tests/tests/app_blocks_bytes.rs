//! Blocks the way the apps write them — `db_block.data` bound as a BLOB (AgentMux, and Wave's
//! `[]byte`) or as TEXT, with number spellings a JSON library would respell and fields we do not
//! know — go through a real sweep and restore by the built `inactivity` policy on the SQLite
//! stores, and are read back by a bytes-only reader (as AgentMux does) and a text reader: the
//! storage class is the one the app chose and every byte outside the archiver's keys is the
//! app's.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{params, Connection};
use serde_json::Value;
use session_archiver::archive_dir::fs::FsArchiveDir;
use session_archiver::archiver::{Archiver, ArchiverOptions};
use session_archiver::host::Stores;
use session_archiver::store::sqlite_files::SqliteFiles;
use session_archiver::store::sqlite_objects::SqliteObjects;
use session_archiver::store::{FileOpts, FileStore, SystemClock, OUTPUT_FILE};
use session_archiver_testkit::app_schema::{WAVE_BLOCK_SCHEMA, WAVE_FILE_SCHEMA};
use session_archiver_testkit::mem::now_ms;
use session_archiver_testkit::{load_policy, shared_runtime as runtime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Blob,
    Text,
}

/// One block as an app wrote it.
struct AppBlock {
    id: String,
    class: Class,
    data: String,
    output: Vec<u8>,
}

/// A block in the compact style of Go's `json.Marshal` (AgentMux and Wave), or pretty-printed,
/// with odd numbers and unknown fields inside and outside meta.
fn block_json(id: &str, style: usize, n: usize, idle_since: i64) -> String {
    let meta = format!(
        r#"{{"view":"agent","session:last_activity_ms":{idle_since},"session:line_count":{n},"x_ratio":1.0,"x_huge":1e21,"x_neg_zero":-0,"x_past_u64":18446744073709551616123,"x_hundred":1E+2,"x_escaped":"caf\u00e9 \ud83d\ude00 \/ \"q\"","controller":"cmd","x_nested":{{"a":[1.50,2e-3,{{"deep":null}}]}}}}"#
    );
    match style % 3 {
        0 => format!(
            r#"{{"otype":"block","oid":"{id}","version":1,"parentoref":"tab:1","runtimeopts":{{"termsize":{{"rows":25,"cols":80}}}},"stickers":null,"meta":{meta},"subblockids":null,"x_future":[0.1000,-1.5e-7,340282366920938463463374607431768211456]}}"#
        ),
        1 => format!(
            r#"{{"x_first":1.0,"meta":{meta},"oid":"{id}","otype":"block","version":1}}"#
        ),
        _ => format!(
            "{{\n  \"otype\": \"block\",\n  \"oid\": \"{id}\",\n  \"version\": 1,\n  \"meta\": {{\n    \"view\": \"agent\",\n    \"session:last_activity_ms\": {idle_since},\n    \"session:line_count\": {n},\n    \"x_ratio\": 1.0,\n    \"x_past_u64\": 18446744073709551616123\n  }},\n  \"x_tail\": 1E+2\n}}"
        ),
    }
}

fn output_for(id: &str, lines: usize) -> Vec<u8> {
    (0..lines)
        .map(|i| format!("{{\"i\":{i},\"text\":\"line {i} of {id} \\u00e9\"}}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Writes `objects.db` and `filestore.db` as the app does (its schema, raw SQL) and returns the
/// blocks.
fn app_data_dir(db: &Path, count: usize) -> Vec<AppBlock> {
    let objects = Connection::open(db.join("wave.db")).unwrap();
    objects.execute_batch(WAVE_BLOCK_SCHEMA).unwrap();
    Connection::open(db.join("filestore.db"))
        .unwrap()
        .execute_batch(WAVE_FILE_SCHEMA)
        .unwrap();
    let files = SqliteFiles::open(db.join("filestore.db")).unwrap();
    let idle_since = now_ms() - 30 * 86_400_000;
    let mut blocks = Vec::new();
    for n in 0..count {
        let id = format!("block-{n:02}");
        let class = if n % 2 == 0 { Class::Blob } else { Class::Text };
        let lines = 200 + n * 37;
        let data = block_json(&id, n, lines, idle_since);
        match class {
            Class::Blob => objects.execute(
                "INSERT INTO db_block (oid, version, data) VALUES (?1, 1, ?2)",
                params![id, data.as_bytes()],
            ),
            Class::Text => objects.execute(
                "INSERT INTO db_block (oid, version, data) VALUES (?1, 1, ?2)",
                params![id, data],
            ),
        }
        .unwrap();
        let output = output_for(&id, lines);
        files.create(&id, OUTPUT_FILE, FileOpts::default()).unwrap();
        files.append(&id, OUTPUT_FILE, &output).unwrap();
        blocks.push(AppBlock {
            id,
            class,
            data,
            output,
        });
    }
    blocks
}

fn archiver(db: &Path, archives: &Path) -> Archiver {
    let stores = Stores {
        objects: Arc::new(SqliteObjects::open(db.join("wave.db")).unwrap()),
        files: Arc::new(SqliteFiles::open(db.join("filestore.db")).unwrap()),
        archive_dir: Arc::new(FsArchiveDir::open(archives).unwrap()),
        clock: Arc::new(SystemClock),
    };
    let options = ArchiverOptions {
        workers: Some(2),
        ..Default::default()
    };
    Archiver::new(stores, runtime(), load_policy("inactivity"), options).unwrap()
}

/// AgentMux's read: `row.get::<Vec<u8>>`, which refuses a TEXT value.
fn read_as_bytes(conn: &Connection, id: &str) -> rusqlite::Result<Vec<u8>> {
    conn.query_row(
        "SELECT data FROM db_block WHERE oid = ?1",
        params![id],
        |r| r.get::<_, Vec<u8>>(0),
    )
}

/// A reader that wants text.
fn read_as_text(conn: &Connection, id: &str) -> rusqlite::Result<String> {
    conn.query_row(
        "SELECT data FROM db_block WHERE oid = ?1",
        params![id],
        |r| r.get::<_, String>(0),
    )
}

fn storage_class(conn: &Connection, id: &str) -> String {
    conn.query_row(
        "SELECT typeof(data) FROM db_block WHERE oid = ?1",
        params![id],
        |r| r.get(0),
    )
    .unwrap()
}

fn version_column(conn: &Connection, id: &str) -> i64 {
    conn.query_row(
        "SELECT version FROM db_block WHERE oid = ?1",
        params![id],
        |r| r.get(0),
    )
    .unwrap()
}

/// A key the archiver writes (and no other key does).
fn archiver_key(key: &str) -> bool {
    key.starts_with("session:archive") || key == "session:restored_at"
}

/// Scans a JSON string starting at its opening quote; returns its end.
fn string_end(b: &[u8], mut i: usize) -> usize {
    i += 1;
    while b[i] != b'"' {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// `doc` with every member of `meta` whose key is the archiver's cut out, together with the
/// comma that joined it to the member before, and the block's `"version":N` number replaced by
/// `V`. Independent of the store's splicer: keys are found by their spelling in the text
/// (the archiver's keys need no escapes) and values are measured by serde's stream parser.
fn outside_archiver_keys(doc: &[u8]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < doc.len() {
        if doc[i] == b'"' {
            let end = string_end(doc, i);
            let key = std::str::from_utf8(&doc[i + 1..end - 1]).unwrap();
            let mut after = end;
            while doc[after].is_ascii_whitespace() {
                after += 1;
            }
            let is_member = doc[after] == b':';
            if is_member && (archiver_key(key) || key == "version") {
                let value_start = after
                    + 1
                    + doc[after + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_whitespace())
                        .count();
                let mut values =
                    serde_json::Deserializer::from_slice(&doc[value_start..]).into_iter::<Value>();
                values.next().unwrap().unwrap();
                let value_end = value_start + values.byte_offset();
                if key == "version" {
                    out.extend_from_slice(&doc[i..value_start]);
                    out.push(b'V');
                } else {
                    // Drop the comma (and whitespace) before the member, or the one after it.
                    let trimmed = out.iter().rposition(|c| !c.is_ascii_whitespace()).unwrap();
                    if out[trimmed] == b',' {
                        out.truncate(trimmed);
                    } else {
                        let next = value_end
                            + doc[value_end..]
                                .iter()
                                .take_while(|c| c.is_ascii_whitespace())
                                .count();
                        if doc[next] == b',' {
                            i = next + 1;
                            while doc[i].is_ascii_whitespace() {
                                i += 1;
                            }
                            continue;
                        }
                    }
                }
                i = value_end;
                continue;
            }
            out.extend_from_slice(&doc[i..end]);
            i = end;
            continue;
        }
        out.push(doc[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// Reads a block back the way its app does and checks class, parse and bytes.
fn check_block(conn: &Connection, b: &AppBlock, stage: &str) -> Value {
    let id = &b.id;
    let (bytes, class) = match b.class {
        Class::Blob => {
            let bytes = read_as_bytes(conn, id)
                .unwrap_or_else(|e| panic!("{stage}: bytes-only read of {id} failed: {e}"));
            (bytes, "blob")
        }
        Class::Text => {
            assert!(
                read_as_bytes(conn, id).is_err(),
                "{stage}: a bytes-only reader must refuse TEXT ({id} is no longer TEXT?)"
            );
            (read_as_text(conn, id).unwrap().into_bytes(), "text")
        }
    };
    assert_eq!(storage_class(conn, id), class, "{stage}: class of {id}");
    let doc: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{stage}: {id} no longer parses: {e}"));
    assert_eq!(
        doc["version"].as_i64(),
        Some(version_column(conn, id)),
        "{stage}: the block's version follows the row's"
    );
    assert_eq!(
        outside_archiver_keys(&bytes),
        outside_archiver_keys(b.data.as_bytes()),
        "{stage}: {id} changed outside the archiver's keys"
    );
    doc
}

fn read_output(files: &SqliteFiles, id: &str) -> Option<Vec<u8>> {
    let stat = files.stat(id, OUTPUT_FILE).unwrap()?;
    let mut out = Vec::new();
    while (out.len() as u64) < stat.size {
        let chunk = files
            .read(id, OUTPUT_FILE, out.len() as u64, 1 << 20)
            .unwrap();
        assert!(!chunk.is_empty());
        out.extend_from_slice(&chunk);
    }
    Some(out)
}

#[test]
fn the_stripper_cuts_only_the_archiver_keys() {
    let doc = br#"{"version": 4,"meta":{"session:archived_at":1,"view":"a","session:archive_path":"x\"y","n":1.0,"session:restored_at":2},"z":1E+2}"#;
    assert_eq!(
        outside_archiver_keys(doc),
        r#"{"version": V,"meta":{"view":"a","n":1.0},"z":1E+2}"#
    );
}

#[test]
fn a_bytes_only_reader_refuses_text_so_the_check_below_means_something() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(WAVE_BLOCK_SCHEMA).unwrap();
    conn.execute(
        "INSERT INTO db_block (oid, version, data) VALUES ('t', 1, ?1)",
        params!["{}"],
    )
    .unwrap();
    let err = read_as_bytes(&conn, "t").unwrap_err();
    assert!(
        matches!(
            err,
            rusqlite::Error::InvalidColumnType(_, _, rusqlite::types::Type::Text)
        ),
        "{err:?}"
    );
}

#[test]
fn blob_and_text_blocks_keep_their_class_and_bytes_through_sweep_and_restore() {
    let db = tempfile::tempdir().unwrap();
    let archives = tempfile::tempdir().unwrap();
    let blocks = app_data_dir(db.path(), 6);
    let conn = Connection::open(db.path().join("wave.db")).unwrap();
    for b in &blocks {
        check_block(&conn, b, "as written");
    }

    let a = archiver(db.path(), archives.path());
    let summary = a.sweep(|_| {}).unwrap().value;
    assert_eq!(summary.archived as usize, blocks.len(), "{summary:?}");
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);

    let files = SqliteFiles::open(db.path().join("filestore.db")).unwrap();
    for b in &blocks {
        let doc = check_block(&conn, b, "after sweep");
        assert!(
            doc["meta"]["session:archived_at"].as_i64().unwrap_or(0) > 0,
            "{} is not marked archived: {doc}",
            b.id
        );
        assert_eq!(
            read_output(&files, &b.id),
            None,
            "{}: live output kept",
            b.id
        );
    }

    for b in &blocks {
        a.restore(&b.id).unwrap();
        let doc = check_block(&conn, b, "after restore");
        assert!(doc["meta"].get("session:archived_at").is_none(), "{doc}");
        assert!(doc["meta"]["session:restored_at"].as_i64().unwrap_or(0) > 0);
        assert_eq!(read_output(&files, &b.id).as_ref(), Some(&b.output));
    }

    // A second round over restored blocks (meta now holds `restored_at`, which archiving
    // keeps) stays faithful too.
    for b in &blocks {
        a.archive(&b.id).unwrap();
        check_block(&conn, b, "after a second archive");
        a.restore(&b.id).unwrap();
        check_block(&conn, b, "after a second restore");
        assert_eq!(read_output(&files, &b.id).as_ref(), Some(&b.output));
    }
}

#[test]
fn a_block_whose_data_is_neither_text_nor_a_blob_is_refused_and_left_alone() {
    use session_archiver::store::{ObjectStore, StoreError};
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("wave.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(WAVE_BLOCK_SCHEMA).unwrap();
    conn.execute(
        "INSERT INTO db_block (oid, version, data) VALUES ('n', 3, 42)",
        [],
    )
    .unwrap();
    let objects = SqliteObjects::open(&path).unwrap();
    let mut patch = session_archiver::store::Meta::new();
    patch.insert("session:archived_at".into(), Value::from(1));
    let err = objects.update_meta("n", &patch).unwrap_err();
    let StoreError::Io(msg) = err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("object n") && msg.contains("neither text nor a blob"),
        "{msg}"
    );
    assert_eq!(storage_class(&conn, "n"), "integer");
    assert_eq!(version_column(&conn, "n"), 3);
}
