//! The wasmtime runtime: one `Engine` and one `Linker` built once, sandbox limits, the compiled
//! component cache, and loading (with clear errors for files that are not our policies).

use crate::locks::{SessionHold, SessionLocks, HOLD_WAIT};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, OptLevel, Store, UpdateDeadline};

use crate::archive_dir::{ArchiveDir, ArchiveReader, ArchiveWriter, Entry};
use crate::bindings::{guest, ArchivePolicy, ArchivePolicyPre, WIT_PACKAGE, WIT_VERSION};
use crate::compile_cache;
use crate::error::{ArchiverError, LimitKind, Op, PolicyError};
use crate::host::members::MemberCtx;
use crate::host::{HostState, HostTrap, OpScope, Quotas, Stores};
use crate::policy::LoadedPolicy;
use crate::store::{
    FileOpts, FileStat, FileStore, Meta, Object, ObjectStore, Page, StoreError, SystemClock,
};

/// Sandbox limits for every policy call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Cap on a policy instance's linear memory (default 256 MiB).
    pub memory_bytes: usize,
    /// Wall-clock budget of one operation, host calls included (default 10 min: a multi-GiB
    /// session archives in well under that).
    pub deadline: Duration,
    /// Trap a guest that computes this long without calling any import (default 30 s): a
    /// streaming policy calls the host every chunk, so a long silence means a loop.
    pub stall: Option<Duration>,
    /// How often the epoch ticks, i.e. the granularity of both limits (default 10 ms).
    pub tick: Duration,
    /// Archive readers and writers one operation may hold open at once (default 16; the built
    /// policies hold at most two).
    pub max_open_archives: usize,
    /// Bytes an operation may write (file-store appends plus archive writes) before it has read
    /// anything (default 64 MiB). See [`Limits::write_ratio`].
    pub write_floor_bytes: u64,
    /// Bytes an operation may write per file-store byte it read (default 4): an archive writes a
    /// gzip no larger than what it read plus a few bytes per block. Each archive byte read allows
    /// a further [`crate::host::INFLATE_RATIO_MAX`] bytes, DEFLATE's largest possible expansion, so a restore
    /// of highly compressible output is bounded by what its archive can really inflate to, and
    /// is never refused. Together: a policy cannot fill the disk from nothing.
    pub write_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            deadline: Duration::from_secs(600),
            stall: Some(Duration::from_secs(30)),
            tick: Duration::from_millis(10),
            max_open_archives: Quotas::default().max_open_archives,
            write_floor_bytes: Quotas::default().write_floor_bytes,
            write_ratio: Quotas::default().write_ratio,
        }
    }
}

impl Limits {
    /// The per-operation quotas these limits set.
    pub fn quotas(&self) -> Quotas {
        Quotas {
            max_open_archives: self.max_open_archives,
            write_floor_bytes: self.write_floor_bytes,
            write_ratio: self.write_ratio,
        }
    }
}

/// Where compiled components are cached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CacheSetting {
    /// `$XDG_CACHE_HOME/session-archiver`, else `~/.cache/session-archiver`, else no cache.
    #[default]
    Default,
    /// This directory (created when missing).
    Dir(PathBuf),
    /// Always compile.
    Disabled,
}

impl CacheSetting {
    /// The directory this setting resolves to, if any.
    pub fn resolve(&self) -> Option<PathBuf> {
        match self {
            CacheSetting::Disabled => None,
            CacheSetting::Dir(d) => Some(d.clone()),
            CacheSetting::Default => std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|d| d.join("session-archiver")),
        }
    }
}

/// How the runtime is built.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// The sandbox limits every operation runs under.
    pub limits: Limits,
    /// Where compiled policies are cached, if anywhere.
    pub cache: CacheSetting,
}

/// Compile-cache counters since the runtime was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads served from the cache (no compile).
    pub hits: u64,
    /// Loads that ran Cranelift.
    pub compiles: u64,
}

/// The engine, linker and limits shared by every policy and operation.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    cache_dir: Option<PathBuf>,
    hits: AtomicU64,
    compiles: AtomicU64,
    /// The largest guest linear memory of any operation since the last
    /// [`Runtime::take_peak_guest_memory`].
    peak_guest_memory: AtomicU64,
    /// Policy instances made (each operation one; each member helper thread one, again only
    /// after a trap).
    instances: AtomicU64,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.limits)
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

fn wasm_err(label: &str, what: &str, e: wasmtime::Error) -> ArchiverError {
    ArchiverError::Load {
        label: label.to_string(),
        msg: format!("{what}: {e:#}"),
    }
}

impl Runtime {
    /// Builds the engine (component model, epoch interruption), links every host interface
    /// and starts the epoch ticker thread.
    pub fn new(options: RuntimeOptions) -> Result<Self, ArchiverError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Epochs rather than fuel: a ticker thread costs nothing per instruction, and wall-clock
        // deadlines are what users configure.
        config.epoch_interruption(true);
        config.cranelift_opt_level(OptLevel::Speed);
        // `perf` cannot name JIT code on its own: with ARCHIVER_PERFMAP set, wasmtime writes
        // /tmp/perf-PID.map so a profile shows which policy function the time goes to.
        if std::env::var_os("ARCHIVER_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| wasm_err("engine", "config", e))?;
        let mut linker = Linker::<HostState>::new(&engine);
        ArchivePolicy::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| wasm_err("linker", "adding host interfaces", e))?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (engine, stop, tick) = (engine.clone(), stop.clone(), options.limits.tick);
            std::thread::Builder::new()
                .name("archiver-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| ArchiverError::Io {
                    what: "spawning the epoch ticker".into(),
                    source: e,
                })?
        };
        Ok(Runtime {
            engine,
            linker,
            limits: options.limits,
            cache_dir: options.cache.resolve(),
            hits: AtomicU64::new(0),
            compiles: AtomicU64::new(0),
            peak_guest_memory: AtomicU64::new(0),
            instances: AtomicU64::new(0),
            stop,
            ticker: Some(ticker),
        })
    }

    /// The shared engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The limits every operation runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The compile cache directory, if caching is on.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// Cache hits and compiles so far.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            compiles: self.compiles.load(Ordering::Relaxed),
        }
    }

    /// The most linear memory any one policy operation (instance) had since the last call, in
    /// bytes, and resets it: call it around an operation to get that operation's peak. It is
    /// what the bounded-memory target (guest memory ≤ 16 MiB for any session size) is checked on.
    pub fn take_peak_guest_memory(&self) -> u64 {
        self.peak_guest_memory.swap(0, Ordering::Relaxed)
    }

    /// Policy instances made since the runtime was built: one per operation, plus one per member
    /// helper thread, which keeps it for every member it takes (a fresh one only after a trap).
    pub fn instances_made(&self) -> u64 {
        self.instances.load(Ordering::Relaxed)
    }

    /// Reads, compiles (or fetches from cache), links and checks the policy at `path`.
    pub fn load_file(&self, path: &Path) -> Result<LoadedPolicy, ArchiverError> {
        let label = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ArchiverError::Load {
            label: label.clone(),
            msg: format!("cannot read the file: {e}"),
        })?;
        let mut policy = self.load_bytes(&bytes, &label)?;
        policy.path = Some(path.to_path_buf());
        Ok(policy)
    }

    /// Like [`Runtime::load_file`] for bytes in memory; `label` names them in errors.
    pub fn load_bytes(&self, bytes: &[u8], label: &str) -> Result<LoadedPolicy, ArchiverError> {
        check_header(bytes, label)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let (component, from_cache) = self.compile(bytes, &sha256, label)?;
        let pre = self.link(&component, label)?;
        let info = self.call_info(&pre, label)?;
        tracing::debug!(policy = %info.name, version = %info.version, from_cache, "loaded {label}");
        Ok(LoadedPolicy {
            info,
            sha256,
            path: None,
            label: label.to_string(),
            from_cache,
            pre,
        })
    }

    /// The cache file for these bytes under this engine's configuration.
    fn cache_path(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut h = ShaHasher(Sha256::new());
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let engine_hash = hex::encode(&h.0.finalize()[..8]);
        Some(dir.join(format!("{sha256}-{engine_hash}.cwasm")))
    }

    fn compile(
        &self,
        bytes: &[u8],
        sha256: &str,
        label: &str,
    ) -> Result<(Component, bool), ArchiverError> {
        let cache = self.cache_path(sha256).filter(|p| trusted_cache_dir(p));
        if let Some(path) = cache.as_ref() {
            match compile_cache::read_entry(path) {
                Ok(None) => {}
                Ok(Some(cached)) => {
                    // SAFETY: `deserialize` trusts the bytes to be wasmtime's own output. They
                    // are: read through a handle opened without following symlinks, from a file
                    // owned by us that no one else can write, in a directory no one else can
                    // write, under a name keyed by the SHA-256 of the source and this engine's
                    // compatibility hash; we wrote it (below) to a fresh private temp file and
                    // renamed it in place. wasmtime still checks its header and version and
                    // errors (we then recompile) on mismatch.
                    match unsafe { Component::deserialize(&self.engine, &cached) } {
                        Ok(c) => {
                            self.hits.fetch_add(1, Ordering::Relaxed);
                            return Ok((c, true));
                        }
                        Err(e) => {
                            tracing::warn!("ignoring unusable cache entry {}: {e}", path.display())
                        }
                    }
                }
                Err(e) => tracing::warn!("ignoring untrusted compile cache entry: {e}"),
            }
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| wasm_err(label, "not a valid component", e))?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = cache {
            let written = component
                .serialize()
                .map_err(|e| e.to_string())
                .and_then(|b| compile_cache::write_entry(&path, &b).map_err(|e| e.to_string()));
            if let Err(e) = written {
                tracing::warn!("cannot write compile cache {}: {e}", path.display());
            }
        }
        Ok((component, false))
    }

    /// Links the component and checks it is an `archive-policy`; on failure, says why.
    fn link(
        &self,
        component: &Component,
        label: &str,
    ) -> Result<ArchivePolicyPre<HostState>, ArchiverError> {
        let linked = self
            .linker
            .instantiate_pre(component)
            .and_then(ArchivePolicyPre::new);
        linked.map_err(|e| self.diagnose(component, label, e))
    }

    /// Explains a link failure from the component's import and export names.
    fn diagnose(&self, component: &Component, label: &str, err: wasmtime::Error) -> ArchiverError {
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let expected = format!("{WIT_PACKAGE}@{WIT_VERSION}");
        let other_version = imports
            .iter()
            .chain(&exports)
            .filter_map(|n| split_ours(n))
            .find(|(_, v)| *v != WIT_VERSION);
        if let Some((_, found)) = other_version {
            return ArchiverError::Incompatible {
                label: label.to_string(),
                found: format!("{WIT_PACKAGE}@{found}"),
                expected,
                detail: format!("imports {imports:?}, exports {exports:?}"),
            };
        }
        let foreign: Vec<&String> = imports
            .iter()
            .filter(|n| !split_ours(n).is_some_and(|(i, _)| IMPORTS.contains(&i)))
            .collect();
        if !foreign.is_empty() {
            return ArchiverError::WrongWorld {
                label: label.to_string(),
                detail: format!("it imports {foreign:?}, which this host does not provide"),
            };
        }
        let policy_export = format!("{WIT_PACKAGE}/policy@{WIT_VERSION}");
        if !exports.contains(&policy_export) {
            return ArchiverError::WrongWorld {
                label: label.to_string(),
                detail: format!("it does not export {policy_export} (it exports {exports:?})"),
            };
        }
        ArchiverError::Incompatible {
            label: label.to_string(),
            found: expected.clone(),
            expected,
            detail: format!("its functions do not match this host's: {err:#}"),
        }
    }

    /// Instantiates once and calls `info`: a policy that cannot say who it is is rejected.
    fn call_info(
        &self,
        pre: &ArchivePolicyPre<HostState>,
        label: &str,
    ) -> Result<guest::PolicyInfo, ArchiverError> {
        let state = HostState::new(null_stores(), Arc::from(label), self.limits.memory_bytes);
        let mut store = self.new_store(state);
        let result = pre
            .instantiate(&mut store)
            .and_then(|p| p.session_archiver_policy_policy().call_info(&mut store));
        result.map_err(|e| classify_trap(e, &store, label, Op::Info, None))
    }

    /// A fresh store (for one instance) with the memory cap and the deadline/stall rule
    /// installed.
    pub(crate) fn new_store(&self, state: HostState) -> Store<HostState> {
        self.instances.fetch_add(1, Ordering::Relaxed);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let (deadline, stall) = (self.limits.deadline, self.limits.stall);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            let state = ctx.data();
            let now = Instant::now();
            if now.duration_since(state.started) > deadline {
                return Err(wasmtime::Error::new(HostTrap::Deadline(deadline)));
            }
            if let Some(stall) = stall {
                if now.duration_since(state.last_progress) > stall {
                    return Err(wasmtime::Error::new(HostTrap::Stall(stall)));
                }
            }
            Ok(UpdateDeadline::Continue(1))
        });
        store
    }

    /// Runs one policy operation on a fresh instance of `policy` and maps every failure to an
    /// [`ArchiverError`] naming the policy, the operation and the target. Returns the result
    /// and the bytes written to the export sink. A prune given `locks` takes each session's lock
    /// before it acts on that session (the other operations hold theirs already).
    pub(crate) fn run<R>(
        &self,
        policy: &LoadedPolicy,
        stores: &Stores,
        sink: Option<Box<dyn std::io::Write + Send>>,
        RunOp {
            op,
            target,
            locks,
            members,
        }: RunOp<'_>,
        f: impl FnOnce(&guest::Guest, &mut Store<HostState>) -> wasmtime::Result<Result<R, PolicyError>>,
    ) -> Result<(R, u64), ArchiverError> {
        let scope = op_scope(stores, op, target)?;
        self.run_in(
            policy,
            stores,
            sink,
            members.cloned(),
            locks,
            scope,
            target,
            f,
        )
    }

    /// [`Runtime::run`] for `archive`, whose `members.write-members` starts helpers with `ctx`.
    pub(crate) fn run_with_members<R>(
        &self,
        policy: &LoadedPolicy,
        stores: &Stores,
        ctx: MemberCtx,
        op: Op,
        target: Option<&str>,
        f: impl FnOnce(&guest::Guest, &mut Store<HostState>) -> wasmtime::Result<Result<R, PolicyError>>,
    ) -> Result<(R, u64), ArchiverError> {
        let scope = op_scope(stores, op, target)?;
        self.run_in(policy, stores, None, Some(ctx), None, scope, target, f)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_in<R>(
        &self,
        policy: &LoadedPolicy,
        stores: &Stores,
        sink: Option<Box<dyn std::io::Write + Send>>,
        members: Option<MemberCtx>,
        locks: Option<&SessionLocks>,
        scope: OpScope,
        target: Option<&str>,
        f: impl FnOnce(&guest::Guest, &mut Store<HostState>) -> wasmtime::Result<Result<R, PolicyError>>,
    ) -> Result<(R, u64), ArchiverError> {
        let op = scope.op;
        let name = policy.display_name();
        let mut state = HostState::new(
            stores.clone(),
            Arc::from(name.as_str()),
            self.limits.memory_bytes,
        );
        if let Some(sink) = sink {
            state = state.with_sink(sink);
        }
        if let Some(ctx) = members {
            state = state.with_members(ctx);
        }
        state = state.for_op(scope, self.limits.quotas());
        if let (Op::Prune, Some(locks)) = (op, locks) {
            state = state.with_session_hold(SessionHold::new(locks.clone(), HOLD_WAIT));
        }
        let mut store = self.new_store(state);
        let result = policy
            .pre
            .instantiate(&mut store)
            .and_then(|p| f(p.session_archiver_policy_policy(), &mut store));
        self.peak_guest_memory
            .fetch_max(store.data().limiter.peak_memory() as u64, Ordering::Relaxed);
        match result {
            Ok(Ok(r)) => Ok((r, store.data().sink_bytes())),
            Ok(Err(error)) => Err(ArchiverError::Policy {
                policy: name,
                op,
                target: target.map(str::to_string),
                error,
            }),
            Err(e) => Err(classify_trap(e, &store, &name, op, target)),
        }
    }
}

/// One policy instance serving a run of calls on a helper thread (the members of one operation
/// that a member helper takes in turn). A fresh instance per 4 MiB member spent about a tenth of
/// a restore's CPU instantiating and faulting in new linear memory. Each call is timed from its
/// own start (deadline, stall). A call that ends in a trap or a limit drops the instance, since
/// wasmtime will not re-enter it, and the next call gets a fresh one; a policy error leaves it
/// usable.
pub(crate) struct HelperInstance<'a> {
    runtime: &'a Runtime,
    policy: &'a LoadedPolicy,
    stores: &'a Stores,
    scope: OpScope,
    name: String,
    live: Option<(Store<HostState>, ArchivePolicy)>,
}

impl<'a> HelperInstance<'a> {
    /// Nothing is instantiated until the first call.
    pub(crate) fn new(
        runtime: &'a Runtime,
        policy: &'a LoadedPolicy,
        stores: &'a Stores,
        scope: OpScope,
    ) -> Self {
        HelperInstance {
            runtime,
            policy,
            stores,
            scope,
            name: policy.display_name(),
            live: None,
        }
    }

    /// Calls `f` on the kept instance (made first if there is none), mapping failures as
    /// [`Runtime::run`] does; the scope's session is the target named in errors.
    pub(crate) fn call<R>(
        &mut self,
        f: impl FnOnce(&guest::Guest, &mut Store<HostState>) -> wasmtime::Result<Result<R, PolicyError>>,
    ) -> Result<R, ArchiverError> {
        let (op, target) = (self.scope.op, self.scope.session.clone());
        let live = match &mut self.live {
            Some(live) => live,
            empty => {
                let state = HostState::new(
                    self.stores.clone(),
                    Arc::from(self.name.as_str()),
                    self.runtime.limits.memory_bytes,
                )
                .for_op(self.scope.clone(), self.runtime.limits.quotas());
                let mut store = self.runtime.new_store(state);
                match self.policy.pre.instantiate(&mut store) {
                    Ok(instance) => empty.insert((store, instance)),
                    Err(e) => {
                        return Err(classify_trap(e, &store, &self.name, op, target.as_deref()))
                    }
                }
            }
        };
        let (store, instance) = live;
        let now = Instant::now();
        store.data_mut().started = now;
        store.data_mut().last_progress = now;
        let result = f(instance.session_archiver_policy_policy(), store);
        self.runtime
            .peak_guest_memory
            .fetch_max(store.data().limiter.peak_memory() as u64, Ordering::Relaxed);
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(error)) => Err(ArchiverError::Policy {
                policy: self.name.clone(),
                op,
                target,
                error,
            }),
            Err(e) => {
                let err = classify_trap(e, store, &self.name, op, target.as_deref());
                self.live = None;
                Err(err)
            }
        }
    }
}

/// Which operation [`Runtime::run`] runs, on what, and (for a prune) under which session locks.
#[derive(Clone, Copy)]
pub(crate) struct RunOp<'a> {
    pub op: Op,
    pub target: Option<&'a str>,
    pub locks: Option<&'a SessionLocks>,
    /// How the operation starts member helpers (`members.start-inflate`); `None`: it runs none.
    pub members: Option<&'a MemberCtx>,
}

impl<'a> RunOp<'a> {
    /// `op` on `target`, without session locks.
    pub fn new(op: Op, target: Option<&'a str>) -> Self {
        RunOp {
            op,
            target,
            locks: None,
            members: None,
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// The scope of `op` on `target`; a prune's is the archives listed now.
fn op_scope(stores: &Stores, op: Op, target: Option<&str>) -> Result<OpScope, ArchiverError> {
    let listed = if op == Op::Prune {
        stores
            .archive_dir
            .list()?
            .into_iter()
            .map(|e| e.name)
            .collect()
    } else {
        Vec::new()
    };
    Ok(OpScope::for_op(op, target, listed))
}

/// The interfaces a policy may import (without package and version).
const IMPORTS: &[&str] = &[
    "objects",
    "files",
    "archive-dir",
    "clock",
    "log",
    "export-sink",
];

/// `session-archiver:policy/<iface>@<version>` → `(iface, version)`.
fn split_ours(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix(WIT_PACKAGE)?
        .strip_prefix('/')?
        .split_once('@')
}

/// Tells garbage and core modules from components before handing bytes to Cranelift.
fn check_header(bytes: &[u8], label: &str) -> Result<(), ArchiverError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(ArchiverError::Load {
            label: label.to_string(),
            msg: "not a WebAssembly file (it does not start with the \\0asm magic)".into(),
        });
    }
    // After the magic: a u16 version and a u16 layer; layer 0 is a core module, 1 a component.
    match u16::from_le_bytes([bytes[6], bytes[7]]) {
        0 => Err(ArchiverError::NotAComponent {
            label: label.to_string(),
        }),
        1 => Ok(()),
        layer => Err(ArchiverError::Load {
            label: label.to_string(),
            msg: format!("unknown WebAssembly binary layer {layer}"),
        }),
    }
}

/// Turns a wasmtime error from a guest call into the limit or trap it was.
pub(crate) fn classify_trap(
    e: wasmtime::Error,
    store: &Store<HostState>,
    policy: &str,
    op: Op,
    target: Option<&str>,
) -> ArchiverError {
    let (policy, target) = (policy.to_string(), target.map(str::to_string));
    let host_trap = e
        .downcast_ref::<HostTrap>()
        .cloned()
        .or_else(|| store.data().limiter.hit.clone());
    match host_trap {
        Some(t @ (HostTrap::Deadline(_) | HostTrap::Stall(_))) => ArchiverError::Limit {
            policy,
            op,
            target,
            which: LimitKind::Deadline,
            msg: t.to_string(),
        },
        Some(t @ HostTrap::Memory { .. }) => ArchiverError::Limit {
            policy,
            op,
            target,
            which: LimitKind::Memory,
            msg: t.to_string(),
        },
        Some(t @ HostTrap::Handles { .. }) => ArchiverError::Limit {
            policy,
            op,
            target,
            which: LimitKind::OpenArchives,
            msg: t.to_string(),
        },
        Some(t @ HostTrap::Writes { .. }) => ArchiverError::Limit {
            policy,
            op,
            target,
            which: LimitKind::Writes,
            msg: t.to_string(),
        },
        Some(HostTrap::Refused {
            import,
            target: denied,
            why,
            ..
        }) => ArchiverError::Refused {
            policy,
            op,
            target,
            import,
            denied,
            why,
        },
        Some(t) => ArchiverError::Trap {
            policy,
            op,
            target,
            msg: t.to_string(),
        },
        None => ArchiverError::Trap {
            policy,
            op,
            target,
            msg: trap_message(&e),
        },
    }
}

/// The trap's message chain without wasmtime's multi-line backtrace.
fn trap_message(e: &wasmtime::Error) -> String {
    let parts: Vec<String> = e
        .chain()
        .map(|c| c.to_string())
        .filter(|s| !s.starts_with("error while executing at wasm backtrace"))
        .collect();
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// Whether the directory of cache entry `path` may hold native code we will run: ours, not
/// writable by group or others (created 0700 when missing). When not, the policy is compiled
/// without the cache and a warning says why: a cache is an optimisation, never worth running
/// code someone else could have planted.
fn trusted_cache_dir(path: &Path) -> bool {
    let dir = path.parent().unwrap_or(Path::new("."));
    match compile_cache::check_dir(dir) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("not using the compile cache: {e}");
            false
        }
    }
}

/// Feeds `Hash` output into SHA-256 so the cache key is stable across processes (std's
/// `DefaultHasher` is not guaranteed to be).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Stores for calling `info` at load time, before any real store is attached: every call fails.
fn null_stores() -> Stores {
    let null = Arc::new(NullStore);
    Stores {
        objects: null.clone(),
        files: null.clone(),
        archive_dir: null,
        clock: Arc::new(SystemClock),
    }
}

struct NullStore;

fn unavailable<T>() -> Result<T, StoreError> {
    Err(StoreError::Io(
        "no stores are attached while a policy is being loaded".into(),
    ))
}

impl ObjectStore for NullStore {
    fn list(&self, _: Option<&str>, _: u32) -> Result<Page, StoreError> {
        unavailable()
    }
    fn get(&self, _: &str) -> Result<Object, StoreError> {
        unavailable()
    }
    fn update_meta(&self, _: &str, _: &Meta) -> Result<Object, StoreError> {
        unavailable()
    }
    fn update_meta_if(&self, _: &str, _: &Meta, _: u64) -> Result<Object, StoreError> {
        unavailable()
    }
    fn insert(&self, _: &str, _: &Meta) -> Result<Object, StoreError> {
        unavailable()
    }
}

impl FileStore for NullStore {
    fn stat(&self, _: &str, _: &str) -> Result<Option<FileStat>, StoreError> {
        unavailable()
    }
    fn read(&self, _: &str, _: &str, _: u64, _: u32) -> Result<Vec<u8>, StoreError> {
        unavailable()
    }
    fn create(&self, _: &str, _: &str, _: FileOpts) -> Result<FileStat, StoreError> {
        unavailable()
    }
    fn append(&self, _: &str, _: &str, _: &[u8]) -> Result<FileStat, StoreError> {
        unavailable()
    }
    fn delete_if_unchanged(&self, _: &str, _: &str, _: &FileStat) -> Result<(), StoreError> {
        unavailable()
    }
    fn delete(&self, _: &str, _: &str) -> Result<(), StoreError> {
        unavailable()
    }
    fn rename_if_unchanged(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: Option<&FileStat>,
    ) -> Result<(), StoreError> {
        unavailable()
    }
    fn list_files(&self) -> Result<Vec<(String, String, FileStat)>, StoreError> {
        unavailable()
    }
    fn meta(&self, _: &str, _: &str) -> Result<Meta, StoreError> {
        unavailable()
    }
    fn set_meta(&self, _: &str, _: &str, _: &Meta) -> Result<(), StoreError> {
        unavailable()
    }
}

impl ArchiveDir for NullStore {
    fn list(&self) -> Result<Vec<Entry>, StoreError> {
        unavailable()
    }
    fn stat(&self, _: &str) -> Result<Option<Entry>, StoreError> {
        unavailable()
    }
    fn create(&self, _: &str) -> Result<Box<dyn ArchiveWriter>, StoreError> {
        unavailable()
    }
    fn open(&self, _: &str) -> Result<Box<dyn ArchiveReader>, StoreError> {
        unavailable()
    }
    fn remove(&self, _: &str) -> Result<(), StoreError> {
        unavailable()
    }
    fn path(&self, _: &str) -> Result<String, StoreError> {
        unavailable()
    }
    fn clean_temps(&self, _: i64) -> Result<u32, StoreError> {
        unavailable()
    }
}
