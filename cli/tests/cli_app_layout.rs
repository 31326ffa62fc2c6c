//! `--data-dir` accepts the app's own `db/` directory: the object store is found by its name
//! (AgentMux `wave.db`, Wave `waveterm.db`, ours `objects.db`) or, failing that, by its
//! `db_block` table; none or several is an error that says what was found and names
//! `--objects-db`.

mod cli_support;

use std::path::Path;

use cli_support::{archiver, code, demo, json, objects_db, ok, run, stderr};

/// Renames the demo's object store (and its WAL files, if any are left) to `name`.
fn rename_objects_db(data: &Path, name: &str) {
    let from = objects_db(data);
    for suffix in ["", "-wal", "-shm"] {
        let src = format!("{}{suffix}", from.display());
        if Path::new(&src).exists() {
            std::fs::rename(&src, format!("{}{suffix}", data.join(name).display())).unwrap();
        }
    }
}

/// A SQLite file with some other table: a database that is not an object store.
fn other_db(path: &Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE settings (k TEXT, v TEXT); INSERT INTO settings VALUES ('a', 'b');",
    )
    .unwrap();
}

/// A copy of the demo's object store under another name (a second candidate).
fn copy_objects_db(data: &Path, name: &str) {
    let c = rusqlite::Connection::open(objects_db(data)).unwrap();
    c.execute("VACUUM INTO ?1", [data.join(name).to_str().unwrap()])
        .unwrap();
}

fn layout(data: &Path) -> serde_json::Value {
    json(data, &["status", "--json"])["layout"].clone()
}

#[test]
fn demo_makes_agentmux_layout_with_blocks_stored_as_blobs() {
    let (_tmp, data) = demo();
    assert!(data.join("wave.db").is_file() && data.join("filestore.db").is_file());
    assert!(!data.join("objects.db").exists());
    let l = layout(&data);
    assert_eq!(l["kind"], "agentmux", "{l}");
    assert_eq!(l["objects_db"], data.join("wave.db").to_str().unwrap());
    assert_eq!(
        l["filestore_db"],
        data.join("filestore.db").to_str().unwrap()
    );

    let mut c = archiver(&data);
    c.arg("status");
    let text = ok(c);
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.starts_with("layout: AgentMux (wave.db) in ")),
        "{text}"
    );

    // AgentMux binds db_block.data as a BLOB and reads it back as bytes only.
    let conn = rusqlite::Connection::open(data.join("wave.db")).unwrap();
    let classes: Vec<String> = conn
        .prepare("SELECT DISTINCT typeof(data) FROM db_block")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(classes, ["blob"]);
}

#[test]
fn a_wave_db_directory_is_found_by_waveterm_db() {
    let (_tmp, data) = demo();
    rename_objects_db(&data, "waveterm.db");
    let l = layout(&data);
    assert_eq!(l["kind"], "wave", "{l}");
    assert_eq!(l["description"], "Wave (waveterm.db)");
    let plan = json(&data, &["plan", "--json"]);
    assert_eq!(plan["scanned"], 42, "{plan}");
    let sweep = json(&data, &["sweep", "--json"]);
    assert!(sweep["archived"].as_u64().unwrap() > 0, "{sweep}");
}

#[test]
fn an_objects_db_directory_is_found_as_the_archivers_own_layout() {
    let (_tmp, data) = demo();
    rename_objects_db(&data, "objects.db");
    let l = layout(&data);
    assert_eq!(l["kind"], "archiver", "{l}");
    assert_eq!(l["objects_db"], data.join("objects.db").to_str().unwrap());
}

#[test]
fn a_custom_name_is_found_by_its_db_block_table() {
    let (_tmp, data) = demo();
    rename_objects_db(&data, "forkterm.db");
    other_db(&data.join("settings.db"));
    let l = layout(&data);
    assert_eq!(l["kind"], "custom", "{l}");
    assert_eq!(l["objects_db"], data.join("forkterm.db").to_str().unwrap());
    assert!(
        l["description"].as_str().unwrap().contains("forkterm.db"),
        "{l}"
    );
    let sweep = json(&data, &["sweep", "--json"]);
    assert!(sweep["archived"].as_u64().unwrap() > 0, "{sweep}");
}

#[test]
fn no_object_store_is_an_error_naming_what_was_found_and_the_flag() {
    let (_tmp, data) = demo();
    std::fs::remove_file(objects_db(&data)).unwrap();
    other_db(&data.join("settings.db"));
    for cmd in ["status", "sweep"] {
        let mut c = archiver(&data);
        c.arg(cmd);
        let out = run(c);
        assert_eq!(code(&out), 3, "{cmd}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        for part in [
            "no object store in",
            "settings.db",
            "--objects-db",
            "wave.db",
        ] {
            assert!(err.contains(part), "{part} missing: {err}");
        }
    }
}

#[test]
fn two_known_object_stores_are_an_error_naming_both() {
    let (_tmp, data) = demo();
    copy_objects_db(&data, "waveterm.db");
    let before = std::fs::read(data.join("wave.db")).unwrap();
    let mut c = archiver(&data);
    c.arg("sweep");
    let out = run(c);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    for part in [
        "several object stores",
        "wave.db",
        "waveterm.db",
        "--objects-db",
    ] {
        assert!(err.contains(part), "{part} missing: {err}");
    }
    assert_eq!(std::fs::read(data.join("wave.db")).unwrap(), before);

    // Naming one settles it.
    let wave = data.join("waveterm.db");
    let status = json(
        &data,
        &["--objects-db", wave.to_str().unwrap(), "status", "--json"],
    );
    assert_eq!(status["layout"]["kind"], "given", "{status}");
    assert_eq!(status["objects"], 42);
}

#[test]
fn two_custom_candidates_are_an_error_naming_both() {
    let (_tmp, data) = demo();
    copy_objects_db(&data, "fork-a.db");
    rename_objects_db(&data, "fork-b.db");
    let mut c = archiver(&data);
    c.arg("plan");
    let out = run(c);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    for part in ["fork-a.db", "fork-b.db", "--objects-db"] {
        assert!(err.contains(part), "{part} missing: {err}");
    }
}
