//! The library facade the CLI and the tests use: one object holding the stores, the runtime,
//! the swappable policy and its configuration.
//!
//! Every operation takes the current policy and config once at its start and runs on a fresh
//! wasmtime `Store` (an instance that trapped is unusable, and a policy keeps no state between
//! calls). Archive, restore and export hold the session's lock ([`SessionLocks`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};

use crate::bindings::guest::{self, Action};
use crate::error::{describe_policy_error, ArchiverError, Op};
use crate::host::Stores;
use crate::locks::SessionLocks;
use crate::policy::{LoadedPolicy, PolicyId, PolicySlot};
use crate::runtime::Runtime;

pub use crate::bindings::guest::{
    ArchiveOutcome, ExportOutcome, PruneReport, RecoverReport, RestoreOutcome, SweepPlan,
    SweepReport,
};

/// A result together with the policy that produced it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Served<T> {
    pub policy: PolicyId,
    pub value: T,
}

/// How an [`Archiver`] is set up besides its stores, runtime and policy.
#[derive(Debug, Clone)]
pub struct ArchiverOptions {
    /// Policy configuration, JSON text (`{}`: the policy's defaults). Checked by the policy's
    /// `validate-config` when the archiver is built.
    pub config: String,
    /// Parallel archive workers in a sweep; `None`: the machine's available parallelism.
    pub workers: Option<usize>,
    /// Per-session exclusion.
    pub locks: SessionLocks,
}

impl Default for ArchiverOptions {
    fn default() -> Self {
        ArchiverOptions {
            config: "{}".into(),
            workers: None,
            locks: SessionLocks::in_process(),
        }
    }
}

/// What a swap did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SwapOutcome {
    pub old: PolicyId,
    pub new: PolicyId,
    /// The new policy's compiled code came from the cache.
    pub from_cache: bool,
}

/// Sweep progress: one call per finished archive decision.
#[derive(Debug, Clone, Copy)]
pub struct SweepProgress<'a> {
    pub done: usize,
    pub total: usize,
    /// The session just handled.
    pub id: &'a str,
}

/// One session (or step) a sweep could not handle.
#[derive(Debug, serde::Serialize)]
pub struct SweepFailure {
    /// Session id, archive name, or `prune`.
    pub target: String,
    pub op: Op,
    /// [`ArchiverError::code`].
    pub code: &'static str,
    /// The full message.
    pub message: String,
    #[serde(skip)]
    pub error: ArchiverError,
}

impl SweepFailure {
    fn new(target: &str, op: Op, error: ArchiverError) -> Self {
        SweepFailure {
            target: target.to_string(),
            op,
            code: error.code(),
            message: error.to_string(),
            error,
        }
    }
}

/// What a host-driven (parallel) sweep did. Counts are exact: every planned session ends in
/// exactly one of `archived`, `skipped` or `failed`.
#[derive(Debug, Default, serde::Serialize)]
pub struct SweepSummary {
    /// Objects looked at by the plan.
    pub scanned: u32,
    /// Sessions archived.
    pub archived: u32,
    /// Interrupted operations finished or rolled back.
    pub recovered: u32,
    /// Sessions skipped, by reason (the plan's reasons plus `locked` and `nothing-to-archive`).
    pub skipped: BTreeMap<String, u32>,
    /// Sessions or steps that failed; the sweep went on.
    pub failed: Vec<SweepFailure>,
    /// Raw bytes moved out of the live store.
    pub bytes_archived: u64,
    /// Compressed bytes written.
    pub bytes_written: u64,
    /// The prune that followed (`None` if it failed: see `failed`).
    pub prune: Option<PruneReport>,
    /// Worker threads used for the archive step.
    pub workers: usize,
}

/// The archiver: stores + runtime + swappable policy + config.
pub struct Archiver {
    stores: Stores,
    runtime: Arc<Runtime>,
    slot: PolicySlot,
    /// The raw config; the lock also serialises `set_config` against `swap_policy`.
    config: Mutex<String>,
    workers: usize,
    locks: SessionLocks,
}

/// A writer that forwards export chunks to the caller's thread.
struct ChannelSink(SyncSender<Vec<u8>>);

impl Write for ChannelSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf.to_vec()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the export destination failed",
            )
        })?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Archiver {
    /// Builds an archiver; the policy validates `options.config` first.
    pub fn new(
        stores: Stores,
        runtime: Arc<Runtime>,
        policy: LoadedPolicy,
        options: ArchiverOptions,
    ) -> Result<Self, ArchiverError> {
        if !wasmtime::Engine::same(policy.pre.engine(), runtime.engine()) {
            return Err(ArchiverError::Load {
                label: policy.label.clone(),
                msg: "the policy was loaded by another Runtime; load it with this one".into(),
            });
        }
        let workers = options
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let archiver = Archiver {
            stores,
            runtime,
            slot: PolicySlot::new(policy),
            config: Mutex::new(String::new()),
            workers,
            locks: options.locks,
        };
        archiver.set_config(&options.config)?;
        Ok(archiver)
    }

    /// The stores this archiver works on.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// The shared runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Sweep worker count.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The session locks.
    pub fn locks(&self) -> &SessionLocks {
        &self.locks
    }

    /// The policy new operations use.
    pub fn current_policy(&self) -> Arc<LoadedPolicy> {
        self.slot.current()
    }

    /// Who the current policy is.
    pub fn info(&self) -> Served<guest::PolicyInfo> {
        let p = self.current_policy();
        Served {
            policy: p.id(),
            value: p.info.clone(),
        }
    }

    /// The raw configuration JSON in force.
    pub fn config(&self) -> String {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Validates `json` with the current policy and, if it is accepted, makes it the config.
    /// Returns the policy's normalised form (defaults filled in).
    pub fn set_config(&self, json: &str) -> Result<Served<String>, ArchiverError> {
        let mut config = self.config.lock().unwrap_or_else(|p| p.into_inner());
        let policy = self.current_policy();
        let normalised = self.validate_with(&policy, json)?;
        *config = json.to_string();
        Ok(Served {
            policy: policy.id(),
            value: normalised,
        })
    }

    /// Sets the config without asking the policy (for sandbox tests whose config makes
    /// `validate-config` itself misbehave).
    pub fn set_config_unchecked(&self, json: &str) {
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = json.to_string();
    }

    fn validate_with(&self, policy: &LoadedPolicy, json: &str) -> Result<String, ArchiverError> {
        let (normalised, _) = self.runtime.run(
            policy,
            &self.stores,
            None,
            Op::ValidateConfig,
            None,
            |g, s| g.call_validate_config(s, json),
        )?;
        Ok(normalised)
    }

    /// The policy and config for one operation, taken together at its start.
    fn snapshot(&self) -> (Arc<LoadedPolicy>, String) {
        let config = self.config.lock().unwrap_or_else(|p| p.into_inner());
        (self.slot.current(), config.clone())
    }

    /// Archives session `id`, holding its lock.
    pub fn archive(&self, id: &str) -> Result<Served<ArchiveOutcome>, ArchiverError> {
        let _lock = self.locks.lock(id)?;
        let (policy, config) = self.snapshot();
        self.archive_locked(&policy, &config, id)
    }

    fn archive_locked(
        &self,
        policy: &LoadedPolicy,
        config: &str,
        id: &str,
    ) -> Result<Served<ArchiveOutcome>, ArchiverError> {
        let (value, _) =
            self.runtime
                .run(policy, &self.stores, None, Op::Archive, Some(id), |g, s| {
                    g.call_archive(s, config, id)
                })?;
        Ok(Served {
            policy: policy.id(),
            value,
        })
    }

    /// Restores session `id` into the live store, holding its lock.
    pub fn restore(&self, id: &str) -> Result<Served<RestoreOutcome>, ArchiverError> {
        let _lock = self.locks.lock(id)?;
        let (policy, config) = self.snapshot();
        let (value, _) = self.runtime.run(
            &policy,
            &self.stores,
            None,
            Op::Restore,
            Some(id),
            |g, s| g.call_restore(s, &config, id),
        )?;
        Ok(Served {
            policy: policy.id(),
            value,
        })
    }

    /// Streams session `id`'s bytes into `out`, holding its lock. The policy runs on a helper
    /// thread and hands chunks over a small bounded channel, so memory stays bounded and `out`
    /// need not be `Send` or `'static`.
    pub fn export<W: Write>(
        &self,
        id: &str,
        mut out: W,
    ) -> Result<Served<ExportOutcome>, ArchiverError> {
        let _lock = self.locks.lock(id)?;
        let (policy, config) = self.snapshot();
        let (tx, rx) = sync_channel::<Vec<u8>>(2);
        let sink = Box::new(ChannelSink(tx));
        let (result, write_error) = std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                self.runtime.run(
                    &policy,
                    &self.stores,
                    Some(sink),
                    Op::Export,
                    Some(id),
                    |g, s| g.call_export(s, &config, id),
                )
            });
            let mut write_error = None;
            for chunk in rx.iter() {
                if let Err(e) = out.write_all(&chunk) {
                    write_error = Some(e);
                    break;
                }
            }
            // Dropping the receiver makes the guest's next write fail, so it stops early.
            drop(rx);
            if write_error.is_none() {
                write_error = out.flush().err();
            }
            let result = worker
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (result, write_error)
        });
        if let Some(source) = write_error {
            return Err(ArchiverError::Io {
                what: format!("writing the export of {id:?}"),
                source,
            });
        }
        let (mut value, written) = result?;
        if value.bytes != written {
            // The host counted what reached `out`; a policy's own claim never overrides that.
            tracing::warn!(
                policy = %policy.id(),
                claimed = value.bytes,
                written,
                "export of {id:?}: the policy's byte count is wrong; reporting what was written"
            );
            value.bytes = written;
        }
        Ok(Served {
            policy: policy.id(),
            value,
        })
    }

    /// A dry run of a sweep.
    pub fn plan(&self) -> Result<Served<SweepPlan>, ArchiverError> {
        let (policy, config) = self.snapshot();
        let value = self.plan_with(&policy, &config)?;
        Ok(Served {
            policy: policy.id(),
            value,
        })
    }

    fn plan_with(&self, policy: &LoadedPolicy, config: &str) -> Result<SweepPlan, ArchiverError> {
        let (plan, _) = self
            .runtime
            .run(policy, &self.stores, None, Op::Plan, None, |g, s| {
                g.call_plan(s, config)
            })?;
        Ok(plan)
    }

    /// Only the prune step.
    pub fn prune(&self) -> Result<Served<PruneReport>, ArchiverError> {
        let (policy, config) = self.snapshot();
        let (value, _) =
            self.runtime
                .run(&policy, &self.stores, None, Op::Prune, None, |g, s| {
                    g.call_prune(s, &config)
                })?;
        Ok(Served {
            policy: policy.id(),
            value,
        })
    }

    /// Finishes or rolls back interrupted operations: of session `id` (waiting for its lock),
    /// or of every session the plan marks `recover` (skipping those locked by a running
    /// operation, whose intent is not stale). Also removes temp files writers left behind.
    pub fn recover(&self, id: Option<&str>) -> Result<Served<RecoverReport>, ArchiverError> {
        let (policy, config) = self.snapshot();
        let value = match id {
            Some(id) => {
                let _lock = self.locks.lock(id)?;
                self.recover_locked(&policy, &config, id)?
            }
            None => {
                self.clean_temps();
                let plan = self.plan_with(&policy, &config)?;
                let mut total = empty_recover_report();
                for d in plan
                    .decisions
                    .iter()
                    .filter(|d| d.action == Action::Recover)
                {
                    let Some(_lock) = self.locks.try_lock(&d.target)? else {
                        continue;
                    };
                    match self.recover_locked(&policy, &config, &d.target) {
                        Ok(r) => add_recover(&mut total, r),
                        Err(e) => {
                            total.examined += 1;
                            total.failed.push(guest::Failure {
                                target: d.target.clone(),
                                error: as_policy_error(e),
                            });
                        }
                    }
                }
                total
            }
        };
        Ok(Served {
            policy: policy.id(),
            value,
        })
    }

    fn recover_locked(
        &self,
        policy: &LoadedPolicy,
        config: &str,
        id: &str,
    ) -> Result<RecoverReport, ArchiverError> {
        let (r, _) =
            self.runtime
                .run(policy, &self.stores, None, Op::Recover, Some(id), |g, s| {
                    g.call_recover(s, config, Some(id))
                })?;
        Ok(r)
    }

    /// Removes writer temp files old enough that no live operation can own them (twice the
    /// operation deadline).
    fn clean_temps(&self) {
        let min_age = (self.runtime.limits().deadline.as_millis() as i64).saturating_mul(2);
        if let Err(e) = self.stores.archive_dir.clean_temps(min_age) {
            tracing::warn!("cleaning archive temp files: {e}");
        }
    }

    /// The policy's own single-instance sweep (recover, archive, prune in one guest call, no
    /// session locks, one core).
    pub fn sweep_in_guest(&self) -> Result<Served<SweepReport>, ArchiverError> {
        let (policy, config) = self.snapshot();
        self.clean_temps();
        let (value, _) =
            self.runtime
                .run(&policy, &self.stores, None, Op::Sweep, None, |g, s| {
                    g.call_sweep(s, &config)
                })?;
        Ok(Served {
            policy: policy.id(),
            value,
        })
    }

    /// A sweep driven by the host: recover what the plan marks, then the policy's `archive`
    /// decisions on up to [`Archiver::workers`] threads (one `Store` each, the compiled policy
    /// shared), then `prune`. Sessions locked by another operation are skipped (`locked`).
    /// The whole sweep uses the policy and config current when it starts.
    pub fn sweep(
        &self,
        progress: impl Fn(SweepProgress<'_>) + Sync,
    ) -> Result<Served<SweepSummary>, ArchiverError> {
        let (policy, config) = self.snapshot();
        self.clean_temps();
        let mut summary = SweepSummary::default();

        let mut plan = self.plan_with(&policy, &config)?;
        let mut recovered_any = false;
        for d in plan
            .decisions
            .iter()
            .filter(|d| d.action == Action::Recover)
        {
            let Some(_lock) = self.locks.try_lock(&d.target)? else {
                *summary.skipped.entry("locked".into()).or_default() += 1;
                continue;
            };
            match self.recover_locked(&policy, &config, &d.target) {
                Ok(r) => {
                    summary.recovered = summary
                        .recovered
                        .saturating_add(r.finished.saturating_add(r.rolled_back));
                    recovered_any = true;
                    for f in r.failed {
                        let error = ArchiverError::Policy {
                            policy: policy.display_name(),
                            op: Op::Recover,
                            target: Some(f.target.clone()),
                            error: f.error,
                        };
                        summary
                            .failed
                            .push(SweepFailure::new(&f.target, Op::Recover, error));
                    }
                }
                Err(e) => summary
                    .failed
                    .push(SweepFailure::new(&d.target, Op::Recover, e)),
            }
        }
        if recovered_any {
            // A recovered session may now be archivable (or no longer): decide afresh.
            plan = self.plan_with(&policy, &config)?;
        }
        summary.scanned = plan.scanned;
        for s in &plan.skipped {
            let n = summary.skipped.entry(s.reason.clone()).or_default();
            *n = n.saturating_add(s.count);
        }

        // Largest first: the workers then finish together instead of one of them starting the
        // biggest session last while the others idle (longest-processing-time scheduling).
        let mut due: Vec<&guest::Decision> = plan
            .decisions
            .iter()
            .filter(|d| d.action == Action::Archive)
            .collect();
        due.sort_by_key(|d| std::cmp::Reverse(d.bytes));
        let targets: Vec<&str> = due.iter().map(|d| d.target.as_str()).collect();
        let total = targets.len();
        let workers = self.workers.min(total).max(1);
        summary.workers = workers;
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let results = Mutex::new(Vec::with_capacity(total));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&id) = targets.get(i) else { break };
                    let outcome = match self.locks.try_lock(id) {
                        Ok(Some(_lock)) => self.archive_locked(&policy, &config, id).map(Some),
                        Ok(None) => Ok(None),
                        Err(e) => Err(e),
                    };
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((i, outcome));
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    progress(SweepProgress { done: n, total, id });
                });
            }
        });
        let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
        results.sort_by_key(|(i, _)| *i);
        for (i, outcome) in results {
            let id = targets[i];
            match outcome {
                Ok(Some(served)) if served.value.raw_bytes > 0 => {
                    summary.archived += 1;
                    summary.bytes_archived = summary
                        .bytes_archived
                        .saturating_add(served.value.raw_bytes);
                    summary.bytes_written = summary
                        .bytes_written
                        .saturating_add(served.value.archive_bytes);
                }
                Ok(Some(_)) => {
                    *summary
                        .skipped
                        .entry("nothing-to-archive".into())
                        .or_default() += 1
                }
                Ok(None) => *summary.skipped.entry("locked".into()).or_default() += 1,
                Err(e) => summary.failed.push(SweepFailure::new(id, Op::Archive, e)),
            }
        }

        match self
            .runtime
            .run(&policy, &self.stores, None, Op::Prune, None, |g, s| {
                g.call_prune(s, &config)
            }) {
            Ok((report, _)) => summary.prune = Some(report),
            Err(e) => summary
                .failed
                .push(SweepFailure::new("prune", Op::Prune, e)),
        }
        Ok(Served {
            policy: policy.id(),
            value: summary,
        })
    }

    /// Loads the policy at `path` and, if it loads, passes `info` and accepts the current
    /// config, makes it current. On any failure the old policy stays.
    pub fn swap_policy(&self, path: &Path) -> Result<SwapOutcome, ArchiverError> {
        let new = self.runtime.load_file(path)?;
        self.swap_loaded(new)
    }

    /// [`Archiver::swap_policy`] for an already loaded policy.
    pub fn swap_loaded(&self, new: LoadedPolicy) -> Result<SwapOutcome, ArchiverError> {
        let config = self.config.lock().unwrap_or_else(|p| p.into_inner());
        self.validate_with(&new, &config)?;
        let (new_id, from_cache) = (new.id(), new.from_cache);
        let old = self.slot.swap(new);
        // Debug only: callers (the CLI's `run`) log the swap for people.
        tracing::debug!(old = %old.id(), new = %new_id, "policy swapped");
        Ok(SwapOutcome {
            old: old.id(),
            new: new_id,
            from_cache,
        })
    }
}

fn empty_recover_report() -> RecoverReport {
    RecoverReport {
        examined: 0,
        finished: 0,
        rolled_back: 0,
        failed: Vec::new(),
    }
}

fn add_recover(total: &mut RecoverReport, r: RecoverReport) {
    // Saturating: these numbers come from the policy, which may be garbage.
    total.examined = total.examined.saturating_add(r.examined);
    total.finished = total.finished.saturating_add(r.finished);
    total.rolled_back = total.rolled_back.saturating_add(r.rolled_back);
    total.failed.extend(r.failed);
}

/// Squeezes a host-side failure into the WIT error type of a [`RecoverReport`] entry.
fn as_policy_error(e: ArchiverError) -> guest::Error {
    match e {
        ArchiverError::Policy { error, .. } => error,
        other => guest::Error::Io(other.to_string()),
    }
}

impl std::fmt::Display for SweepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.op, self.target, self.message)
    }
}

/// Renders a WIT policy error the way [`ArchiverError`] messages do.
pub fn describe(e: &guest::Error) -> String {
    describe_policy_error(e)
}
