//! The call log and the fault plan shared by every mock store.
//!
//! Every import call a policy makes reaches a store trait method; the mock stores report it here
//! first, so one counter orders calls across all interfaces and one plan decides which call fails.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

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

/// Call log plus fault plan; cheap to share between the mock stores.
#[derive(Debug, Default)]
pub struct Recorder {
    count: AtomicUsize,
    calls: Mutex<Vec<Call>>,
    faults: Mutex<Vec<Fault>>,
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
        let mut faults = self.faults.lock().unwrap();
        for fault in faults.iter_mut() {
            match fault {
                Fault::CrashAfter { n } if seq > *n => {
                    return Err(StoreError::Halt(format!(
                        "simulated crash after call {n} (call {seq}: {op})"
                    )))
                }
                Fault::FailNth { n, error } if *n == seq => return Err(error.clone()),
                Fault::FailOp { op: o, error, times } if o == op => match times {
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
        Ok(())
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
            | "objects.insert"
            | "files.create"
            | "files.append"
            | "files.delete"
            | "files.delete-if-unchanged"
            | "files.rename-if-unchanged"
            | "archive-dir.create"
            | "archive-dir.write"
            | "archive-dir.commit"
            | "archive-dir.remove"
            | "archive-dir.clean-temps"
    )
}
