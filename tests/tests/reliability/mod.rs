//! Shared by the reliability suite (fault, crash, concurrent-append and round-trip tests): an
//! independent invariant checker that reads the stores directly and decompresses archives with
//! `flate2` (never with the policy's own gzip code), and the mixed-store fixture the fault and
//! crash sweeps run over.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::io::Read;

use serde_json::{json, Value};
pub use session_archiver::archive_dir::ArchiveDir;
use session_archiver::archiver::Archiver;
use session_archiver::host::Stores;
use session_archiver::store::{FileStore, Meta, OUTPUT_FILE};
use session_archiver_testkit::fixtures::{jsonl_lines, DAY_MS};
use session_archiver_testkit::{read_all, MockHost};

pub const ARCHIVED_AT: &str = "session:archived_at";
pub const ARCHIVED_BYTES: &str = "session:archived_bytes";
pub const ARCHIVE_PATH: &str = "session:archive_path";
pub const ARCHIVE_CRC32: &str = "session:archive_crc32";
pub const PRUNED_AT: &str = "session:archive_pruned_at";
pub const INTENT: &str = "session:archive_intent";
pub const RESTORED_AT: &str = "session:restored_at";

/// `<id>.jsonl.gz`.
pub fn archive_name(id: &str) -> String {
    format!("{id}.jsonl.gz")
}

/// Decompresses every gzip member of `gz` (as `zcat` would); `Err` describes what is wrong.
pub fn gunzip(gz: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut out)
        .map_err(|e| format!("not a valid gzip stream: {e}"))?;
    Ok(out)
}

/// CRC-32 as gzip computes it (flate2's, not the policy's).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

/// Read access to the stores, bypassing any recording or fault injection.
pub trait View {
    fn meta(&self, id: &str) -> Meta;
    fn output(&self, id: &str) -> Option<Vec<u8>>;
    /// Names of every file in zone `id` (a settled session has only `output`, if anything).
    fn zone_files(&self, id: &str) -> Vec<String>;
    fn archive(&self, name: &str) -> Option<Vec<u8>>;
    /// Committed archive names (hidden temp files excluded).
    fn archive_names(&self) -> Vec<String>;
    /// Writer temp files (`.tmp-*`) in the archive directory.
    fn temp_count(&self) -> usize;
}

impl View for MockHost {
    fn meta(&self, id: &str) -> Meta {
        MockHost::meta(self, id)
    }
    fn output(&self, id: &str) -> Option<Vec<u8>> {
        MockHost::output(self, id)
    }
    fn zone_files(&self, id: &str) -> Vec<String> {
        zone_files(self.files.inner.list_files().expect("list files"), id)
    }
    fn archive(&self, name: &str) -> Option<Vec<u8>> {
        self.archive_bytes(name)
    }
    fn archive_names(&self) -> Vec<String> {
        self.archives
            .quiet()
            .list()
            .expect("list archives")
            .into_iter()
            .map(|e| e.name)
            .collect()
    }
    fn temp_count(&self) -> usize {
        self.archives.temp_count()
    }
}

/// A view over real stores (the SQLite host), read without any wrapper.
pub struct StoresView {
    pub stores: Stores,
    /// The archive directory on disk, to count hidden temp files.
    pub dir: std::path::PathBuf,
}

impl View for StoresView {
    fn meta(&self, id: &str) -> Meta {
        self.stores.objects.get(id).expect("object").meta
    }
    fn output(&self, id: &str) -> Option<Vec<u8>> {
        read_all(self.stores.files.as_ref(), id, OUTPUT_FILE)
    }
    fn zone_files(&self, id: &str) -> Vec<String> {
        zone_files(self.stores.files.list_files().expect("list files"), id)
    }
    fn archive(&self, name: &str) -> Option<Vec<u8>> {
        self.stores.archive_dir.stat(name).expect("stat archive")?;
        let mut r = self.stores.archive_dir.open(name).expect("open archive");
        let mut out = Vec::new();
        loop {
            let chunk = r.read(1 << 20).expect("read archive");
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        Some(out)
    }
    fn archive_names(&self) -> Vec<String> {
        self.stores
            .archive_dir
            .list()
            .expect("list archives")
            .into_iter()
            .map(|e| e.name)
            .collect()
    }
    fn temp_count(&self) -> usize {
        std::fs::read_dir(&self.dir)
            .expect("read archive dir")
            .filter(|e| {
                e.as_ref()
                    .map(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                    .unwrap_or(false)
            })
            .count()
    }
}

fn zone_files(
    all: Vec<(String, String, session_archiver::store::FileStat)>,
    id: &str,
) -> Vec<String> {
    all.into_iter()
        .filter(|(z, _, _)| z == id)
        .map(|(_, n, _)| n)
        .collect()
}

/// One session and every byte it ever wrote.
#[derive(Debug, Clone)]
pub struct Expect {
    pub id: String,
    pub original: Vec<u8>,
    /// Its only archive may be pruned by the cap (then a tombstone must say so).
    pub may_be_pruned: bool,
}

/// How strict a check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Right after an operation that failed or crashed: an operation may be half done, as long
    /// as an intent records it and the bytes are still somewhere.
    Interrupted,
    /// After recovery or a successful operation: no intent, no scratch file, no temp file, and
    /// the bytes are exactly archive + live (or live alone).
    Settled,
}

fn positive_i64(meta: &Meta, key: &str) -> Option<i64> {
    meta.get(key).and_then(Value::as_i64).filter(|v| *v > 0)
}

/// What is wrong with one session, or `None` when the invariant holds.
pub fn violation(view: &dyn View, e: &Expect, phase: Phase) -> Option<String> {
    let id = e.id.as_str();
    let meta = view.meta(id);
    let live = view.output(id);
    let live_bytes = live.clone().unwrap_or_default();
    let name = archive_name(id);
    let archive = view.archive(&name);
    let intent = meta.get(INTENT).is_some_and(|v| !v.is_null());
    let archived_at = positive_i64(&meta, ARCHIVED_AT);

    if phase == Phase::Settled {
        if intent {
            return Some(format!("{id}: an intent is left after settling: {meta:?}"));
        }
        let stray: Vec<String> = view
            .zone_files(id)
            .into_iter()
            .filter(|n| n != OUTPUT_FILE)
            .collect();
        if !stray.is_empty() {
            // e.g. a restore's scratch file.
            return Some(format!(
                "{id}: files besides {OUTPUT_FILE} are left after settling: {stray:?}"
            ));
        }
    }

    // Meta never says archived without a verified archive.
    let mut decoded: Option<Vec<u8>> = None;
    if let Some(at) = archived_at {
        let Some(gz) = archive.as_ref() else {
            return Some(format!(
                "{id}: meta says archived at {at} but {name} does not exist"
            ));
        };
        let raw = match gunzip(gz) {
            Ok(r) => r,
            Err(err) => return Some(format!("{id}: meta says archived but {name}: {err}")),
        };
        let want_len = meta.get(ARCHIVED_BYTES).and_then(Value::as_u64);
        if want_len != Some(raw.len() as u64) {
            return Some(format!(
                "{id}: {name} holds {} bytes, meta records {want_len:?}",
                raw.len()
            ));
        }
        let want_crc = meta.get(ARCHIVE_CRC32).and_then(Value::as_u64);
        if want_crc != Some(u64::from(crc32(&raw))) {
            return Some(format!(
                "{id}: {name} CRC-32 {:#x}, meta records {want_crc:?}",
                crc32(&raw)
            ));
        }
        match meta.get(ARCHIVE_PATH).and_then(Value::as_str) {
            Some(p) if p.ends_with(&format!("/{name}")) => {}
            other => return Some(format!("{id}: archive path {other:?} is not {name}")),
        }
        decoded = Some(raw);
    } else if intent {
        // An interrupted operation may have written an archive it did not record yet.
        decoded = archive.as_ref().and_then(|gz| gunzip(gz).ok());
    }

    // Where the bytes may be: archive + live when archived, live otherwise; while an intent
    // records an operation in flight, also either copy alone (it was not yet deleted, or the
    // restored output is in place before meta says so).
    let mut views: Vec<(&str, Vec<u8>)> = Vec::new();
    match (&decoded, archived_at) {
        (Some(raw), Some(_)) => {
            views.push(("archive+live", [raw.as_slice(), &live_bytes].concat()))
        }
        _ => views.push(("live", live_bytes.clone())),
    }
    if intent {
        views.push(("live", live_bytes.clone()));
        if let Some(raw) = &decoded {
            views.push(("archive", raw.clone()));
            views.push(("archive+live", [raw.as_slice(), &live_bytes].concat()));
        }
    }
    if views.iter().any(|(_, v)| *v == e.original) {
        return None;
    }
    // A pruned only copy is a documented loss: it needs its tombstone and no archived claim.
    if e.may_be_pruned && archived_at.is_none() && positive_i64(&meta, PRUNED_AT).is_some() {
        return None;
    }
    let seen: Vec<String> = views
        .iter()
        .map(|(w, v)| format!("{w}: {} bytes", v.len()))
        .collect();
    Some(format!(
        "{id}: its {} original bytes are not recoverable (found {}); live file {}, archive {}, meta {meta:?}",
        e.original.len(),
        seen.join(", "),
        if live.is_some() { "present" } else { "absent" },
        if archive.is_some() { "present" } else { "absent" },
    ))
}

/// Checks every session, plus (when settled) that no hidden temp file is left; panics with
/// every violation and `context`.
pub fn check(view: &dyn View, expects: &[Expect], phase: Phase, context: &str) {
    let mut problems: Vec<String> = expects
        .iter()
        .filter_map(|e| violation(view, e, phase))
        .collect();
    if view.temp_count() != 0 {
        problems.push(format!(
            "{} archive temp file(s) left behind",
            view.temp_count()
        ));
    }
    assert!(
        problems.is_empty(),
        "{context} ({phase:?}):\n  {}",
        problems.join("\n  ")
    );
}

/// The mixed store the fault and crash sweeps run over.
pub struct Mixed {
    pub host: MockHost,
    pub archiver: Archiver,
    pub expects: Vec<Expect>,
    /// The prune cap in the config (forces the backup and the oldest only copy out).
    pub cap: u64,
}

/// Every kind of session a sweep meets, in a fresh mock host (the call log is reset at the
/// end, so call 1 is the first call of the operation under test):
/// - `idle`: agent, idle 10 d, 6 lines → a sweep archives it;
/// - `recent`: idle 1 d → skipped; `pinned`: idle 30 d but pinned → skipped;
/// - `no-lines`: idle, empty output and `line_count` 0 → skipped; `term`: not an agent;
/// - `archived`: archived at setup (its archive is its only copy);
/// - `archived-newer`: archived, then the app wrote more (restore must give both);
/// - `restored`: archived then restored, then more output (its `.gz` is a prunable backup);
/// - `old`: archived 30 days ago (the oldest only copy: the cap prunes it, with a tombstone);
/// - `ghost.jsonl.gz`: an orphan archive with no session.
///
/// The cap is the size of the three only copies that should stay (`archived`,
/// `archived-newer`, `idle`): the orphan, the backup and `old` must go.
pub fn mixed_store(policy: &str) -> Mixed {
    mixed_store_with(policy, false)
}

/// Config that sends every archive down the parallel-member path: any session takes it and a
/// member is 700 bytes, so `idle` (6 lines) is written as several members by helper instances.
pub const MEMBERS_CONFIG: &str = r#""parallel_min_bytes":1,"member_bytes":128"#;

/// [`mixed_store`], with every archive (the setup's and the operation's) written as parallel
/// members when `members` is set.
pub fn mixed_store_with(policy: &str, members: bool) -> Mixed {
    mixed_store_on(policy, Backend::Memory, members)
}

/// Where a mixed store keeps its archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The in-memory archive directory.
    Memory,
    /// The object-store backend over a recorded in-memory object store, uploading parts of
    /// this many bytes: an archive under it is one PUT, a larger one a multipart upload.
    ObjectStore { part_size: usize },
}

impl Backend {
    /// Parts so small that every archive of the mixed store is a multipart upload of several parts.
    pub const OBJECT_MULTIPART: Backend = Backend::ObjectStore { part_size: 8 };
    /// Parts so large that every archive of the mixed store is a single PUT.
    pub const OBJECT_SINGLE_PUT: Backend = Backend::ObjectStore { part_size: 1 << 20 };

    fn host(self) -> MockHost {
        match self {
            Backend::Memory => MockHost::new(),
            Backend::ObjectStore { part_size } => MockHost::with_object_store(part_size),
        }
    }
}

/// [`mixed_store_with`] with its archives in `backend`.
pub fn mixed_store_on(policy: &str, backend: Backend, members: bool) -> Mixed {
    let cap = mixed_cap(policy, members);
    let host = backend.host();
    let archiver = host.archiver(policy, &config(cap, members));
    let expects = populate(&host, &archiver);
    host.rec.reset_log();
    Mixed {
        host,
        archiver,
        expects,
        cap,
    }
}

fn config(cap: u64, members: bool) -> String {
    if members {
        format!(r#"{{"max_total_bytes":{cap},{MEMBERS_CONFIG}}}"#)
    } else {
        format!(r#"{{"max_total_bytes":{cap}}}"#)
    }
}

/// The cap for [`mixed_store_with`]: built once per path with no cap, measured after a sweep.
fn mixed_cap(policy: &str, members: bool) -> u64 {
    static CAPS: [std::sync::OnceLock<u64>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    *CAPS[usize::from(members)].get_or_init(|| {
        let host = MockHost::new();
        let archiver = host.archiver(policy, &config(u64::MAX / 2, members));
        populate(&host, &archiver);
        archiver.archive("idle").expect("archive idle");
        ["archived", "archived-newer", "idle"]
            .iter()
            .map(|id| host.archive_bytes(&archive_name(id)).unwrap().len() as u64)
            .sum()
    })
}

fn populate(host: &MockHost, archiver: &Archiver) -> Vec<Expect> {
    let mut expects = Vec::new();
    let mut add = |id: &str, original: Vec<u8>, may_be_pruned: bool| {
        expects.push(Expect {
            id: id.to_string(),
            original,
            may_be_pruned,
        })
    };
    let lines = |seed: u64, n: usize| jsonl_lines(seed, n);

    // `old` is archived first, with the clock 30 days back, so its archive is the oldest.
    host.clock.advance(-30 * DAY_MS);
    host.session("old")
        .idle_days(10)
        .output(lines(1, 7))
        .meta("session:line_count", json!(7))
        .create();
    archiver.archive("old").expect("archive old");
    host.archive_file(
        "ghost.jsonl.gz",
        &gzip(b"{\"orphan\":true}\n"),
        host.now_ms(),
    );
    host.clock.advance(30 * DAY_MS);
    add("old", lines(1, 7), true);

    for (id, idle, n) in [("idle", 10, 6), ("recent", 1, 3), ("archived", 20, 5)] {
        host.session(id)
            .idle_days(idle)
            .output(lines(id.len() as u64, n))
            .meta("session:line_count", json!(n))
            .create();
        add(id, lines(id.len() as u64, n), false);
    }
    host.session("pinned")
        .idle_days(30)
        .output(lines(3, 4))
        .meta("session:line_count", json!(4))
        .pinned()
        .create();
    add("pinned", lines(3, 4), false);
    host.session("no-lines")
        .idle_days(30)
        .meta("session:line_count", json!(0))
        .create();
    add("no-lines", Vec::new(), false);
    host.session("term")
        .idle_days(30)
        .meta("view", json!("term"))
        .output(lines(4, 2))
        .meta("session:line_count", json!(2))
        .create();
    add("term", lines(4, 2), false);
    archiver.archive("archived").expect("archive archived");

    // `restored` was active yesterday (it was restored to be used), so a sweep leaves it.
    for (id, idle) in [("archived-newer", 20), ("restored", 1)] {
        host.session(id)
            .idle_days(idle)
            .output(lines(5, 5))
            .meta("session:line_count", json!(5))
            .create();
        archiver.archive(id).expect("archive");
    }
    archiver.restore("restored").expect("restore");
    for id in ["archived-newer", "restored"] {
        let newer = lines(6, 2);
        host.append_output(id, &newer);
        add(id, [lines(5, 5), newer].concat(), false);
    }
    expects
}

/// How many gzip members `gz` holds (each read with flate2).
pub fn gzip_members(gz: &[u8]) -> usize {
    let mut rest = gz;
    let mut n = 0;
    while !rest.is_empty() {
        let mut dec = flate2::bufread::GzDecoder::new(rest);
        std::io::copy(&mut dec, &mut std::io::sink()).expect("a whole member");
        rest = dec.into_inner();
        n += 1;
    }
    n
}

/// Plain gzip of `data` (flate2), for fixtures.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// An operation the fault and crash sweeps break at every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `archive("idle")`.
    Archive,
    /// `restore("archived-newer")` (archived bytes + newer live bytes).
    Restore,
    /// The sweep (recover pending, archive due, prune).
    Sweep,
    /// `archive("idle")` on a store whose archives are all parallel members.
    ArchiveMembers,
    /// The sweep on a store whose archives are all parallel members.
    SweepMembers,
}

impl Operation {
    pub const ALL: [Operation; 5] = [
        Operation::Archive,
        Operation::Restore,
        Operation::Sweep,
        Operation::ArchiveMembers,
        Operation::SweepMembers,
    ];

    /// Whether it runs on [`mixed_store_with`]'s parallel-member store.
    pub fn members(self) -> bool {
        matches!(self, Operation::ArchiveMembers | Operation::SweepMembers)
    }

    /// Runs it once; `Err` carries whatever went wrong (faults make most runs fail).
    pub fn run(self, m: &Mixed) -> Result<(), String> {
        let a = &m.archiver;
        match self {
            Operation::Archive | Operation::ArchiveMembers => {
                a.archive("idle").map(drop).map_err(|e| e.to_string())
            }
            Operation::Restore => a
                .restore("archived-newer")
                .map(drop)
                .map_err(|e| e.to_string()),
            Operation::Sweep | Operation::SweepMembers => {
                let s = a.sweep(|_| {}).map_err(|e| e.to_string())?.value;
                if s.failed.is_empty() {
                    Ok(())
                } else {
                    Err(s
                        .failed
                        .iter()
                        .map(|f| f.to_string())
                        .collect::<Vec<_>>()
                        .join("; "))
                }
            }
        }
    }

    /// Runs it again after recovery and checks it reached its goal (a run the fault did not
    /// stop may already have done the work: "already archived" / "not archived" are fine).
    pub fn finish(self, m: &Mixed, context: &str) {
        let h = &m.host;
        match self {
            Operation::Archive | Operation::ArchiveMembers => {
                if let Err(e) = m.archiver.archive("idle") {
                    assert!(
                        matches!(
                            e.policy_error(),
                            Some(session_archiver::error::PolicyError::Conflict(_))
                        ),
                        "{context}: archive again failed: {e}"
                    );
                }
                assert!(
                    positive_i64(&h.meta("idle"), ARCHIVED_AT).is_some(),
                    "{context}: idle is not archived"
                );
                assert_eq!(
                    h.output("idle"),
                    None,
                    "{context}: idle's live file is left"
                );
            }
            Operation::Restore => {
                if let Err(e) = m.archiver.restore("archived-newer") {
                    assert!(
                        matches!(
                            e.policy_error(),
                            Some(session_archiver::error::PolicyError::NotArchived(_))
                        ),
                        "{context}: restore again failed: {e}"
                    );
                }
                let meta = h.meta("archived-newer");
                assert!(
                    positive_i64(&meta, ARCHIVED_AT).is_none(),
                    "{context}: still archived"
                );
                assert!(
                    positive_i64(&meta, RESTORED_AT).is_some(),
                    "{context}: no restored_at"
                );
                let want = &m
                    .expects
                    .iter()
                    .find(|e| e.id == "archived-newer")
                    .unwrap()
                    .original;
                assert!(
                    h.output("archived-newer").as_ref() == Some(want),
                    "{context}: restored bytes differ"
                );
            }
            Operation::Sweep | Operation::SweepMembers => {
                if let Err(e) = self.run(m) {
                    panic!("{context}: the sweep after recovery failed: {e}");
                }
                assert!(
                    positive_i64(&h.meta("idle"), ARCHIVED_AT).is_some(),
                    "{context}: idle is not archived"
                );
                let mut names = h.archive_names();
                names.sort();
                assert_eq!(
                    names,
                    [
                        "archived-newer.jsonl.gz",
                        "archived.jsonl.gz",
                        "idle.jsonl.gz"
                    ],
                    "{context}: the cap should leave exactly the three only copies"
                );
                assert!(
                    positive_i64(&h.meta("old"), PRUNED_AT).is_some(),
                    "{context}: old has no tombstone"
                );
            }
        }
    }
}

/// Breaks `op` at each call in turn: runs it once cleanly on a [`mixed_store`] to record its T
/// calls, then for every `n` in `ns(T)` runs it on a fresh mixed store with `fault(n)`
/// injected, checks the [`Phase::Interrupted`] invariant, clears the faults and hands the store
/// to `then` (recovery and further checks). Collects every `n` whose checks failed and panics
/// listing them all at the end. Returns T.
pub fn break_each_call(
    op: Operation,
    what: &str,
    ns: impl Fn(usize) -> std::ops::RangeInclusive<usize>,
    fault: impl Fn(usize) -> session_archiver_testkit::Fault + std::panic::RefUnwindSafe,
    then: impl Fn(&Mixed, &str) + std::panic::RefUnwindSafe,
) -> usize {
    break_each_call_on(Backend::Memory, op, what, ns, fault, then)
}

/// [`break_each_call`] on mixed stores whose archives are in `backend`.
pub fn break_each_call_on(
    backend: Backend,
    op: Operation,
    what: &str,
    ns: impl Fn(usize) -> std::ops::RangeInclusive<usize>,
    fault: impl Fn(usize) -> session_archiver_testkit::Fault + std::panic::RefUnwindSafe,
    then: impl Fn(&Mixed, &str) + std::panic::RefUnwindSafe,
) -> usize {
    let clean = mixed_store_on("inactivity", backend, op.members());
    op.run(&clean)
        .unwrap_or_else(|e| panic!("{op:?} without faults failed: {e}"));
    check(
        &clean.host,
        &clean.expects,
        Phase::Settled,
        &format!("{op:?} without faults"),
    );
    if op.members() {
        let gz = clean
            .host
            .archive_bytes(&archive_name("idle"))
            .expect("idle archived");
        assert!(
            gzip_members(&gz) > 1,
            "{op:?}: idle should be written as several members"
        );
    }
    let baseline = clean.host.calls();
    let total = baseline.len();
    assert!(total > 0, "{op:?} made no calls");

    let mut failures = Vec::new();
    for n in ns(total) {
        let label = |c: Option<&session_archiver_testkit::Call>| {
            c.map_or_else(|| "-".to_string(), |c| format!("{} {}", c.op, c.args))
        };
        let at_label = label(baseline.get(n.wrapping_sub(1)));
        let outcome = std::panic::catch_unwind(|| {
            let m = mixed_store_on("inactivity", backend, op.members());
            m.host.inject(fault(n));
            let result = op.run(&m);
            let context =
                format!("{op:?} with {what} {n}/{total} (call {n}: {at_label}), result {result:?}");
            // The run is deterministic up to the fault: the same calls as the clean run.
            let calls = m.host.calls();
            let upto = n.min(calls.len());
            let seen: Vec<_> = calls[..upto].iter().map(|c| (&c.op, &c.args)).collect();
            let want: Vec<_> = baseline[..upto].iter().map(|c| (&c.op, &c.args)).collect();
            assert_eq!(
                seen, want,
                "{context}: the calls before the fault differ from the clean run"
            );
            check(&m.host, &m.expects, Phase::Interrupted, &context);
            m.host.rec.clear_faults();
            then(&m, &context);
        });
        if outcome.is_err() {
            failures.push(format!("{what} {n} (call {n}: {at_label})"));
        }
    }
    assert!(
        failures.is_empty(),
        "{op:?}: the invariant broke for these of its {total} calls (details above):\n  {}",
        failures.join("\n  ")
    );
    total
}
