//! The sweep, owned here once and used by the CLI's `sweep` and `run` and by an embedding app
//! (all through [`Archiver::sweep`]). Three named steps, each on the policy and config taken
//! when the sweep starts:
//!
//! 1. `recover_pending`: the host finds every session whose meta records an unfinished
//!    operation (whatever the policy would select: a hand-archived `term` session too) and has
//!    the policy finish or roll it back, each under the session's lock.
//! 2. `archive_due`: the sessions the policy's `plan` (scope `sessions`) selects, archived on
//!    up to [`Archiver::workers`] threads, each under the session's lock.
//! 3. `prune`: the policy's `prune`, which judges the archives as they are after archiving.
//!
//! Every session the plan selects ends in exactly one of `archived`, `skipped` (`locked`,
//! `nothing-to-archive`) or `failed`; the plan's own skip counts are carried over as they are,
//! and a pending session that was locked or whose recovery failed is counted once, in step 1.
//! The skip codes are the plan's plus the two in [`skip_code`]; the whole list is documented
//! once, on the WIT `skip-count` record.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::archiver::{Archiver, Served, Snapshot};
use crate::bindings::guest::{self, Action, PlanScope, PruneReport, RecoverReport};
use crate::error::{ArchiverError, Op};
use crate::host::Stores;

/// The skip codes the sweep adds to the plan's (the whole list: the WIT `skip-count` record).
pub mod skip_code {
    /// Another operation held the session's lock; the next sweep tries again.
    pub const LOCKED: &str = "locked";
    /// The policy's `archive` found no live output (a no-op reporting 0 bytes).
    pub const NOTHING_TO_ARCHIVE: &str = "nothing-to-archive";
}

/// The meta key where an operation records its intent before its first side effect (the
/// guest kit's `keys::INTENT`); present and not `null` means the operation is unfinished.
pub const INTENT_KEY: &str = "session:archive_intent";

/// Objects per page when looking for pending sessions.
const PAGE: u32 = 500;

/// Sweep progress: one call per finished archive decision.
#[derive(Debug, Clone, Copy)]
pub struct SweepProgress<'a> {
    /// Sessions handled so far.
    pub done: usize,
    /// Sessions the plan selected.
    pub total: usize,
    /// The session just handled.
    pub id: &'a str,
}

/// One session (or step) a sweep could not handle.
#[derive(Debug, serde::Serialize)]
pub struct SweepFailure {
    /// Session id, archive name, or `prune`.
    pub target: String,
    /// The step that failed.
    pub op: Op,
    /// [`ArchiverError::code`].
    pub code: &'static str,
    /// The full message.
    pub message: String,
    /// The error itself.
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

impl std::fmt::Display for SweepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.op, self.target, self.message)
    }
}

/// What a sweep did. Counts are exact: every session the plan selects ends in exactly one of
/// `archived`, `skipped` or `failed` (see the [module](self) documentation).
#[derive(Debug, Default, serde::Serialize)]
pub struct SweepSummary {
    /// Objects looked at by the plan.
    pub scanned: u32,
    /// Sessions archived.
    pub archived: u32,
    /// Interrupted operations finished or rolled back.
    pub recovered: u32,
    /// Sessions skipped, by code (the plan's codes plus [`skip_code`]'s).
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

impl SweepSummary {
    fn skip(&mut self, code: &str, n: u32) {
        let count = self.skipped.entry(code.to_string()).or_default();
        *count = count.saturating_add(n);
    }
}

/// Runs the three steps; see the module documentation.
pub(crate) fn run(
    archiver: &Archiver,
    progress: impl Fn(SweepProgress<'_>) + Sync,
) -> Result<Served<SweepSummary>, ArchiverError> {
    let snap = archiver.snapshot();
    archiver.clean_temps();
    let mut summary = SweepSummary::default();
    recover_pending(archiver, &snap, &mut summary)?;
    archive_due(archiver, &snap, &progress, &mut summary)?;
    prune(archiver, &snap, &mut summary);
    Ok(Served {
        policy: snap.policy.id(),
        value: summary,
    })
}

/// Every session whose meta records an unfinished operation, found from meta alone (not from
/// the policy's plan, which only looks at the sessions it would archive), in id order. Meta the
/// host cannot read is left to the policy, which reports it.
pub fn pending_sessions(stores: &Stores) -> Result<Vec<String>, ArchiverError> {
    let mut pending = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = stores.objects.list(after.as_deref(), PAGE)?;
        let last = page.objects.last().map(|o| o.id.clone());
        pending.extend(
            page.objects
                .into_iter()
                .filter(|o| o.meta.get(INTENT_KEY).is_some_and(|v| !v.is_null()))
                .map(|o| o.id),
        );
        match page.next {
            // A store that repeats a cursor would make this loop forever.
            Some(next) if Some(&next) != after.as_ref() && last.is_some() => after = Some(next),
            _ => return Ok(pending),
        }
    }
}

/// How the recovery of one pending session went.
pub(crate) enum Recovery {
    /// Another operation holds the session's lock (its intent is not stale): left alone.
    Locked,
    /// The policy's `recover` ran under the lock.
    Ran(Result<RecoverReport, ArchiverError>),
}

/// The recover loop, written once: each of `ids` recovered under its lock, skipping those
/// locked by a running operation.
pub(crate) fn recover_each(
    archiver: &Archiver,
    snap: &Snapshot,
    ids: Vec<String>,
) -> Result<Vec<(String, Recovery)>, ArchiverError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(_lock) = archiver.locks().try_lock(&id)? else {
            out.push((id, Recovery::Locked));
            continue;
        };
        let result = archiver
            .run_op(snap, Op::Recover, Some(&id), |g, s, config| {
                g.call_recover(s, config, &id)
            })
            .map(|served| served.value);
        out.push((id, Recovery::Ran(result)));
    }
    Ok(out)
}

/// Step 1: finish or roll back every pending session (see [`pending_sessions`]).
fn recover_pending(
    archiver: &Archiver,
    snap: &Snapshot,
    summary: &mut SweepSummary,
) -> Result<(), ArchiverError> {
    let pending = pending_sessions(archiver.stores())?;
    for (id, recovery) in recover_each(archiver, snap, pending)? {
        match recovery {
            Recovery::Locked => summary.skip(skip_code::LOCKED, 1),
            Recovery::Ran(Ok(r)) => {
                summary.recovered = summary
                    .recovered
                    .saturating_add(r.finished.saturating_add(r.rolled_back));
                for f in r.failed {
                    let error = ArchiverError::Policy {
                        policy: snap.policy.display_name(),
                        op: Op::Recover,
                        target: Some(f.target.clone()),
                        error: f.error,
                    };
                    summary
                        .failed
                        .push(SweepFailure::new(&f.target, Op::Recover, error));
                }
            }
            Recovery::Ran(Err(e)) => summary.failed.push(SweepFailure::new(&id, Op::Recover, e)),
        }
    }
    Ok(())
}

/// Step 2: archive what the policy's plan selects, largest first, on up to
/// [`Archiver::workers`] threads (one wasmtime `Store` each, the compiled policy shared).
/// Sessions locked by another operation are skipped (`locked`).
fn archive_due(
    archiver: &Archiver,
    snap: &Snapshot,
    progress: &(impl Fn(SweepProgress<'_>) + Sync),
    summary: &mut SweepSummary,
) -> Result<(), ArchiverError> {
    // Sessions only: the archives are judged by `prune`, after this step has changed them.
    let plan = archiver
        .run_op(snap, Op::Plan, None, |g, s, config| {
            g.call_plan(s, config, PlanScope::Sessions)
        })?
        .value;
    summary.scanned = plan.scanned;
    for s in &plan.skipped {
        summary.skip(&s.reason, s.count);
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
    let workers = archiver.workers().min(total).max(1);
    summary.workers = workers;
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(total));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&id) = targets.get(i) else { break };
                let outcome = match archiver.locks().try_lock(id) {
                    Ok(Some(_lock)) => archiver
                        .run_op(snap, Op::Archive, Some(id), |g, s, config| {
                            g.call_archive(s, config, id)
                        })
                        .map(Some),
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
            Ok(Some(_)) => summary.skip(skip_code::NOTHING_TO_ARCHIVE, 1),
            Ok(None) => summary.skip(skip_code::LOCKED, 1),
            Err(e) => summary.failed.push(SweepFailure::new(id, Op::Archive, e)),
        }
    }
    Ok(())
}

/// Step 3: the policy's `prune`; its failure is reported, not returned (what was archived
/// stays archived).
fn prune(archiver: &Archiver, snap: &Snapshot, summary: &mut SweepSummary) {
    match archiver.run_op(snap, Op::Prune, None, |g, s, config| {
        g.call_prune(s, config)
    }) {
        Ok(served) => summary.prune = Some(served.value),
        Err(e) => summary
            .failed
            .push(SweepFailure::new("prune", Op::Prune, e)),
    }
}
