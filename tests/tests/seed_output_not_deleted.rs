//! A session the seed archived but whose live output it failed to delete (it only logged a
//! warning): the live output still holds the archived bytes. Restore and export must count them
//! once, not as archive + the whole live output.

use std::io::Write;

use serde_json::json;
use session_archiver::store::ObjectStore;
use session_archiver_testkit::MockHost;

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(raw).unwrap();
    e.finish().unwrap()
}

/// Session `s`, archived the seed's way, its live output left in place; with or without the
/// CRC-32 in meta.
fn seed_archived_but_not_deleted(with_crc: bool) -> (MockHost, Vec<u8>) {
    let host = MockHost::new();
    host.session("s").idle_days(10).lines(80).create();
    let raw = host.output("s").expect("output");
    host.put_archived("s", &gzip(&raw), &raw);
    if !with_crc {
        host.objects
            .inner
            .update_meta(
                "s",
                &serde_json::from_value(json!({"session:archive_crc32": null})).unwrap(),
            )
            .unwrap();
    }
    (host, raw)
}

fn export(host: &MockHost) -> Vec<u8> {
    let mut out = Vec::new();
    host.archiver("inactivity", "{}")
        .export("s", &mut out)
        .expect("export");
    out
}

#[test]
fn a_seed_archive_whose_live_output_was_not_deleted_is_exported_and_restored_once() {
    // The seed never records a CRC.
    let with_crc = false;
    {
        let (host, raw) = seed_archived_but_not_deleted(with_crc);
        let got = export(&host);
        assert!(
            got == raw,
            "crc in meta {with_crc}: exported {} bytes, the session has {}",
            got.len(),
            raw.len()
        );

        let outcome = host
            .archiver("inactivity", "{}")
            .restore("s")
            .expect("restore")
            .value;
        assert_eq!(outcome.archived_bytes, raw.len() as u64);
        assert_eq!(outcome.newer_bytes, 0, "crc in meta {with_crc}");
        let output = host.output("s").unwrap();
        assert!(
            output == raw,
            "crc in meta {with_crc}: restored {} bytes, the session has {}",
            output.len(),
            raw.len()
        );
    }
}

#[test]
fn output_the_app_appended_after_the_seeds_failed_delete_is_kept_after_the_archived_bytes() {
    let (host, raw) = seed_archived_but_not_deleted(false);
    let newer = b"{\"written\":\"after the seed archived\"}\n";
    host.append_output("s", newer);
    let whole = [raw.as_slice(), newer].concat();
    assert!(export(&host) == whole, "export counts every byte once");

    let outcome = host
        .archiver("inactivity", "{}")
        .restore("s")
        .expect("restore")
        .value;
    assert_eq!(outcome.newer_bytes, newer.len() as u64);
    assert!(host.output("s").unwrap() == whole);
}

#[test]
fn a_different_live_output_of_the_same_length_is_still_output_written_after_archiving() {
    let (host, raw) = seed_archived_but_not_deleted(false);
    // The app re-created output with other bytes of exactly the archived length.
    let other: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'a' { b'b' } else { *b })
        .collect();
    assert_ne!(other, raw);
    let files = &host.files.inner;
    session_archiver::store::FileStore::delete(files, "s", "output").unwrap();
    host.append_output("s", &other);
    let whole = [raw.as_slice(), other.as_slice()].concat();
    assert!(export(&host) == whole);
}

#[test]
fn beside_an_archive_of_ours_a_live_output_repeating_the_archived_bytes_is_kept_as_newer_output() {
    // Our archives record their CRC and the live file they read is always gone before the
    // archive counts: a live file here is output the app wrote after archiving, even when it
    // repeats the archived bytes (a reopened session writing the same line again).
    let (host, raw) = seed_archived_but_not_deleted(true);
    let twice = [&raw[..], &raw[..]].concat();
    let got = export(&host);
    assert!(
        got == twice,
        "exported {} bytes, archive + live hold {}",
        got.len(),
        twice.len()
    );
    let outcome = host
        .archiver("inactivity", "{}")
        .restore("s")
        .expect("restore")
        .value;
    assert_eq!(outcome.archived_bytes, raw.len() as u64);
    assert_eq!(outcome.newer_bytes, raw.len() as u64);
    assert!(host.output("s").unwrap() == twice);
}
