//! The library facade the CLI and the tests use: one object holding the stores, the runtime,
//! the swappable policy and its configuration.
//!
//! Every operation takes the current policy and config once at its start and runs on a fresh
//! wasmtime `Store` (an instance that trapped is unusable, and a policy keeps no state between
//! calls): `Archiver::run_op` is that one step. Archive, restore, export and recover hold the
//! session's lock ([`SessionLocks`]). The sweep is [`crate::sweep`]'s.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};

use crate::bindings::guest::{self, PlanScope};
use crate::error::{describe_policy_error, ArchiverError, Op, PolicyError};
use crate::host::members::{MemberCtx, WorkerPool};
use crate::host::{HostState, Stores};
use crate::locks::SessionLocks;
use crate::policy::{LoadedPolicy, PolicyId, PolicySlot};
use crate::runtime::{RunOp, Runtime};
use crate::sweep::{self, Recovery};

pub use crate::bindings::guest::{
    ArchiveOutcome, ExportOutcome, PruneReport, RecoverReport, RestoreOutcome, SweepPlan,
};
pub use crate::sweep::{SweepFailure, SweepProgress, SweepSummary};

/// A result together with the policy that produced it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Served<T> {
    /// The policy (and exact bytes) that ran the operation.
    pub policy: PolicyId,
    /// What the operation returned.
    pub value: T,
}

/// How an [`Archiver`] is set up besides its stores, runtime and policy.
#[derive(Debug, Clone)]
pub struct ArchiverOptions {
    /// Policy configuration, JSON text (`{}`: the policy's defaults). Checked by the policy's
    /// `validate-config` when the archiver is built.
    pub config: String,
    /// Parallel archive workers in a sweep, and the most instances one large session's parallel
    /// gzip members run on at once (one pool for both); `None`: the machine's available
    /// parallelism.
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
    /// The policy that was serving before the swap.
    pub old: PolicyId,
    /// The policy serving from now on.
    pub new: PolicyId,
    /// The new policy's compiled code came from the cache.
    pub from_cache: bool,
}

/// The policy and config one operation (or one whole sweep) runs with, taken together at its
/// start so a swap or a config change meanwhile never mixes the two.
pub(crate) struct Snapshot {
    pub(crate) policy: Arc<LoadedPolicy>,
    pub(crate) config: String,
}

/// The archiver: stores + runtime + swappable policy + config.
pub struct Archiver {
    stores: Stores,
    runtime: Arc<Runtime>,
    slot: PolicySlot,
    /// The raw config; the lock also serialises `set_config` against `swap_policy`.
    config: Mutex<String>,
    workers: usize,
    /// The `workers` slots archive operations and their parallel members share.
    pool: Arc<WorkerPool>,
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
            pool: WorkerPool::new(workers),
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
            RunOp::new(Op::ValidateConfig, None),
            |g, s| g.call_validate_config(s, json),
        )?;
        Ok(normalised)
    }

    /// The policy and config for one operation, taken together at its start.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let config = self.config.lock().unwrap_or_else(|p| p.into_inner());
        Snapshot {
            policy: self.slot.current(),
            config: config.clone(),
        }
    }

    /// Runs one policy operation on a fresh wasmtime `Store` with `snap`'s policy and config
    /// (passed to `call` as the config text), and tags the result with that policy.
    pub(crate) fn run_op<T>(
        &self,
        snap: &Snapshot,
        op: Op,
        target: Option<&str>,
        call: impl FnOnce(
            &guest::Guest,
            &mut wasmtime::Store<HostState>,
            &str,
        ) -> wasmtime::Result<Result<T, PolicyError>>,
    ) -> Result<Served<T>, ArchiverError> {
        let ctx =
            matches!(op, Op::Archive | Op::Restore | Op::Recover).then(|| self.member_ctx(snap));
        let (value, _) = match (op, ctx) {
            (Op::Archive, Some(ctx)) => {
                // An archive holds one worker slot for its whole run; its parallel members take
                // more only when they are free (see `host::members`).
                let _slot = self.pool.acquire();
                self.runtime.run_with_members(
                    &snap.policy,
                    &self.stores,
                    ctx,
                    op,
                    target,
                    |g, s| call(g, s, &snap.config),
                )?
            }
            // Restore and recovery inflate on free slots only (`members.inflater`).
            (_, ctx) => self.runtime.run(
                &snap.policy,
                &self.stores,
                None,
                RunOp {
                    locks: Some(&self.locks),
                    members: ctx.as_ref(),
                    ..RunOp::new(op, target)
                },
                |g, s| call(g, s, &snap.config),
            )?,
        };
        Ok(Served {
            policy: snap.policy.id(),
            value,
        })
    }

    /// What an operation under `snap` needs to start member helpers.
    fn member_ctx(&self, snap: &Snapshot) -> MemberCtx {
        MemberCtx {
            runtime: self.runtime.clone(),
            stores: self.stores.clone(),
            policy: snap.policy.clone(),
            config: snap.config.clone(),
            pool: self.pool.clone(),
        }
    }

    /// Snapshots the policy and config, then [`Archiver::run_op`].
    fn serve<T>(
        &self,
        op: Op,
        target: Option<&str>,
        call: impl FnOnce(
            &guest::Guest,
            &mut wasmtime::Store<HostState>,
            &str,
        ) -> wasmtime::Result<Result<T, PolicyError>>,
    ) -> Result<Served<T>, ArchiverError> {
        self.run_op(&self.snapshot(), op, target, call)
    }

    /// Archives session `id`, holding its lock.
    pub fn archive(&self, id: &str) -> Result<Served<ArchiveOutcome>, ArchiverError> {
        let _lock = self.locks.lock(id)?;
        self.serve(Op::Archive, Some(id), |g, s, config| {
            g.call_archive(s, config, id)
        })
    }

    /// Restores session `id` into the live store, holding its lock.
    pub fn restore(&self, id: &str) -> Result<Served<RestoreOutcome>, ArchiverError> {
        let _lock = self.locks.lock(id)?;
        self.serve(Op::Restore, Some(id), |g, s, config| {
            g.call_restore(s, config, id)
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
        // Not through `run_op`: the guest writes to a sink here, and the host's own count of
        // what reached `out` replaces the policy's claim.
        let snap = self.snapshot();
        let ctx = self.member_ctx(&snap);
        let Snapshot { policy, config } = snap;
        let (tx, rx) = sync_channel::<Vec<u8>>(2);
        let sink = Box::new(ChannelSink(tx));
        let (result, write_error) = std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                self.runtime.run(
                    &policy,
                    &self.stores,
                    Some(sink),
                    RunOp {
                        members: Some(&ctx),
                        ..RunOp::new(Op::Export, Some(id))
                    },
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

    /// A dry run of a sweep: the sessions it would archive or recover and the archives it would
    /// prune now, with reasons.
    pub fn plan(&self) -> Result<Served<SweepPlan>, ArchiverError> {
        self.serve(Op::Plan, None, |g, s, config| {
            g.call_plan(s, config, PlanScope::Full)
        })
    }

    /// Only the prune step.
    pub fn prune(&self) -> Result<Served<PruneReport>, ArchiverError> {
        self.serve(Op::Prune, None, |g, s, config| g.call_prune(s, config))
    }

    /// Finishes or rolls back the interrupted operation of session `id`, waiting for its lock.
    pub fn recover(&self, id: &str) -> Result<Served<RecoverReport>, ArchiverError> {
        let _lock = self.locks.lock(id)?;
        self.serve(Op::Recover, Some(id), |g, s, config| {
            g.call_recover(s, config, id)
        })
    }

    /// Finishes or rolls back every pending operation: the host finds the sessions whose meta
    /// records one ([`sweep::pending_sessions`], whatever the policy would select), skipping
    /// those locked by a running operation (whose intent is not stale). Also removes temp files
    /// writers left behind.
    pub fn recover_pending(&self) -> Result<Served<RecoverReport>, ArchiverError> {
        let snap = self.snapshot();
        self.clean_temps();
        let pending = sweep::pending_sessions(&self.stores)?;
        let mut total = RecoverReport {
            examined: 0,
            finished: 0,
            rolled_back: 0,
            failed: Vec::new(),
        };
        for (id, recovery) in sweep::recover_each(self, &snap, pending)? {
            match recovery {
                Recovery::Locked => {}
                Recovery::Ran(Ok(r)) => add_recover(&mut total, r),
                Recovery::Ran(Err(e)) => {
                    total.examined = total.examined.saturating_add(1);
                    total.failed.push(guest::Failure {
                        target: id,
                        error: as_policy_error(e),
                    });
                }
            }
        }
        Ok(Served {
            policy: snap.policy.id(),
            value: total,
        })
    }

    /// Removes writer temp files old enough that no live operation can own them (twice the
    /// operation deadline).
    pub(crate) fn clean_temps(&self) {
        let min_age = (self.runtime.limits().deadline.as_millis() as i64).saturating_mul(2);
        if let Err(e) = self.stores.archive_dir.clean_temps(min_age) {
            tracing::warn!("cleaning archive temp files: {e}");
        }
    }

    /// The sweep ([`crate::sweep`]): recover pending operations, archive what the policy's plan
    /// selects on up to [`Archiver::workers`] threads, then prune. Sessions locked by another
    /// operation are skipped (`locked`). The whole sweep uses the policy and config current
    /// when it starts.
    pub fn sweep(
        &self,
        progress: impl Fn(SweepProgress<'_>) + Sync,
    ) -> Result<Served<SweepSummary>, ArchiverError> {
        sweep::run(self, progress)
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

/// Renders a WIT policy error the way [`ArchiverError`] messages do.
pub fn describe(e: &guest::Error) -> String {
    describe_policy_error(e)
}
