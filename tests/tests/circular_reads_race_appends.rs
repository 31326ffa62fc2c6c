//! Restore and export of a wrapped circular output while the app keeps appending: a read whose
//! offset fell out of the ring is a conflict the policy handles (a fresh stat), so no byte is
//! repeated or missing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use session_archiver::store::FileStore;
use session_archiver_testkit::{append_to, MockHost};

/// Ring capacity: one 64 KiB part.
const RING: u64 = 64 << 10;

/// Numbered lines `from..to`, each `{"n":N}` padded to 32 bytes.
fn lines(from: usize, to: usize) -> Vec<u8> {
    (from..to)
        .flat_map(|n| format!("{{\"n\":{n:<24}}}\n").into_bytes())
        .collect()
}

/// The line numbers in `bytes` after its first (possibly partial) line; panics on a line that
/// is not one of ours.
fn numbers_after_first_line(bytes: &[u8]) -> Vec<usize> {
    let text = std::str::from_utf8(bytes).unwrap();
    let start = text.find('\n').unwrap() + 1;
    text[start..]
        .lines()
        .map(|l| {
            l.trim_start_matches("{\"n\":")
                .trim_end_matches('}')
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("not a numbered line: {l:?}"))
        })
        .collect()
}

fn assert_consecutive(nums: &[usize]) {
    assert!(!nums.is_empty());
    for w in nums.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a line repeated or missing around {}", w[0]);
    }
}

/// Makes the app append `lines_per_read` lines before each of the first `reads` calls to
/// `files.read` for `id`; returns the stream of everything appended so far.
fn append_during_reads(
    host: &MockHost,
    id: &str,
    next_line: usize,
    reads: usize,
    lines_per_read: usize,
) -> Arc<Mutex<usize>> {
    let seen = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(Mutex::new(next_line));
    let (files, id, hook_next) = (host.files.clone(), id.to_string(), next.clone());
    host.on_call("files.read", move |call| {
        if !call.args.contains(&id) || seen.fetch_add(1, Ordering::SeqCst) >= reads {
            return;
        }
        let mut n = hook_next.lock().unwrap();
        append_to(&files, &id, &lines(*n, *n + lines_per_read));
        *n += lines_per_read;
    });
    next
}

#[test]
fn export_of_a_wrapped_circular_output_while_the_app_appends_repeats_and_skips_nothing() {
    let host = MockHost::new();
    host.session("c")
        .idle_days(0)
        .output(lines(0, 4_000))
        .circular(RING)
        .create();
    let before = host.files.inner.stat("c", "output").unwrap().unwrap();
    assert!(before.size > RING, "the ring has wrapped");
    // Each append moves the ring's start past the offset the policy stat-ed.
    let next = append_during_reads(&host, "c", 4_000, 3, 10);
    let archiver = host.archiver("inactivity", "{}");

    let mut exported = Vec::new();
    let out = archiver.export("c", &mut exported).expect("export").value;

    assert_eq!(
        *next.lock().unwrap(),
        4_030,
        "the app appended during the export"
    );
    assert_eq!(exported.len() as u64, RING);
    assert_eq!(out.bytes, RING);
    // Exactly the ring as it is now: its last line is the app's last append.
    assert_eq!(Some(exported.clone()), host.output("c"));
    let nums = numbers_after_first_line(&exported);
    assert_consecutive(&nums);
    assert_eq!(*nums.last().unwrap(), 4_029);
}

#[test]
fn export_of_a_circular_output_that_keeps_wrapping_is_a_conflict_not_a_wrong_copy() {
    let host = MockHost::new();
    host.session("c")
        .idle_days(0)
        .output(lines(0, 4_000))
        .circular(RING)
        .create();
    append_during_reads(&host, "c", 4_000, usize::MAX, 10);
    let archiver = host.archiver("inactivity", "{}");
    let mut exported = Vec::new();
    let err = session_archiver_testkit::expect_policy_error(archiver.export("c", &mut exported));
    assert!(
        matches!(err, session_archiver::error::PolicyError::Conflict(_)),
        "{err:?}"
    );
    assert!(exported.is_empty(), "nothing half-copied reached the sink");
}

#[test]
fn restore_of_a_wrapped_circular_output_while_the_app_appends_repeats_and_skips_nothing() {
    let host = MockHost::new();
    host.session("c")
        .idle_days(10)
        .output(lines(0, 100))
        .circular(RING)
        .create();
    let archiver = host.archiver("inactivity", "{}");
    archiver.archive("c").expect("archive");
    let archived = lines(0, 100);
    // The app writes a new output after archiving that wraps its ring.
    host.files
        .inner
        .create(
            "c",
            "output",
            session_archiver::store::FileOpts {
                circular_max_size: Some(RING),
            },
        )
        .unwrap();
    append_to(&host.files, "c", &lines(100, 4_000));
    let next = append_during_reads(&host, "c", 4_000, 3, 10);

    let r = archiver.restore("c").expect("restore").value;

    assert_eq!(
        *next.lock().unwrap(),
        4_030,
        "the app appended during the restore"
    );
    assert_eq!(r.archived_bytes, archived.len() as u64);
    // The newer bytes are exactly the live ring at the end (each byte once).
    assert_eq!(r.newer_bytes, RING);
    let stat = host.files.inner.stat("c", "output").unwrap().unwrap();
    assert_eq!(stat.size, archived.len() as u64 + RING);
    let restored = host.output("c").unwrap();
    assert_eq!(restored.len() as u64, RING);
    let stream = lines(100, 4_030);
    assert_eq!(restored, stream[stream.len() - RING as usize..]);
    let nums = numbers_after_first_line(&restored);
    assert_consecutive(&nums);
    assert_eq!(*nums.last().unwrap(), 4_029);
}
