//! The app: its stores in its `db/` directory (AgentMux's names: `wave.db`, `filestore.db`), its
//! own session writing, and the archiver embedded over those same stores.
//!
//! The app's backend is async (tokio, like AgentMux's). Store calls and archiver operations
//! block (SQLite, wasmtime), so the async methods run them with
//! [`tokio::task::spawn_blocking`]: the runtime's worker threads never wait on them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use session_archiver::archiver::{ExportOutcome, RestoreOutcome, SweepSummary};
use session_archiver::builder::BuildError;
use session_archiver::error::ArchiverError;
use session_archiver::runtime::CacheSetting;
use session_archiver::store::sqlite_objects::SqliteObjects;
use session_archiver::store::{
    Clock, FileOpts, FileStore, Meta, ObjectStore, StoreError, SystemClock, MAX_CHUNK, OUTPUT_FILE,
};
use session_archiver::Archiver;

use crate::files::{AppFiles, Flusher};

/// AgentMux's object store file name in its `db/` directory (Wave's is `waveterm.db`).
pub const OBJECTS_DB: &str = "wave.db";
/// The file store's name in the `db/` directory (both apps).
pub const FILESTORE_DB: &str = "filestore.db";

/// What the app can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// One of the app's stores failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The embedded archiver failed.
    #[error(transparent)]
    Archiver(#[from] ArchiverError),
    /// The embedded archiver could not be built.
    #[error("building the archiver: {0}")]
    Build(#[from] BuildError),
    /// A blocking task panicked or was cancelled.
    #[error("blocking task: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The app's clock: the system clock plus an offset the app (or a test) can move forward, so
/// sessions can be made idle without waiting days.
#[derive(Debug, Default)]
pub struct AppClock {
    offset_ms: AtomicI64,
}

impl AppClock {
    /// Moves "now" forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for AppClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

/// How the app is set up.
pub struct AppConfig {
    /// The app's `db/` directory (`wave.db`, `filestore.db`); archives go to `db/archives`.
    pub db_dir: PathBuf,
    /// The policy component.
    pub policy: PathBuf,
    /// Its configuration JSON.
    pub policy_config: String,
    /// The write-back flush interval (Wave: 5 s).
    pub flush_every: Duration,
    /// Sweep workers.
    pub workers: usize,
    /// Where compiled policies are cached.
    pub cache: CacheSetting,
    /// The app's clock, shared with the archiver.
    pub clock: Arc<dyn Clock>,
}

impl AppConfig {
    /// Defaults for `db_dir` and `policy`: config `{}`, a 5 s flush, 2 workers, the default
    /// compile cache, the system clock.
    pub fn new(db_dir: impl Into<PathBuf>, policy: impl Into<PathBuf>) -> Self {
        AppConfig {
            db_dir: db_dir.into(),
            policy: policy.into(),
            policy_config: "{}".into(),
            flush_every: Duration::from_secs(5),
            workers: 2,
            cache: CacheSetting::Default,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The built `inactivity` policy of this workspace: `$ARCHIVER_POLICY_DIR/inactivity.wasm`, else
/// `target/policies/inactivity.wasm` (built by `cargo xtask build-policies`).
pub fn default_policy_path() -> PathBuf {
    let dir = std::env::var_os("ARCHIVER_POLICY_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/policies"));
    dir.join("inactivity.wasm")
}

/// The running app.
pub struct App {
    /// Declared first: stopped (with a last flush) before the stores are dropped.
    _flusher: Flusher,
    files: Arc<AppFiles>,
    objects: Arc<SqliteObjects>,
    archiver: Archiver,
    clock: Arc<dyn Clock>,
}

impl App {
    /// Opens the app's stores, starts its flush thread and embeds the archiver over them.
    pub fn open(config: AppConfig) -> Result<Arc<App>, AppError> {
        std::fs::create_dir_all(&config.db_dir).map_err(StoreError::from)?;
        let files = AppFiles::open(config.db_dir.join(FILESTORE_DB), config.clock.clone())?;
        // The object side has no cache in this app, so the library's SQLite store on the
        // app's own `wave.db` serves it; an app with an object cache implements ObjectStore
        // on top of it as AppFiles does for files.
        let objects = Arc::new(SqliteObjects::open(config.db_dir.join(OBJECTS_DB))?);
        let flusher = files.start_flusher(config.flush_every);
        let archiver = Archiver::builder()
            .objects(objects.clone())
            .files(files.clone())
            .archive_dir_path(config.db_dir.join("archives"))
            .clock(config.clock.clone())
            .policy_file(&config.policy)
            .config(config.policy_config)
            .cache(config.cache)
            .workers(config.workers)
            .build()?;
        Ok(Arc::new(App {
            files,
            objects,
            archiver,
            clock: config.clock,
            _flusher: flusher,
        }))
    }

    /// [`App::open`] from async code (loading a policy may compile it: seconds of CPU).
    pub async fn open_async(config: AppConfig) -> Result<Arc<App>, AppError> {
        tokio::task::spawn_blocking(move || App::open(config)).await?
    }

    /// The app's cached file store.
    pub fn files(&self) -> &Arc<AppFiles> {
        &self.files
    }

    /// The embedded archiver.
    pub fn archiver(&self) -> &Archiver {
        &self.archiver
    }

    /// Starts an agent session: its block (activity now) and an empty output file.
    pub fn create_session(&self, id: &str) -> Result<(), AppError> {
        let meta: Meta = json!({
            "view": "agent",
            "session:last_activity_ms": self.clock.now_ms(),
            "session:line_count": 1,
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        self.objects.insert(id, &meta)?;
        self.files.create(id, OUTPUT_FILE, FileOpts::default())?;
        Ok(())
    }

    /// The app writing a session's output: a buffered append at the cached size. If the
    /// archiver has moved the output out, the app starts a new output file, as a block
    /// controller does; restore later puts the archived bytes before it.
    pub fn append_output(&self, id: &str, data: &[u8]) -> Result<(), AppError> {
        loop {
            match self.files.append_buffered(id, OUTPUT_FILE, data) {
                Ok(_) => return Ok(()),
                Err(StoreError::NotFound(_)) => {
                    match self.files.create(id, OUTPUT_FILE, FileOpts::default()) {
                        Ok(_) | Err(StoreError::AlreadyExists(_)) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The app reading a session's whole live output through its own (cached) store.
    pub fn read_output(&self, id: &str) -> Result<Vec<u8>, AppError> {
        let Some(stat) = self.files.stat(id, OUTPUT_FILE)? else {
            return Ok(Vec::new());
        };
        let mut pos = match stat.circular_max_size {
            Some(max) => stat.size.saturating_sub(max),
            None => 0,
        };
        let mut out = Vec::new();
        while pos < stat.size {
            let len = (stat.size - pos).min(MAX_CHUNK as u64) as u32;
            let chunk = self.files.read(id, OUTPUT_FILE, pos, len)?;
            if chunk.is_empty() {
                break;
            }
            pos += chunk.len() as u64;
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Whether the session's meta says it is archived now.
    pub fn is_archived(&self, id: &str) -> Result<bool, AppError> {
        let obj = self.objects.get(id)?;
        Ok(obj
            .meta
            .get("session:archived_at")
            .and_then(|v| v.as_i64())
            .is_some_and(|t| t > 0))
    }

    /// Runs `f` on the app on a blocking thread and awaits it.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&App) -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        let app = self.clone();
        tokio::task::spawn_blocking(move || f(&app)).await?
    }

    /// [`App::create_session`] from async code.
    pub async fn create_session_async(self: &Arc<Self>, id: &str) -> Result<(), AppError> {
        let id = id.to_string();
        self.blocking(move |app| app.create_session(&id)).await
    }

    /// [`App::append_output`] from async code.
    pub async fn append_output_async(
        self: &Arc<Self>,
        id: &str,
        data: Vec<u8>,
    ) -> Result<(), AppError> {
        let id = id.to_string();
        self.blocking(move |app| app.append_output(&id, &data))
            .await
    }

    /// [`App::read_output`] from async code.
    pub async fn read_output_async(self: &Arc<Self>, id: &str) -> Result<Vec<u8>, AppError> {
        let id = id.to_string();
        self.blocking(move |app| app.read_output(&id)).await
    }

    /// A host-driven sweep of the embedded archiver, from async code.
    pub async fn sweep(self: &Arc<Self>) -> Result<SweepSummary, AppError> {
        self.blocking(|app| Ok(app.archiver.sweep(|_| {})?.value))
            .await
    }

    /// Restores session `id` into the app's store, from async code.
    pub async fn restore(self: &Arc<Self>, id: &str) -> Result<RestoreOutcome, AppError> {
        let id = id.to_string();
        self.blocking(move |app| Ok(app.archiver.restore(&id)?.value))
            .await
    }

    /// Exports session `id` (archived bytes, then live bytes), from async code.
    pub async fn export(self: &Arc<Self>, id: &str) -> Result<(ExportOutcome, Vec<u8>), AppError> {
        let id = id.to_string();
        self.blocking(move |app| {
            let mut out = Vec::new();
            let outcome = app.archiver.export(&id, &mut out)?.value;
            Ok((outcome, out))
        })
        .await
    }

    /// [`App::is_archived`] from async code.
    pub async fn is_archived_async(self: &Arc<Self>, id: &str) -> Result<bool, AppError> {
        let id = id.to_string();
        self.blocking(move |app| app.is_archived(&id)).await
    }
}
