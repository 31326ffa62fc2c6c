//! gzip interoperability with the real CLI tools: what the policy writes, `gzip` and `zcat` read;
//! what `gzip -9`, `pigz` and `cat a.gz b.gz` produce, the policy restores byte-exact; and every
//! optional header field (FEXTRA, FNAME, FCOMMENT, FHCRC) is understood.
//!
//! The tools must be installed (`.ci/run` installs them): a missing tool fails the test, it never
//! skips it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use session_archiver::archiver::Archiver;
use session_archiver::bindings::guest::Source;
use session_archiver_testkit::fixtures::jsonl_lines;
use session_archiver_testkit::MockHost;

/// Runs `tool args…` with `stdin`, returning stdout; fails the test if it is missing or fails.
fn run(tool: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `{tool}` ({e}): install gzip/pigz (e.g. apt-get install gzip pigz)")
        });
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || input.write_all(&data));
    let out = child.wait_with_output().expect("wait for the tool");
    feeder.join().unwrap().expect("feed stdin");
    assert!(
        out.status.success(),
        "`{tool} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write temp file");
    path.to_str().unwrap().to_string()
}

/// Several MiB of session output: more than one 1 MiB chunk through the policy's streams.
fn big_output() -> Vec<u8> {
    let mut out = jsonl_lines(7, 30_000);
    out.extend_from_slice(b"{\"no\":\"trailing newline\"}");
    out
}

/// Makes `id` an archived session whose archive is `gz`, then restores it and checks the bytes
/// (and that export agrees).
fn assert_restores(gz: &[u8], raw: &[u8], what: &str) {
    let host = MockHost::new();
    host.session("s").create();
    host.put_archived("s", gz, raw);
    let archiver = host.archiver("inactivity", "{}");

    let mut exported = Vec::new();
    let e = archiver
        .export("s", &mut exported)
        .unwrap_or_else(|e| panic!("{what}: export: {e}"))
        .value;
    assert_eq!(e.source, Source::Archive, "{what}");
    assert!(exported == raw, "{what}: export differs");

    let out = archiver
        .restore("s")
        .unwrap_or_else(|e| panic!("{what}: restore: {e}"))
        .value;
    assert_eq!(out.archived_bytes, raw.len() as u64, "{what}");
    let restored = host.output("s").expect("restored output");
    assert_eq!(restored.len(), raw.len(), "{what}: length");
    assert!(restored == raw, "{what}: restored bytes differ");
}

fn archive_with_policy(archiver: &Archiver, host: &MockHost, id: &str) -> Vec<u8> {
    let out = archiver.archive(id).expect("archive").value;
    host.archive_bytes(&out.archive_name.expect("archive name"))
        .expect("archive file")
}

#[test]
fn an_archive_written_by_the_policy_passes_gzip_t_and_zcat_gives_the_original() {
    // Guards "archives are ordinary gzip": users and the seed's tools read them without us.
    let dir = tempfile::tempdir().unwrap();
    let host = MockHost::new();
    let small = b"line1\nline2\n".to_vec();
    let big = big_output();
    host.session("small").output(small.clone()).create();
    host.session("big").output(big.clone()).create();
    host.session("binary")
        .output((0..=255u8).cycle().take(300_000).collect::<Vec<_>>())
        .create();
    let binary = host.output("binary").unwrap();
    for (level, expect_smaller) in [(0, false), (1, true), (6, true), (9, true)] {
        let archiver = host.archiver("inactivity", &format!(r#"{{"level":{level}}}"#));
        for (id, raw) in [("small", &small), ("big", &big), ("binary", &binary)] {
            let gz = archive_with_policy(&archiver, &host, id);
            let path = write_temp(dir.path(), &format!("{id}-{level}.jsonl.gz"), &gz);

            run("gzip", &["-t", &path], b"");
            let z = run("zcat", &[&path], b"");
            assert!(&z == raw, "zcat of {id} at level {level} differs");
            let p = run("pigz", &["-dc", &path], b"");
            assert!(&p == raw, "pigz -dc of {id} at level {level} differs");
            if id == "big" {
                assert_eq!(gz.len() < big.len() / 4, expect_smaller, "level {level}");
            }

            archiver.restore(id).expect("restore for the next level");
        }
    }
}

#[test]
fn an_archive_made_by_gzip_9_restores_byte_exact() {
    // Guards reading archives other tools wrote (`gzip` sets FNAME when compressing a file).
    let dir = tempfile::tempdir().unwrap();
    let raw = big_output();
    let path = write_temp(dir.path(), "s.jsonl", &raw);
    let gz = run("gzip", &["-9", "-c", &path], b"");
    assert_ne!(gz[3] & 0x08, 0, "gzip recorded the file name (FNAME)");

    assert_restores(&gz, &raw, "gzip -9");
    assert_restores(
        &run("gzip", &["-1", "-n"], &raw),
        &raw,
        "gzip -1 -n from stdin",
    );
}

#[test]
fn an_archive_made_by_pigz_restores_byte_exact() {
    // Guards pigz's output: many independently flushed blocks (128 KiB) in one member.
    let dir = tempfile::tempdir().unwrap();
    let raw = big_output();
    let path = write_temp(dir.path(), "s.jsonl", &raw);

    assert_restores(
        &run("pigz", &["-c", "-p", "2", "-b", "128", &path], b""),
        &raw,
        "pigz -b 128",
    );
    // Zopfli is slow: a smaller input keeps the test quick.
    let small = jsonl_lines(9, 1_500);
    assert_restores(
        &run("pigz", &["-11", "-c", "-p", "2"], &small),
        &small,
        "pigz -11 (zopfli)",
    );
    assert_restores(
        &run("pigz", &["-c", "-i", "-p", "2", &path], b""),
        &raw,
        "pigz -i (independent blocks)",
    );
}

#[test]
fn concatenated_gzip_members_restore_as_one_stream() {
    // Guards multi-member files (`cat a.gz b.gz`, log rotation appends): all members are read.
    let a = jsonl_lines(1, 500);
    let b = jsonl_lines(2, 700);
    let mut raw = a.clone();
    raw.extend_from_slice(&b);
    let ga = run("gzip", &["-c", "-6"], &a);
    let gb = run("pigz", &["-c", "-9"], &b);
    let empty = run("gzip", &["-c"], b"");

    let two = [ga.clone(), gb.clone()].concat();
    let verified = run("zcat", &[], &two);
    assert!(verified == raw, "zcat itself reads both members");
    assert_restores(&two, &raw, "cat a.gz b.gz");

    let with_empty = [ga.clone(), empty.clone(), gb.clone(), empty].concat();
    assert_restores(&with_empty, &raw, "members with empty ones between");

    let many: Vec<u8> = (0..20).flat_map(|_| ga.clone()).collect();
    assert_restores(&many, &a.repeat(20), "20 members");
}

/// A gzip member with every optional header field: FTEXT, FHCRC, FEXTRA, FNAME, FCOMMENT.
fn gzip_with_all_header_fields(raw: &[u8]) -> Vec<u8> {
    const FTEXT: u8 = 0x01;
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    let mut gz = vec![
        0x1f,
        0x8b,
        8,
        FTEXT | FHCRC | FEXTRA | FNAME | FCOMMENT,
        0x78,
        0x56,
        0x34,
        0x12, // mtime
        2,    // xfl: best compression
        3,    // os: unix
    ];
    // Two extra subfields ("AP" with 5 bytes, "xy" with 0), as RFC 1952 lays them out.
    let extra = [b'A', b'P', 5, 0, 1, 2, 3, 4, 5, b'x', b'y', 0, 0];
    gz.extend_from_slice(&(extra.len() as u16).to_le_bytes());
    gz.extend_from_slice(&extra);
    gz.extend_from_slice(b"session-output.jsonl\0");
    gz.extend_from_slice(b"made by hand: FEXTRA FNAME FCOMMENT FHCRC\0");
    let mut hcrc = flate2::Crc::new();
    hcrc.update(&gz);
    gz.extend_from_slice(&((hcrc.sum() & 0xffff) as u16).to_le_bytes());
    let mut body = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    body.write_all(raw).unwrap();
    gz.extend_from_slice(&body.finish().unwrap());
    let mut crc = flate2::Crc::new();
    crc.update(raw);
    gz.extend_from_slice(&crc.sum().to_le_bytes());
    gz.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    gz
}

#[test]
fn an_archive_with_every_optional_header_field_restores() {
    // Guards header parsing: FEXTRA, FNAME, FCOMMENT and FHCRC are skipped correctly.
    let raw = jsonl_lines(3, 2_000);
    let gz = gzip_with_all_header_fields(&raw);
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(dir.path(), "hand.jsonl.gz", &gz);
    run("gzip", &["-t", &path], b"");
    let z = run("zcat", &[&path], b"");
    assert!(z == raw, "the hand-made fixture is valid gzip");

    assert_restores(&gz, &raw, "all header fields");
    let twice = [gz.clone(), gz].concat();
    assert_restores(&twice, &raw.repeat(2), "two such members");
}

/// The gzip members of `gz`, as (compressed length, uncompressed bytes), read with flate2 one
/// member at a time.
fn members_of(gz: &[u8]) -> Vec<(usize, Vec<u8>)> {
    use std::io::Read;
    let mut rest = gz;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let mut dec = flate2::bufread::GzDecoder::new(rest);
        let mut raw = Vec::new();
        dec.read_to_end(&mut raw).expect("a whole member");
        let left = dec.into_inner();
        out.push((rest.len() - left.len(), raw));
        rest = left;
    }
    out
}

#[test]
fn a_large_session_archived_as_parallel_members_is_ordinary_gzip_and_restores() {
    // Guards the parallel path: members compressed by helper instances on two workers, written
    // in order into one multi-member file that gzip, zcat and pigz read as the original, with the
    // seed's meta (archived bytes, CRC-32 of the whole) unchanged in meaning.
    let dir = tempfile::tempdir().unwrap();
    let host = MockHost::new();
    let raw = big_output();
    host.session("big").output(raw.clone()).create();
    let member = 256 * 1024;
    let archiver = Archiver::new(
        host.stores(),
        session_archiver_testkit::shared_runtime(),
        session_archiver_testkit::load_policy("inactivity"),
        session_archiver::archiver::ArchiverOptions {
            config: format!(r#"{{"parallel_min_bytes":{member},"member_bytes":{member}}}"#),
            workers: Some(2),
            locks: session_archiver::locks::SessionLocks::in_process(),
        },
    )
    .expect("archiver");
    let out = archiver.archive("big").expect("archive").value;
    let gz = host
        .archive_bytes(&out.archive_name.expect("archive name"))
        .expect("archive file");

    let members = members_of(&gz);
    assert_eq!(
        members.len(),
        raw.len().div_ceil(member),
        "one member per range"
    );
    for (i, (_, m)) in members.iter().enumerate() {
        let want = &raw[i * member..raw.len().min((i + 1) * member)];
        assert!(m == want, "member {i} holds its range, in order");
    }
    assert_eq!(
        host.calls_to("archive-dir.create").len(),
        1,
        "one archive file"
    );

    let meta = host.meta("big");
    assert_eq!(meta["session:archived_bytes"], raw.len() as u64);
    let mut crc = flate2::Crc::new();
    crc.update(&raw);
    assert_eq!(meta["session:archive_crc32"], crc.sum());
    assert_eq!(meta["session:archive_gz_bytes"], gz.len() as u64);
    assert_eq!(out.crc32, crc.sum());

    let path = write_temp(dir.path(), "big.jsonl.gz", &gz);
    run("gzip", &["-t", &path], b"");
    assert!(run("zcat", &[&path], b"") == raw, "zcat gives the original");
    assert!(
        run("pigz", &["-dc", &path], b"") == raw,
        "pigz -d gives the original"
    );

    let mut exported = Vec::new();
    archiver.export("big", &mut exported).expect("export");
    assert!(exported == raw, "export of the multi-member archive");
    archiver.restore("big").expect("restore");
    assert!(
        host.output("big").unwrap() == raw,
        "restore gives the original"
    );
}
