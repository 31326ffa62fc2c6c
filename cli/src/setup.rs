//! From global options to a runtime, a loaded policy and an [`Archiver`] on the data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use session_archiver::builder::BuildError;
use session_archiver::data_dir::{DataDirPaths, Layout};
use session_archiver::host::Stores;
use session_archiver::live_app::{LiveAppError, LiveAppGuard};
use session_archiver::runtime::{CacheSetting, Limits, Runtime, RuntimeOptions};
use session_archiver::Archiver;

use crate::cli::Global;
use crate::exit::{ConfigFileError, NoDefaultPolicy};

/// The default policy's file name.
pub const DEFAULT_POLICY: &str = "inactivity.wasm";

/// The data directory as found: the object store is looked for (`wave.db`, `waveterm.db`,
/// `objects.db`, else the one `.db` with a `db_block` table) unless `--objects-db` names it; then
/// the per-part overrides.
pub fn paths(g: &Global) -> Result<(DataDirPaths, Layout)> {
    let (mut p, layout) = match &g.objects_db {
        Some(o) => {
            let mut p = DataDirPaths::under(&g.data_dir);
            p.objects_db = o.clone();
            (p, Layout::Given)
        }
        None => DataDirPaths::find(&g.data_dir)?,
    };
    overrides(g, &mut p);
    Ok((p, layout))
}

/// Where a new data directory's parts go (`demo`): AgentMux's layout, then the overrides.
pub fn new_paths(g: &Global) -> DataDirPaths {
    let mut p = DataDirPaths::under(&g.data_dir);
    if let Some(o) = &g.objects_db {
        p.objects_db = o.clone();
    }
    overrides(g, &mut p);
    p
}

fn overrides(g: &Global, p: &mut DataDirPaths) {
    if let Some(f) = &g.filestore_db {
        p.filestore_db = f.clone();
    }
    if let Some(a) = &g.archive_dir {
        p.archive_dir = a.clone();
    }
    p.s3.endpoint.clone_from(&g.s3_endpoint);
    p.s3.region.clone_from(&g.s3_region);
}

/// The live-app guard over both databases, honouring `--allow-live-writer`.
pub fn live_guard(g: &Global, paths: &DataDirPaths) -> LiveGuard {
    live_guard_over(g, [paths.objects_db.clone(), paths.filestore_db.clone()])
}

/// The live-app guard over these databases.
pub fn live_guard_over(g: &Global, dbs: impl IntoIterator<Item = PathBuf>) -> LiveGuard {
    LiveGuard {
        guard: LiveAppGuard::new(dbs),
        allow: g.allow_live_writer,
    }
}

/// [`LiveAppGuard`] plus the user's `--allow-live-writer`.
pub struct LiveGuard {
    guard: LiveAppGuard,
    allow: bool,
}

impl LiveGuard {
    /// `Ok` when no other process has the databases open, or the user vouched for its writer.
    pub fn ensure_not_live(&self) -> Result<(), LiveAppError> {
        match self.guard.check() {
            Ok(None) => Ok(()),
            Ok(Some(found)) if self.allow => {
                tracing::info!("{found}; writing anyway (--allow-live-writer)");
                Ok(())
            }
            Ok(Some(found)) => Err(LiveAppError::InUse(found)),
            Err(LiveAppError::Unsupported { .. }) if self.allow => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The runtime with the limits and cache the options ask for.
pub fn runtime(g: &Global) -> Result<Arc<Runtime>> {
    let mut limits = Limits::default();
    if let Some(mib) = g.memory_limit {
        limits.memory_bytes = usize::try_from(mib << 20).context("--memory-limit is too large")?;
    }
    if let Some(d) = g.deadline {
        limits.deadline = d.into();
    }
    let cache = if g.no_cache {
        CacheSetting::Disabled
    } else if let Some(d) = &g.cache_dir {
        CacheSetting::Dir(d.clone())
    } else {
        CacheSetting::Default
    };
    Ok(Arc::new(Runtime::new(RuntimeOptions { limits, cache })?))
}

/// `--policy`, or the first default location that has the default policy.
pub fn policy_path(g: &Global) -> Result<PathBuf> {
    if let Some(p) = &g.policy {
        return Ok(p.clone());
    }
    let candidates = default_policy_dirs();
    for dir in &candidates {
        let p = dir.join(DEFAULT_POLICY);
        if p.is_file() {
            return Ok(p);
        }
    }
    let searched = candidates
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(NoDefaultPolicy { searched }.into())
}

/// `$ARCHIVER_POLICY_DIR`, `<exe dir>/policies`, `<exe dir>/../policies`, in that order.
fn default_policy_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("ARCHIVER_POLICY_DIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("policies"));
        if let Some(up) = exe_dir.parent() {
            dirs.push(up.join("policies"));
        }
    }
    dirs
}

/// The config JSON: `--config` text, `@FILE` contents, or `{}`.
pub fn config_text(g: &Global) -> Result<String> {
    match g.config.as_deref() {
        None => Ok("{}".into()),
        Some(s) => match s.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path).map_err(|source| {
                ConfigFileError {
                    path: path.to_string(),
                    source,
                }
                .into()
            }),
            None => Ok(s.to_string()),
        },
    }
}

/// Everything a policy-driven command needs.
pub struct Session {
    pub archiver: Archiver,
    pub policy_path: PathBuf,
    pub paths: DataDirPaths,
    pub layout: Layout,
    /// Declared last so it is dropped after the archiver's stores (see [`LiveAppGuard`]: its
    /// descriptors must outlive our own SQLite connections).
    pub live: Option<LiveGuard>,
}

/// For a command that writes: refuses (before opening anything for writing) while another
/// process has the databases open, then opens the existing data directory and loads the policy.
pub fn open(g: &Global) -> Result<Session> {
    let (paths, layout) = paths(g)?;
    let live = live_guard(g, &paths);
    live.ensure_not_live()?;
    open_with(g, paths, layout, Access::Write, Some(live))
}

/// For a read-only command (`plan`, `status`, `export`): no live-app check, and the databases
/// are opened read-only, so nothing in the app's files changes.
pub fn open_read_only(g: &Global) -> Result<Session> {
    let (paths, layout) = paths(g)?;
    open_with(g, paths, layout, Access::Read, None)
}

/// Opens for writing without the live-app check; the caller checks `live` itself before each
/// write (`run`, once per sweep) and must have checked once before calling this.
pub fn open_guarded_by(
    g: &Global,
    paths: DataDirPaths,
    layout: Layout,
    live: LiveGuard,
) -> Result<Session> {
    open_with(g, paths, layout, Access::Write, Some(live))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

fn open_with(
    g: &Global,
    paths: DataDirPaths,
    layout: Layout,
    access: Access,
    live: Option<LiveGuard>,
) -> Result<Session> {
    let policy_path = policy_path(g)?;
    let config = config_text(g)?;
    let runtime = runtime(g)?;
    let stores: Stores = match access {
        Access::Write => paths.open(true)?,
        Access::Read => paths.open_read_only()?,
    };
    let mut builder = Archiver::builder()
        .stores(stores)
        .runtime(runtime)
        .policy_file(&policy_path)
        .config(config)
        .locks(paths.locks());
    if let Some(w) = g.workers {
        builder = builder.workers(usize::from(w));
    }
    // An archiver error goes up as itself, so the exit code and one-line message see it.
    let archiver = builder.build().map_err(|e| match e {
        BuildError::Archiver(e) => anyhow::Error::from(e),
        other => other.into(),
    })?;
    Ok(Session {
        archiver,
        policy_path,
        paths,
        layout,
        live,
    })
}
