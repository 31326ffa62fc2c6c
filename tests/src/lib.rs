//! The mock host: run a real policy component against in-memory stores that record every call
//! and fail or "crash" on command.
//!
//! ```no_run
//! use session_archiver_testkit::{MockHost, fixtures::DAY_MS};
//! let host = MockHost::new();
//! let id = host.session("s1").idle_days(10).lines(3).create();
//! let archiver = host.archiver("inactivity", "{}");
//! archiver.archive(&id).unwrap();
//! assert!(host.output(&id).is_none());
//! assert!(host.calls_to("files.delete-if-unchanged").len() == 1);
//! ```

pub mod app_schema;
pub mod components;
pub mod fixtures;
pub mod mem;
pub mod moto;
pub mod object_mock;
pub mod recorder;
pub mod stores;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use session_archiver::archive_dir::memory::MemoryArchiveDir;
use session_archiver::archiver::{Archiver, ArchiverOptions};
use session_archiver::host::Stores;
use session_archiver::locks::SessionLocks;
use session_archiver::policy::LoadedPolicy;
use session_archiver::runtime::{CacheSetting, Limits, Runtime, RuntimeOptions};
use session_archiver::store::memory::{MemoryFiles, MemoryObjects};
use session_archiver::store::{Clock, FileStore, Meta, ObjectStore, OUTPUT_FILE};

pub use fixtures::SessionBuilder;
pub use recorder::{Call, Fault, Recorder};
pub use stores::{ManualClock, MockArchiveDir, MockFiles, MockObjects};

/// 2026-11-26T00:00:00Z: the mock clock's default "now".
pub const DEFAULT_NOW_MS: i64 = 1_795_651_200_000;

/// The workspace root (policies are built to `target/policies/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of a built policy component, e.g. `policy_path("inactivity")`: in
/// `$ARCHIVER_POLICY_DIR` when set, else in `target/policies/` (`cargo xtask build-policies`).
/// Panics, saying how to build it, when the file is missing or too small to be a component.
pub fn policy_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("ARCHIVER_POLICY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("policies"));
    let path = dir.join(format!("{name}.wasm"));
    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(
        len > 1024,
        "{} is missing or a placeholder: run `cargo xtask build-policies` first",
        path.display()
    );
    path
}

/// The bytes of a built policy component (see [`policy_path`]).
pub fn policy_bytes(name: &str) -> Vec<u8> {
    let path = policy_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One runtime per test binary, with the compile cache in `target/test-cache` so every test
/// after the first loads a policy without running Cranelift.
pub fn shared_runtime() -> Arc<Runtime> {
    runtime_with_limits(Limits::default())
}

/// Like [`shared_runtime`] but with `limits` (one runtime per distinct limits, kept for the
/// binary's lifetime).
pub fn runtime_with_limits(limits: Limits) -> Arc<Runtime> {
    type Runtimes = std::sync::Mutex<Vec<(Limits, Arc<Runtime>)>>;
    static RUNTIMES: OnceLock<Runtimes> = OnceLock::new();
    let mut all = RUNTIMES.get_or_init(Default::default).lock().unwrap();
    if let Some((_, rt)) = all.iter().find(|(l, _)| *l == limits) {
        return rt.clone();
    }
    let rt = Arc::new(
        Runtime::new(RuntimeOptions {
            limits: limits.clone(),
            cache: CacheSetting::Dir(test_cache_dir()),
        })
        .expect("build the wasmtime runtime"),
    );
    all.push((limits, rt.clone()));
    rt
}

/// A fresh runtime with tight limits for the sandbox tests: `memory_bytes` of linear memory, a
/// `deadline_ms` deadline and an optional stall rule. Fresh, so its peak-memory counter is its
/// own; it shares the compile cache of [`shared_runtime`].
pub fn tight_runtime(memory_bytes: usize, deadline_ms: u64, stall_ms: Option<u64>) -> Arc<Runtime> {
    Arc::new(
        Runtime::new(RuntimeOptions {
            limits: Limits {
                memory_bytes,
                deadline: std::time::Duration::from_millis(deadline_ms),
                stall: stall_ms.map(std::time::Duration::from_millis),
                ..Limits::default()
            },
            cache: CacheSetting::Dir(test_cache_dir()),
        })
        .expect("build the wasmtime runtime"),
    )
}

/// The compile cache every test runtime shares, so only the first load of a component compiles.
pub fn test_cache_dir() -> PathBuf {
    workspace_root().join("target").join("test-cache")
}

/// Loads a built policy into the shared runtime.
pub fn load_policy(name: &str) -> LoadedPolicy {
    shared_runtime()
        .load_file(&policy_path(name))
        .unwrap_or_else(|e| panic!("loading policy {name}: {e}"))
}

/// In-memory stores with a shared call log and fault plan, plus fixture builders.
pub struct MockHost {
    pub objects: Arc<MockObjects>,
    pub files: Arc<MockFiles>,
    pub archives: Arc<MockArchiveDir>,
    pub clock: Arc<ManualClock>,
    pub rec: Arc<Recorder>,
}

impl Default for MockHost {
    fn default() -> Self {
        Self::new()
    }
}

impl MockHost {
    /// Empty stores; the clock reads [`DEFAULT_NOW_MS`].
    pub fn new() -> Self {
        let rec = Arc::new(Recorder::default());
        let clock = Arc::new(ManualClock::new(DEFAULT_NOW_MS));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        MockHost {
            objects: Arc::new(MockObjects {
                inner: MemoryObjects::new(),
                rec: rec.clone(),
            }),
            files: Arc::new(MockFiles {
                inner: MemoryFiles::with_clock(dyn_clock.clone()),
                rec: rec.clone(),
            }),
            archives: Arc::new(MockArchiveDir {
                inner: MemoryArchiveDir::with_clock(dyn_clock),
                object: None,
                rec: rec.clone(),
            }),
            clock,
            rec,
        }
    }

    /// Empty stores whose archives go to an object store ([`ObjectArchiveDir`] over a recorded
    /// in-memory [`MockObjectStore`], uploading parts of `part_size` bytes) instead of the
    /// in-memory directory; every object-store call is recorded and can be failed too.
    ///
    /// [`ObjectArchiveDir`]: session_archiver::archive_dir::object::ObjectArchiveDir
    pub fn with_object_store(part_size: usize) -> Self {
        let mut host = MockHost::new();
        let clock: Arc<dyn Clock> = host.clock.clone();
        let store = object_mock::MockObjectStore::new(host.rec.clone(), clock.clone());
        host.archives = Arc::new(MockArchiveDir {
            inner: MemoryArchiveDir::with_clock(clock),
            object: Some(stores::ObjectBackend::new(store, part_size)),
            rec: host.rec.clone(),
        });
        host
    }

    /// The stores as the host sees them.
    pub fn stores(&self) -> Stores {
        Stores {
            objects: self.objects.clone(),
            files: self.files.clone(),
            archive_dir: self.archives.clone(),
            clock: self.clock.clone(),
        }
    }

    /// An archiver running the built policy `name` with `config` on these stores (one worker).
    pub fn archiver(&self, name: &str, config: &str) -> Archiver {
        self.archiver_with(load_policy(name), shared_runtime(), config)
    }

    /// An archiver with a given policy and runtime (e.g. tight limits).
    pub fn archiver_with(
        &self,
        policy: LoadedPolicy,
        runtime: Arc<Runtime>,
        config: &str,
    ) -> Archiver {
        Archiver::new(
            self.stores(),
            runtime,
            policy,
            ArchiverOptions {
                config: config.to_string(),
                workers: Some(1),
                locks: SessionLocks::in_process(),
            },
        )
        .expect("build the archiver")
    }

    /// Starts a session fixture (an agent session with no other meta yet).
    pub fn session(&self, id: &str) -> SessionBuilder<'_> {
        SessionBuilder::new(self, id)
    }

    /// Puts an archive file directly (unrecorded).
    pub fn archive_file(&self, name: &str, bytes: &[u8], modified_ms: i64) {
        self.archives
            .put_file(name, bytes, modified_ms)
            .expect("put archive");
    }

    /// Makes `id` an archived session whose archive is `gz` (any gzip bytes, e.g. from the real
    /// CLI tools) holding `raw`: puts `<id>.jsonl.gz` (unrecorded) and sets the meta keys a
    /// policy's archive step would (`archived_at` = now, raw size, path, CRC-32, gz size).
    /// The session object must exist.
    pub fn put_archived(&self, id: &str, gz: &[u8], raw: &[u8]) {
        let name = format!("{id}.jsonl.gz");
        let now = self.now_ms();
        self.archive_file(&name, gz, now);
        let path = self.archives.quiet().path(&name).expect("archive path");
        let mut patch = Meta::new();
        for (k, v) in [
            ("session:archived_at", serde_json::json!(now)),
            ("session:archived_bytes", serde_json::json!(raw.len())),
            ("session:archive_path", serde_json::json!(path)),
            ("session:archive_crc32", serde_json::json!(crc32(raw))),
            ("session:archive_gz_bytes", serde_json::json!(gz.len())),
        ] {
            patch.insert(k.to_string(), v);
        }
        self.objects
            .inner
            .update_meta(id, &patch)
            .expect("mark session archived");
    }

    /// The mock clock's now.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A session's meta (unrecorded).
    pub fn meta(&self, id: &str) -> Meta {
        self.objects.inner.get(id).expect("object exists").meta
    }

    /// One meta value, `Value::Null` when absent.
    pub fn meta_value(&self, id: &str, key: &str) -> Value {
        self.meta(id).get(key).cloned().unwrap_or(Value::Null)
    }

    /// A session's whole live output (unrecorded), `None` when there is no file.
    pub fn output(&self, id: &str) -> Option<Vec<u8>> {
        read_all(&self.files.inner, id, OUTPUT_FILE)
    }

    /// Appends to a session's live output as the app would (unrecorded); creates the file.
    pub fn append_output(&self, id: &str, bytes: &[u8]) {
        append_to(&self.files, id, bytes)
    }

    /// An archive file's bytes (unrecorded).
    pub fn archive_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.archives.get_file(name)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.rec.calls()
    }

    /// Calls to one `interface.function`.
    pub fn calls_to(&self, op: &str) -> Vec<Call> {
        self.rec.calls_to(op)
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.rec.inject(fault)
    }

    /// Runs `hook` just before each call to `op` (e.g. `"files.read"`) reaches the store, to
    /// act *during* a policy operation, as the app would. The hook should use the unrecorded
    /// stores (`host.files.inner`, [`append_to`]); see [`Recorder::on_call`].
    pub fn on_call(&self, op: &str, hook: impl Fn(&Call) + Send + Sync + 'static) {
        self.rec.on_call(op, hook)
    }

    /// Runs `f` once just before the next call to `op` reaches the store (see
    /// [`Recorder::before_next`]), e.g. an app append between a policy's read and its delete.
    pub fn before_next(&self, op: &str, f: impl FnOnce() + Send + 'static) {
        self.rec.before_next(op, f)
    }

    /// Appends `bytes` to `id`'s live output (as the app would, unrecorded) just before the next
    /// call to `op`.
    pub fn append_before(&self, op: &str, id: &str, bytes: &[u8]) {
        let files = self.files.clone();
        let (id, bytes) = (id.to_string(), bytes.to_vec());
        self.before_next(op, move || {
            files
                .inner
                .append(&id, OUTPUT_FILE, &bytes)
                .expect("hook append to live output");
        })
    }
}

/// The WIT error a policy returned; panics (naming what happened instead) on success, a trap or
/// any other host-side failure, so a test can tell "typed error" from "trap".
pub fn expect_policy_error<T: std::fmt::Debug>(
    result: Result<T, session_archiver::error::ArchiverError>,
) -> session_archiver::error::PolicyError {
    match result {
        Ok(v) => panic!("expected a policy error, got success: {v:?}"),
        Err(session_archiver::error::ArchiverError::Policy { error, .. }) => error,
        Err(other) => panic!("expected a typed policy error, got: {other} ({other:?})"),
    }
}

/// CRC-32 (IEEE, as in gzip) of `data`: bitwise and slow, for fixtures only.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Appends to `zone`'s output as the app would, creating the file when missing (for hooks,
/// which hold `Arc<MockFiles>` rather than the whole host).
pub fn append_to(files: &MockFiles, zone: &str, bytes: &[u8]) {
    let files = &files.inner;
    if files.stat(zone, OUTPUT_FILE).unwrap().is_none() {
        files
            .create(zone, OUTPUT_FILE, Default::default())
            .expect("create output");
    }
    files.append(zone, OUTPUT_FILE, bytes).expect("append");
}

/// Reads a whole file from a file store in chunks; `None` when it does not exist.
pub fn read_all(files: &dyn FileStore, zone: &str, name: &str) -> Option<Vec<u8>> {
    let stat = files.stat(zone, name).expect("stat")?;
    let mut out = Vec::new();
    let mut offset = stat
        .circular_max_size
        .map_or(0, |max| stat.size.saturating_sub(max));
    loop {
        let chunk = files.read(zone, name, offset, 1 << 20).expect("read");
        if chunk.is_empty() {
            break;
        }
        offset += chunk.len() as u64;
        out.extend_from_slice(&chunk);
    }
    Some(out)
}
