//! `members.inflater`: the members of one archive inflated on helper instances in parallel, for
//! restore and export (and a recovery that finishes a restore).
//!
//! The guest reads the archive and cuts whole members out by the lengths their headers record
//! (the gzip framing stays in the policy); the host only schedules. Helper threads start on
//! demand: the first one runs on the calling operation's own account, more only on slots of the
//! shared [`WorkerPool`](super::WorkerPool) that are free when a member is pushed (never a
//! blocking wait), up to the pool's size. Each helper thread keeps one instance for the members
//! it takes ([`HelperInstance`]); it gets no store access at all ([`Scope::Inflate`]): it
//! inflates the bytes it is handed. Memory stays bounded by the window: at most `2 × workers`
//! members (one with one worker, so the calls then come in one fixed order) are queued, in
//! flight or done and not yet taken.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use wasmtime::component::Resource;

use super::{helper_error, helper_failure, HelperError, MemberCtx, Slot, MAX_MEMBER_BYTES};
use crate::bindings::session_archiver::policy::members::{HostInflater, Inflated, InflatedMember};
use crate::error::Op;
use crate::error::{ArchiverError, PolicyError};
use crate::host::scope::{OpScope, Scope};
use crate::host::{HostError, HostState};
use crate::runtime::HelperInstance;
use crate::store::StoreError;

/// Largest member the guest may push: a [`MAX_MEMBER_BYTES`] member stored uncompressed, with
/// its framing.
const MAX_PUSH_BYTES: usize = (MAX_MEMBER_BYTES + (1 << 20)) as usize;

/// The guest's handle: the queue shared with the helper threads, and the threads.
pub struct InflaterResource {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    ctx: MemberCtx,
    /// The calling operation and its session, for the helpers' scope and messages.
    op: Op,
    id: String,
    /// Members pushed, and handed back, so far.
    pushed: usize,
    taken: usize,
    window: usize,
    /// A push or take failed: the inflater refuses further pushes.
    broken: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    /// Pushed and not yet started: (index, bytes, raw length).
    pending: VecDeque<(usize, Vec<u8>, u64)>,
    /// Done and not yet taken, by index.
    done: BTreeMap<usize, Result<Inflated, HelperError>>,
    /// The guest dropped the inflater: helpers finish the member in hand and exit.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The scope of an inflate helper: no store at all.
fn inflate_scope(op: Op, id: &str) -> OpScope {
    OpScope {
        op,
        session: Some(id.to_string()),
        scope: Scope::Inflate(id.to_string()),
    }
}

/// Runs `inflate-member` on the helper's instance.
fn inflate_one(
    inst: &mut HelperInstance<'_>,
    ctx: &MemberCtx,
    id: &str,
    bytes: &[u8],
    raw_len: u64,
) -> Result<Inflated, HelperError> {
    let result = inst.call(|g, s| g.call_inflate_member(s, &ctx.config, bytes, raw_len));
    match result {
        Ok(m) if m.bytes.len() as u64 == raw_len => Ok(Inflated::Member(InflatedMember {
            bytes: m.bytes,
            crc32: m.crc32,
        })),
        Ok(m) => Err(HelperError::Store(StoreError::Io(format!(
            "inflate-member of {id} gave {} bytes for a member of {raw_len}",
            m.bytes.len()
        )))),
        Err(ArchiverError::Policy {
            error: PolicyError::Corrupt(m),
            ..
        }) => Ok(Inflated::Corrupt(m)),
        Err(e) => Err(helper_error(&format!("inflate-member of {id}"), e)),
    }
}

/// A helper thread: takes pending members until the inflater is dropped.
fn helper(shared: Arc<Shared>, ctx: MemberCtx, op: Op, id: String, _slot: Option<Slot>) {
    let mut inst = HelperInstance::new(
        &ctx.runtime,
        &ctx.policy,
        &ctx.stores,
        inflate_scope(op, &id),
    );
    loop {
        let (i, bytes, raw_len) = {
            let mut q = shared.lock();
            loop {
                if q.closed {
                    return;
                }
                if let Some(job) = q.pending.pop_front() {
                    break job;
                }
                q = shared.changed.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = inflate_one(&mut inst, &ctx, &id, &bytes, raw_len);
        drop(bytes);
        shared.lock().done.insert(i, result);
        shared.changed.notify_all();
    }
}

impl InflaterResource {
    fn new(ctx: MemberCtx, op: Op, id: String) -> Self {
        let window = match ctx.pool.size() {
            1 => 1,
            n => 2 * n,
        };
        InflaterResource {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                changed: Condvar::new(),
            }),
            threads: Vec::new(),
            ctx,
            op,
            id,
            pushed: 0,
            taken: 0,
            window,
            broken: false,
        }
    }

    /// Starts a helper when a member waits and there is room: the first on the operation's own
    /// account, the others on free pool slots only.
    fn spawn_helper(&mut self) -> Result<(), HostError> {
        if self.threads.len() >= self.ctx.pool.size() {
            return Ok(());
        }
        let slot = if self.threads.is_empty() {
            None
        } else {
            match self.ctx.pool.try_acquire() {
                Some(slot) => Some(slot),
                None => return Ok(()),
            }
        };
        let (shared, ctx, op, id) = (
            self.shared.clone(),
            self.ctx.clone(),
            self.op,
            self.id.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("archiver-inflate".into())
            .spawn(move || helper(shared, ctx, op, id, slot))
            .map_err(|e| {
                HostError::Store(StoreError::Io(format!(
                    "inflating members of {}: starting a helper thread: {e}",
                    self.id
                )))
            })?;
        self.threads.push(thread);
        Ok(())
    }

    fn push(&mut self, member: Vec<u8>, raw_len: u64) -> Result<Option<Inflated>, HostError> {
        if self.broken {
            return Err(HostError::invalid(format!(
                "inflating members of {}: the inflater failed before; start a new one",
                self.id
            )));
        }
        if member.is_empty()
            || member.len() > MAX_PUSH_BYTES
            || raw_len == 0
            || raw_len > MAX_MEMBER_BYTES
        {
            return Err(HostError::invalid(format!(
                "inflating members of {}: a member of {} bytes inflating to {raw_len} (must be \
                 1..={MAX_PUSH_BYTES} bytes, inflating to 1..={MAX_MEMBER_BYTES})",
                self.id,
                member.len()
            )));
        }
        {
            let mut q = self.shared.lock();
            q.pending.push_back((self.pushed, member, raw_len));
        }
        self.shared.changed.notify_all();
        self.pushed += 1;
        self.spawn_helper()?;
        if self.pushed - self.taken >= self.window {
            return self.take().map(Some);
        }
        Ok(None)
    }

    /// Waits for the oldest member not yet taken.
    fn take(&mut self) -> Result<Inflated, HostError> {
        let index = self.taken;
        let result = {
            let mut q = self.shared.lock();
            loop {
                if let Some(r) = q.done.remove(&index) {
                    break r;
                }
                q = self
                    .shared
                    .changed
                    .wait(q)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        self.taken += 1;
        result.map_err(|e| {
            self.broken = true;
            helper_failure(e)
        })
    }

    fn next(&mut self) -> Result<Option<Inflated>, HostError> {
        if self.taken == self.pushed {
            return Ok(None);
        }
        self.take().map(Some)
    }
}

impl Drop for InflaterResource {
    fn drop(&mut self) {
        {
            let mut q = self.shared.lock();
            q.closed = true;
            q.pending.clear();
        }
        self.shared.changed.notify_all();
        for t in self.threads.drain(..) {
            // A helper that panicked has nothing left to hand over.
            let _ = t.join();
        }
    }
}

impl HostInflater for HostState {
    fn push(
        &mut self,
        r: Resource<InflaterResource>,
        member: Vec<u8>,
        raw_len: u64,
    ) -> Result<Option<Inflated>, HostError> {
        self.call(|s| s.table.get_mut(&r)?.push(member, raw_len))
    }

    fn next(&mut self, r: Resource<InflaterResource>) -> Result<Option<Inflated>, HostError> {
        self.call(|s| s.table.get_mut(&r)?.next())
    }

    fn drop(&mut self, r: Resource<InflaterResource>) -> wasmtime::Result<()> {
        self.call(|s| {
            s.table.delete(r)?;
            s.inflaters = s.inflaters.saturating_sub(1);
            Ok(())
        })
    }
}

impl HostState {
    /// `members.start-inflate`: see the WIT. One inflater at a time per operation.
    pub(super) fn start_inflate_impl(
        &mut self,
    ) -> Result<Option<Resource<InflaterResource>>, HostError> {
        let Some(ctx) = self.members.clone() else {
            return Ok(None);
        };
        if self.inflaters > 0 {
            return Err(HostError::invalid(
                "members.start-inflate: this operation already has an inflater",
            ));
        }
        let id = self.scope.session.clone().unwrap_or_default();
        let r = self
            .table
            .push(InflaterResource::new(ctx, self.scope.op, id))?;
        self.inflaters += 1;
        Ok(Some(r))
    }
}
