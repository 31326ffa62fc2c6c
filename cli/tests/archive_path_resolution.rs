//! `session:archive_path` as other tools and moved data directories leave it: a path whose file
//! name is the session's archive and whose parent resolves to the archive directory is accepted;
//! anything else is refused. On the real filesystem and through the `archiver` command.

mod cli_support;

use std::path::Path;

use cli_support::{archiver, code, demo, json, ok, run, stderr};
use serde_json::Value;
use session_archiver::archive_dir::fs::FsArchiveDir;
use session_archiver::archive_dir::ArchiveDir;

#[test]
fn a_path_is_the_archives_when_its_parent_resolves_to_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data/archives");
    let dir = FsArchiveDir::open(&root).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("data"), tmp.path().join("link")).unwrap();
    std::fs::create_dir(tmp.path().join("elsewhere")).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();

    let exact = dir.path("s1.jsonl.gz").unwrap();
    assert!(dir.is_path_of(&exact, "s1.jsonl.gz").unwrap());
    for ok in [
        s(&tmp.path().join("link/archives/s1.jsonl.gz")),
        s(&tmp.path().join("data/./archives/s1.jsonl.gz")),
        s(&tmp.path().join("elsewhere/../data/archives/s1.jsonl.gz")),
    ] {
        assert!(dir.is_path_of(&ok, "s1.jsonl.gz").unwrap(), "{ok}");
    }
    for bad in [
        s(&tmp.path().join("elsewhere/s1.jsonl.gz")),
        s(&tmp.path().join("link/archives/s2.jsonl.gz")),
        s(&tmp.path().join("gone/archives/s1.jsonl.gz")),
        "archives/s1.jsonl.gz".to_string(),
        "/".to_string(),
    ] {
        assert!(!dir.is_path_of(&bad, "s1.jsonl.gz").unwrap(), "{bad}");
    }
}

/// Rewrites `session:archive_path` in a block's meta (a JSON BLOB, as the app stores it).
fn set_archive_path(data: &Path, id: &str, path: &str) {
    cli_support::set_meta_key(
        data,
        id,
        "session:archive_path",
        Value::String(path.to_string()),
    );
}

#[test]
fn restore_and_export_follow_a_meta_path_through_a_symlinked_data_directory() {
    let (tmp, data) = demo();
    let plan = json(&data, &["plan", "--json"]);
    let ids: Vec<String> = plan["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "archive")
        .map(|d| d["target"].as_str().unwrap().to_string())
        .take(2)
        .collect();
    for id in &ids {
        let mut c = archiver(&data);
        c.args(["archive", id]);
        ok(c);
    }
    let link = tmp.path().join("old-name");
    std::os::unix::fs::symlink(&data, &link).unwrap();

    // Recorded through the old name of the data directory: accepted.
    let good = &ids[0];
    let via_link = link.join(format!("archives/{good}.jsonl.gz"));
    set_archive_path(&data, good, via_link.to_str().unwrap());
    let mut c = archiver(&data);
    c.args(["export", good]);
    let out = run(c);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!out.stdout.is_empty());
    let mut c = archiver(&data);
    c.args(["restore", good]);
    ok(c);

    // Pointing at a file of the same name elsewhere: refused as invalid meta.
    let bad = &ids[1];
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let other = elsewhere.join(format!("{bad}.jsonl.gz"));
    std::fs::copy(data.join(format!("archives/{bad}.jsonl.gz")), &other).unwrap();
    set_archive_path(&data, bad, other.to_str().unwrap());
    let mut c = archiver(&data);
    c.args(["export", bad]);
    let out = run(c);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("invalid meta"), "{}", stderr(&out));
}
