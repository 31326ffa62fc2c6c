//! Round trips: archive → export and archive → restore give back exactly the
//! original bytes, for arbitrary content (empty, binary, no trailing newline, CRLF, sizes around
//! the 1 MiB chunk, and over 10 MB). Guards the policy's gzip framing and chunked streaming
//! end to end; every archive is also decompressed independently with flate2 and its length and
//! CRC-32 compared with what meta records.
//!
//! `ROUND_TRIP_CASES` overrides the property's case count (default 2 000).

mod reliability;

use std::sync::OnceLock;

use proptest::prelude::*;
use reliability::{archive_name, crc32, gunzip, ARCHIVED_BYTES, ARCHIVE_CRC32};
use session_archiver::policy::LoadedPolicy;
use session_archiver_testkit::{load_policy, shared_runtime, MockHost};

fn policy() -> LoadedPolicy {
    static P: OnceLock<LoadedPolicy> = OnceLock::new();
    P.get_or_init(|| load_policy("inactivity")).clone()
}

/// Archives, exports and restores one session holding `original`; `Err` says what differed.
fn round_trip(original: &[u8], config: &str) -> Result<(), String> {
    let host = MockHost::new();
    host.session("s")
        .idle_days(30)
        .output(original.to_vec())
        .create();
    let a = host.archiver_with(policy(), shared_runtime(), config);

    let outcome = a.archive("s").map_err(|e| format!("archive: {e}"))?.value;
    if original.is_empty() {
        // The seed's contract: nothing to archive is a no-op reporting 0 bytes.
        if outcome.raw_bytes != 0 || host.archive_bytes(&archive_name("s")).is_some() {
            return Err(format!("empty output was archived: {outcome:?}"));
        }
    } else {
        if outcome.raw_bytes != original.len() as u64 {
            return Err(format!("archive reports {} raw bytes", outcome.raw_bytes));
        }
        if host.output("s").is_some() {
            return Err("the live file is still there after archiving".into());
        }
        let gz = host
            .archive_bytes(&archive_name("s"))
            .ok_or("no archive file")?;
        let raw = gunzip(&gz)?;
        if raw != original {
            return Err(format!(
                "flate2 reads {} bytes from the archive, not the {} archived",
                raw.len(),
                original.len()
            ));
        }
        let meta = host.meta("s");
        let recorded = (
            meta.get(ARCHIVED_BYTES).and_then(|v| v.as_u64()),
            meta.get(ARCHIVE_CRC32).and_then(|v| v.as_u64()),
        );
        let actual = (Some(raw.len() as u64), Some(u64::from(crc32(&raw))));
        if recorded != actual || outcome.crc32 != crc32(&raw) {
            return Err(format!(
                "meta records (len, crc) {recorded:?}, outcome crc {:#x}, archive has {actual:?}",
                outcome.crc32
            ));
        }
    }

    let mut exported = Vec::new();
    let ex = a
        .export("s", &mut exported)
        .map_err(|e| format!("export: {e}"))?
        .value;
    if exported != original || ex.bytes != original.len() as u64 {
        return Err(format!(
            "export gave {} bytes (reported {}), not the original {}",
            exported.len(),
            ex.bytes,
            original.len()
        ));
    }
    // The seed's count: lines of the lossy UTF-8 text that are not all (Unicode) whitespace.
    let non_blank = String::from_utf8_lossy(original)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count() as u64;
    if ex.lines != non_blank {
        return Err(format!(
            "export counted {} lines, not {non_blank}",
            ex.lines
        ));
    }

    if !original.is_empty() {
        let r = a.restore("s").map_err(|e| format!("restore: {e}"))?.value;
        if r.archived_bytes != original.len() as u64 || r.newer_bytes != 0 {
            return Err(format!("restore reports {r:?}"));
        }
    }
    let live = host.output("s").unwrap_or_default();
    if live != original {
        return Err(format!(
            "restore gave {} bytes, not the original {}",
            live.len(),
            original.len()
        ));
    }
    Ok(())
}

/// Content of every awkward shape.
fn content() -> impl Strategy<Value = Vec<u8>> {
    let line = "[ -~]{0,60}";
    prop_oneof![
        1 => Just(Vec::new()),
        3 => proptest::collection::vec(any::<u8>(), 1..4096),
        // LF lines, with or without a final newline.
        2 => (proptest::collection::vec(line, 1..40), any::<bool>()).prop_map(|(ls, end)| {
            let mut s = ls.join("\n");
            if end {
                s.push('\n');
            }
            s.into_bytes()
        }),
        // CRLF lines, sometimes a lone CR or blank lines.
        2 => proptest::collection::vec(prop_oneof![Just("\r\n".to_string()), Just("\r".to_string()), line.prop_map(|l| l + "\r\n")], 1..40)
            .prop_map(|parts| parts.concat().into_bytes()),
        // Highly compressible runs (long back-references in deflate).
        1 => (any::<u8>(), 1usize..100_000).prop_map(|(b, n)| vec![b; n]),
        // Bytes that look like gzip headers inside the data.
        1 => proptest::collection::vec(prop_oneof![Just(vec![0x1f, 0x8b, 8, 0]), proptest::collection::vec(any::<u8>(), 0..16)], 1..20)
            .prop_map(|parts| parts.concat()),
    ]
}

fn cases() -> u32 {
    std::env::var("ROUND_TRIP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Failures print their minimal input; no regression file next to a `tests/` target.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn archive_then_export_and_restore_give_back_exactly_the_original_bytes(
        original in content(),
        level in 0u8..=9,
    ) {
        if let Err(e) = round_trip(&original, &format!(r#"{{"level":{level}}}"#)) {
            prop_assert!(false, "{} ({} bytes, level {})", e, original.len(), level);
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so big fixtures need no RNG crate.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn sizes_around_the_one_mebibyte_chunk_round_trip() {
    for n in [(1 << 20) - 1, 1 << 20, (1 << 20) + 1, (2 << 20) + 7] {
        round_trip(&noise(n as u64, n), "{}").unwrap_or_else(|e| panic!("{n} bytes: {e}"));
    }
}

#[test]
fn a_session_over_ten_megabytes_round_trips_byte_exact() {
    // JSONL with an incompressible tail per line: about 11 MB raw, several MB compressed, so
    // both the reads and the archive writes take many chunks.
    let mut original = Vec::with_capacity(11 << 20);
    let mut i = 0u64;
    while original.len() < 11_000_000 {
        original.extend_from_slice(format!("{{\"seq\":{i},\"blob\":\"").as_bytes());
        original.extend(
            noise(i, 64)
                .iter()
                .map(|b| b"0123456789abcdef"[usize::from(b & 15)]),
        );
        original.extend_from_slice(b"\"}\r\n");
        i += 1;
    }
    original.extend_from_slice(b"no newline at the end");
    round_trip(&original, "{}").unwrap();
}
