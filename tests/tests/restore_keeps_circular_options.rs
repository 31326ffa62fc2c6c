//! A circular output archived and restored comes back circular with its capacity, not as an
//! unbounded file, and any output comes back with its own file meta.

use session_archiver::store::FileStore;
use session_archiver_testkit::MockHost;

#[test]
fn restore_keeps_a_circular_files_capacity() {
    let host = MockHost::new();
    host.session("c")
        .idle_days(10)
        .lines(30)
        .circular(1 << 20)
        .create();
    let before = host.files.inner.stat("c", "output").unwrap().unwrap();
    assert_eq!(before.circular_max_size, Some(1 << 20));
    let bytes = host.output("c").unwrap();
    let archiver = host.archiver("inactivity", "{}");

    archiver.archive("c").expect("archive");
    assert_eq!(
        host.meta_value("c", "session:archive_circular_max_size"),
        1 << 20
    );
    archiver.restore("c").expect("restore");

    let after = host.files.inner.stat("c", "output").unwrap().unwrap();
    assert_eq!(after.circular_max_size, Some(1 << 20), "{after:?}");
    assert_eq!(host.output("c"), Some(bytes));
    assert!(host
        .meta_value("c", "session:archive_circular_max_size")
        .is_null());

    // Appends past the capacity wrap as they did before archiving.
    let big = vec![b'x'; (1 << 20) + 10];
    host.append_output("c", &big);
    let held = host.files.inner.stat("c", "output").unwrap().unwrap();
    assert_eq!(held.circular_max_size, Some(1 << 20));
}

#[test]
fn an_ordinary_file_is_restored_ordinary() {
    let host = MockHost::new();
    host.session("o").idle_days(10).lines(30).create();
    let archiver = host.archiver("inactivity", "{}");
    archiver.archive("o").expect("archive");
    assert!(host
        .meta_value("o", "session:archive_circular_max_size")
        .is_null());
    archiver.restore("o").expect("restore");
    let after = host.files.inner.stat("o", "output").unwrap().unwrap();
    assert_eq!(after.circular_max_size, None);
}

#[test]
fn restore_keeps_the_outputs_own_file_meta() {
    let host = MockHost::new();
    host.session("m").idle_days(10).lines(30).create();
    let file_meta = serde_json::json!({"term:rows": 40, "controller": "shell"});
    host.files
        .inner
        .set_meta("m", "output", file_meta.as_object().unwrap())
        .unwrap();
    let archiver = host.archiver("inactivity", "{}");
    archiver.archive("m").expect("archive");
    assert!(host.output("m").is_none(), "archived");
    assert_eq!(host.meta_value("m", "session:archive_file_meta"), file_meta);
    archiver.restore("m").expect("restore");
    let after = host.files.inner.meta("m", "output").unwrap();
    assert_eq!(serde_json::Value::Object(after), file_meta);
    assert!(host.meta_value("m", "session:archive_file_meta").is_null());
}
