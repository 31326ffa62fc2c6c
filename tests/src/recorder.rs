//! The call log and the fault plan shared by every mock store.
//!
//! Every import call a policy makes reaches a store trait method; the mock stores report it here
//! first, so one counter orders calls across all interfaces and one plan decides which call fails.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use session_archiver::store::StoreError;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// 1-based position among all calls.
    pub seq: usize,
    /// `interface.function`, e.g. `files.append`, `archive-dir.commit`.
    pub op: String,
    /// The arguments, rendered for people and for `contains` checks (bytes as a length).
    pub args: String,
}

/// What to break.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Call number `n` (1-based, across all interfaces) fails with `error`.
    FailNth { n: usize, error: StoreError },
    /// Every call to `op` fails with `error` (`times: None`), or the next `times` calls.
    FailOp {
        op: String,
        error: StoreError,
        times: Option<usize>,
    },
    /// Calls after number `n` never happen: each one halts the guest (a trap), as if the process
    /// died right after call `n`. Uncommitted archive writes vanish with the trapped instance.
    CrashAfter { n: usize },
}

/// A closure a test runs once, just before one call reaches the store: how a test makes
/// "the app appended right between the policy's read and its delete" happen deterministically.
struct Hook {
    op: String,
    run: Box<dyn FnOnce() + Send>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("op", &self.op)
            .finish_non_exhaustive()
    }
}

/// Code run just before every matched call reaches its store ([`Recorder::on_call`]): it plays
/// the app acting *during* a policy operation, e.g. appending output while an archive is read.
pub type CallHook = Arc<dyn Fn(&Call) + Send + Sync>;

/// The registered [`CallHook`]s, by `interface.function`.
#[derive(Default)]
struct CallHooks(Mutex<Vec<(String, CallHook)>>);

impl std::fmt::Debug for CallHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ops: Vec<String> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(o, _)| o.clone())
            .collect();
        f.debug_tuple("CallHooks").field(&ops).finish()
    }
}

/// Call log plus fault plan; cheap to share between the mock stores.
#[derive(Debug, Default)]
pub struct Recorder {
    count: AtomicUsize,
    calls: Mutex<Vec<Call>>,
    faults: Mutex<Vec<Fault>>,
    hooks: Mutex<Vec<Hook>>,
    call_hooks: CallHooks,
}

impl Recorder {
    /// Called by a mock store before it does anything: records the call and applies the plan.
    pub fn enter(&self, op: &str, args: impl FnOnce() -> String) -> Result<(), StoreError> {
        let seq = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        let args = args();
        self.calls.lock().unwrap().push(Call {
            seq,
            op: op.to_string(),
            args: args.clone(),
        });
        self.run_call_hooks(&Call {
            seq,
            op: op.to_string(),
            args,
        });
        let mut faults = self.faults.lock().unwrap();
        for fault in faults.iter_mut() {
            match fault {
                Fault::CrashAfter { n } if seq > *n => {
                    return Err(StoreError::Halt(format!(
                        "simulated crash after call {n} (call {seq}: {op})"
                    )))
                }
                Fault::FailNth { n, error } if *n == seq => return Err(error.clone()),
                Fault::FailOp {
                    op: o,
                    error,
                    times,
                } if o == op => match times {
                    None => return Err(error.clone()),
                    Some(0) => {}
                    Some(t) => {
                        *t -= 1;
                        return Err(error.clone());
                    }
                },
                _ => {}
            }
        }
        drop(faults);
        // Hooks run outside every lock: they touch the unrecorded inner stores, never this log.
        let hook = {
            let mut hooks = self.hooks.lock().unwrap();
            hooks
                .iter()
                .position(|h| h.op == op)
                .map(|i| hooks.remove(i))
        };
        if let Some(hook) = hook {
            (hook.run)();
        }
        Ok(())
    }

    /// Runs `f` once, just before the next call to `op` that the fault plan lets through reaches
    /// the store. `f` should use the inner (unrecorded) stores. Hooks for one op run in the order
    /// they were added, one per call.
    pub fn before_next(&self, op: &str, f: impl FnOnce() + Send + 'static) {
        self.hooks.lock().unwrap().push(Hook {
            op: op.to_string(),
            run: Box::new(f),
        });
    }

    /// How many hooks have not run yet.
    pub fn pending_hooks(&self) -> usize {
        self.hooks.lock().unwrap().len()
    }

    /// Runs every hook registered for `call.op`, outside all recorder locks (a hook may use
    /// the unrecorded inner stores, which take their own locks).
    fn run_call_hooks(&self, call: &Call) {
        let matched: Vec<CallHook> = {
            let hooks = self.call_hooks.0.lock().unwrap();
            if hooks.is_empty() {
                return;
            }
            hooks
                .iter()
                .filter(|(o, _)| o == &call.op)
                .map(|(_, h)| h.clone())
                .collect()
        };
        for hook in matched {
            hook(call);
        }
    }

    /// Runs `hook` before every later call to `op` reaches its store (after the call is
    /// logged, before the fault plan is applied). The hook decides itself whether to act
    /// (e.g. only on the 2nd matching call); it must not call the recorded stores.
    pub fn on_call(&self, op: &str, hook: impl Fn(&Call) + Send + Sync + 'static) {
        self.call_hooks
            .0
            .lock()
            .unwrap()
            .push((op.to_string(), Arc::new(hook)));
    }

    /// Removes every [`Recorder::on_call`] hook.
    pub fn clear_call_hooks(&self) {
        self.call_hooks.0.lock().unwrap().clear();
    }

    /// Adds a fault to the plan.
    pub fn inject(&self, fault: Fault) {
        self.faults.lock().unwrap().push(fault);
    }

    /// Empties the fault plan (the "restart" after a simulated crash).
    pub fn clear_faults(&self) {
        self.faults.lock().unwrap().clear();
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Calls to `op` so far.
    pub fn calls_to(&self, op: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.op == op).collect()
    }

    /// How many calls have been made (the N to iterate fault sweeps up to).
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Forgets the log and restarts numbering at 1 (the fault plan is kept).
    pub fn reset_log(&self) {
        self.calls.lock().unwrap().clear();
        self.count.store(0, Ordering::SeqCst);
    }

    /// True if any recorded call is one that changes state (used to prove a plan is read-only).
    pub fn any_write(&self) -> Option<Call> {
        self.calls().into_iter().find(|c| is_write(&c.op))
    }
}

/// Operations that change a store.
pub fn is_write(op: &str) -> bool {
    matches!(
        op,
        "objects.update-meta"
            | "objects.update-meta-if"
            | "objects.insert"
            | "files.create"
            | "files.append"
            | "files.delete"
            | "files.delete-if-unchanged"
            | "files.rename-if-unchanged"
            | "files.set-meta"
            | "archive-dir.create"
            | "archive-dir.write"
            | "archive-dir.commit"
            | "archive-dir.remove"
            | "archive-dir.remove-if-unchanged"
            | "archive-dir.clean-temps"
    )
}
