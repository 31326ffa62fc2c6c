//! Bad archives: every truncation of a valid archive, every bit of its trailer
//! flipped, trailing garbage, and a gzip bomb. Each gives a typed `corrupt` (or `too-large`)
//! error and leaves the session's meta and live data exactly as they were: a failed restore must
//! never cost the bytes that are still safe.

use std::io::Write;
use std::time::{Duration, Instant};

use session_archiver::archiver::Archiver;
use session_archiver::bindings::guest::Error as PolicyError;
use session_archiver::store::{FileStore, Meta};
use session_archiver_testkit::{expect_policy_error, MockHost};

const NAME: &str = "s.jsonl.gz";
/// Written after archiving; a failed restore must keep it.
const NEWER: &[u8] = b"{\"written\":\"after archiving\"}\n";

/// The names of the files in `zone` (whatever a policy calls its scratch files).
fn zone_files(host: &MockHost, zone: &str) -> Vec<String> {
    host.files
        .inner
        .list_files()
        .unwrap()
        .into_iter()
        .filter(|(z, ..)| z == zone)
        .map(|(_, name, _)| name)
        .collect()
}

/// Bytes the policy appended to any file of `zone`, from the call log (`zone/name +n`).
fn appended_to_zone(host: &MockHost, zone: &str) -> u64 {
    let prefix = format!("{zone}/");
    host.calls_to("files.append")
        .iter()
        .filter_map(|c| c.args.strip_prefix(&prefix))
        .filter_map(|rest| rest.rsplit_once(" +"))
        .map(|(_, n)| n.parse::<u64>().expect("append size"))
        .sum()
}

/// A session `s` archived by the policy, with newer live output; the archive's bytes.
struct Fixture {
    host: MockHost,
    archiver: Archiver,
    gz: Vec<u8>,
    meta: Meta,
}

fn fixture(lines: usize) -> Fixture {
    let host = MockHost::new();
    host.session("s").idle_days(10).lines(lines).create();
    let archiver = host.archiver("inactivity", "{}");
    archiver.archive("s").expect("archive");
    host.append_output("s", NEWER);
    let gz = host.archive_bytes(NAME).expect("archive written");
    let meta = host.meta("s");
    Fixture {
        host,
        archiver,
        gz,
        meta,
    }
}

impl Fixture {
    /// Replaces the archive with `bad`, then checks restore and export refuse it as `corrupt`
    /// and that nothing changed. Returns the restore error.
    fn assert_refused(&self, bad: &[u8], what: &str) -> PolicyError {
        let host = &self.host;
        host.archive_file(NAME, bad, host.now_ms());

        let err = expect_policy_error(self.archiver.restore("s"));
        assert!(
            matches!(err, PolicyError::Corrupt(_)),
            "{what}: restore gave {err:?}"
        );
        let export = expect_policy_error(self.archiver.export("s", std::io::sink()));
        assert!(
            matches!(export, PolicyError::Corrupt(_)),
            "{what}: export gave {export:?}"
        );

        assert_eq!(host.meta("s"), self.meta, "{what}: meta untouched");
        assert_eq!(
            host.output("s").as_deref(),
            Some(NEWER),
            "{what}: live data untouched"
        );
        assert_eq!(
            zone_files(host, "s"),
            ["output"],
            "{what}: no scratch file left"
        );
        assert_eq!(
            host.archive_bytes(NAME).as_deref(),
            Some(bad),
            "{what}: archive kept"
        );
        err
    }
}

#[test]
fn every_truncated_prefix_of_a_valid_archive_is_refused_as_corrupt() {
    // Guards truncation detection at every byte: in the header, the deflate stream, the trailer.
    let f = fixture(30);
    assert!(
        f.gz.len() > 200,
        "a non-trivial archive ({} bytes)",
        f.gz.len()
    );

    for len in 0..f.gz.len() {
        f.assert_refused(
            &f.gz[..len],
            &format!("prefix of {len}/{} bytes", f.gz.len()),
        );
    }

    eprintln!("truncation sweep: {} prefixes checked", f.gz.len());
    // The intact archive still restores: the refusals were about the bytes, not the session.
    f.host.archive_file(NAME, &f.gz, f.host.now_ms());
    let out = f
        .archiver
        .restore("s")
        .expect("intact archive restores")
        .value;
    assert_eq!(out.newer_bytes, NEWER.len() as u64);
}

#[test]
fn truncating_a_multi_chunk_archive_at_chunk_boundaries_is_refused_as_corrupt() {
    // Guards truncation where the reader's 1 MiB chunks end: incompressible data makes a 3 MiB
    // archive, cut at and around each chunk boundary.
    let host = MockHost::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let raw: Vec<u8> = (0..3 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    host.session("s").output(raw.clone()).create();
    let archiver = host.archiver("inactivity", "{}");
    archiver.archive("s").expect("archive");
    host.append_output("s", NEWER);
    let f = Fixture {
        gz: host.archive_bytes(NAME).unwrap(),
        meta: host.meta("s"),
        host,
        archiver,
    };
    let n = f.gz.len();
    assert!(n > 3 << 20);

    for len in [
        1 << 20,
        (1 << 20) - 1,
        (1 << 20) + 1,
        2 << 20,
        3 << 20,
        n - 8,
        n - 4,
        n - 1,
    ] {
        f.assert_refused(&f.gz[..len], &format!("prefix of {len}/{n} bytes"));
    }
}

#[test]
fn flipping_any_bit_of_the_trailer_is_refused_as_corrupt() {
    // Guards the CRC-32 (bytes −8..−4) and ISIZE (−4..) checks, bit by bit.
    let f = fixture(30);
    let start = f.gz.len() - 8;

    for bit in 0..64 {
        let mut bad = f.gz.clone();
        bad[start + bit / 8] ^= 1 << (bit % 8);
        let err = f.assert_refused(&bad, &format!("trailer bit {bit}"));
        let PolicyError::Corrupt(msg) = err else {
            unreachable!()
        };
        assert!(!msg.is_empty());
    }
}

#[test]
fn flipping_bits_of_the_header_and_body_is_refused() {
    // Guards the other fields: magic, method, reserved flags and the deflate stream (a bit flip
    // there is caught by the deflate decoder, the CRC or the length).
    let f = fixture(30);
    for (pos, bit) in [
        (0, 0),
        (1, 7),
        (2, 0),
        (3, 5),
        (3, 7),
        (12, 3),
        (40, 1),
        (100, 6),
    ] {
        let mut bad = f.gz.clone();
        bad[pos] ^= 1 << bit;
        f.assert_refused(&bad, &format!("byte {pos} bit {bit}"));
    }
}

#[test]
fn trailing_garbage_after_the_archive_is_refused_as_corrupt() {
    // Guards "trailing garbage rejected" (gzip -t reports it too).
    let f = fixture(30);
    for (tail, what) in [
        (&b"garbage"[..], "text"),
        (b"\x1f", "half a magic number"),
        (b"\x1f\x8b", "a magic number alone"),
        (
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
            "a member header only",
        ),
        (&[0u8; 8], "zero padding"),
    ] {
        let bad = [f.gz.clone(), tail.to_vec()].concat();
        f.assert_refused(&bad, what);
    }
}

/// A gzip member of 1 GiB of zeros (about 1 MB), compressed streaming so the zeros never exist
/// at once; built once per test binary.
fn zeros_bomb() -> &'static [u8] {
    static BOMB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BOMB.get_or_init(|| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            e.write_all(&zeros).unwrap();
        }
        e.finish().unwrap()
    })
}

#[test]
fn a_gzip_bomb_is_refused_quickly_without_inflating_past_the_limit() {
    // Guards the decompression limit: 1 GiB of zeros in a ~1 MB file, meta claiming 1 KiB.
    let bomb = zeros_bomb();
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    let host = MockHost::new();
    host.session("s").create();
    host.put_archived("s", bomb, &[0u8; 1024]);
    let meta = host.meta("s");
    let archiver = host.archiver("inactivity", "{}");
    host.rec.reset_log();

    let started = Instant::now();
    let err = expect_policy_error(archiver.restore("s"));
    let took = started.elapsed();

    assert!(
        matches!(err, PolicyError::Corrupt(_) | PolicyError::TooLarge(_)),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(5), "refused in {took:?}");
    let written = appended_to_zone(&host, "s");
    assert!(
        written <= 1024,
        "wrote {written} bytes, more than the 1 KiB limit"
    );
    assert_eq!(host.meta("s"), meta);
    assert!(host.output("s").is_none());
    assert!(zone_files(&host, "s").is_empty(), "no scratch file left");

    let mut sink = Vec::new();
    let err = expect_policy_error(archiver.export("s", &mut sink));
    assert!(
        matches!(err, PolicyError::Corrupt(_) | PolicyError::TooLarge(_)),
        "{err:?}"
    );
    assert!(sink.len() <= 1024, "export wrote {} bytes", sink.len());
}

#[test]
fn an_honest_archive_over_the_restore_limit_is_refused_before_anything_is_written() {
    // Guards `max_restore_bytes`: meta that truthfully says 1 GiB, a limit of 1 MiB.
    let bomb = zeros_bomb();
    let host = MockHost::new();
    host.session("s").create();
    host.put_archived("s", bomb, &[]);
    let mut patch = Meta::new();
    patch.insert("session:archived_bytes".into(), (1u64 << 30).into());
    let crc = {
        let mut c = flate2::Crc::new();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            c.update(&zeros);
        }
        c.sum()
    };
    patch.insert("session:archive_crc32".into(), crc.into());
    session_archiver::store::ObjectStore::update_meta(&host.objects.inner, "s", &patch).unwrap();
    let archiver = host.archiver("inactivity", r#"{"max_restore_bytes":1048576}"#);
    host.rec.reset_log();

    let err = expect_policy_error(archiver.restore("s"));

    assert!(
        matches!(&err, PolicyError::TooLarge(m) if m.contains("max_restore_bytes")),
        "{err:?}"
    );
    assert_eq!(host.rec.any_write(), None, "nothing written");
    assert!(
        host.calls_to("archive-dir.open").is_empty(),
        "nothing even read"
    );
}
