//! `session-archiver:policy/members`: one large session's archive compressed on several cores.
//!
//! The guest's `archive` keeps the whole protocol and hands the host one range of `output`; the
//! host splits it into members and runs the policy's own `compress-member` export on helper
//! instances (each scoped to reading that session's `output` only, each kept by its thread for
//! the members it takes), on up to the archiver's worker count of threads at once. Each helper
//! checks the member it made with `verify-member` right away, and the host appends the members
//! in order to the guest's writer; the read-back after the commit then only compares bytes.
//!
//! Scheduling shares one [`WorkerPool`] with the sweep: every archive operation holds one slot
//! while it runs, and its member helpers run on that slot plus whatever slots are free when a
//! member is started ([`WorkerPool::try_acquire`], never a blocking wait, so an operation that
//! holds a slot never waits for another: no deadlock however sweep workers and members mix).
//! Memory stays bounded: at most a window of `2 × workers` members (one, with one worker) is
//! started ahead of the one being written, and a member is a few MiB at most.

mod inflater;

pub use inflater::InflaterResource;

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use wasmtime::component::Resource;

use super::archive_dir::WriterResource;
use super::scope::{Access, OpScope, Scope};
use super::{HostError, HostState, HostTrap, Stores, MAX_CHUNK_BYTES};
use crate::bindings::session_archiver::policy::members::{Host, MemberWritten};
use crate::error::{ArchiverError, Op, PolicyError};
use crate::policy::LoadedPolicy;
use crate::runtime::{HelperInstance, Runtime};
use crate::store::StoreError;

/// Largest `member-bytes` (the WIT limit): a member comes back to the host in one list.
pub const MAX_MEMBER_BYTES: u64 = 64 << 20;

/// The slots archive work runs on: a sweep worker or a single `archive` holds one for its whole
/// operation; member helpers take free ones without waiting.
#[derive(Debug)]
pub struct WorkerPool {
    free: Mutex<usize>,
    freed: Condvar,
    size: usize,
}

/// One slot of a [`WorkerPool`], given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<WorkerPool>);

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.lock() += 1;
        self.0.freed.notify_one();
    }
}

impl WorkerPool {
    /// A pool of `size` slots (at least one).
    pub fn new(size: usize) -> Arc<Self> {
        let size = size.max(1);
        Arc::new(WorkerPool {
            free: Mutex::new(size),
            freed: Condvar::new(),
            size,
        })
    }

    /// How many slots the pool has.
    pub fn size(&self) -> usize {
        self.size
    }

    fn lock(&self) -> MutexGuard<'_, usize> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a free slot. Only callers that hold no slot may wait (an operation's start).
    pub fn acquire(self: &Arc<Self>) -> Slot {
        let mut free = self.lock();
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(self.clone())
    }

    /// A free slot now, or `None`.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let mut free = self.lock();
        if *free == 0 {
            return None;
        }
        *free -= 1;
        Some(Slot(self.clone()))
    }
}

/// What an archive operation needs to start member helpers: the same policy, config, runtime
/// and stores, and the shared pool.
#[derive(Clone)]
pub struct MemberCtx {
    /// The runtime the operation runs on.
    pub runtime: Arc<Runtime>,
    /// The stores the operation works on.
    pub stores: Stores,
    /// The policy the operation runs (helpers run the same bytes).
    pub policy: Arc<LoadedPolicy>,
    /// The operation's config text.
    pub config: String,
    /// The archiver's worker slots.
    pub pool: Arc<WorkerPool>,
}

/// A member `write-members` appended: it was inflated by the policy's `verify-member` as soon as
/// it was compressed (on the helper that compressed it, while the others compress theirs), so
/// the read-back of `verify-members` only has to find the same bytes in the file.
#[derive(Debug)]
pub(crate) struct WrittenMember {
    member: MemberWritten,
    /// CRC-32 of the member's gzip bytes as appended.
    gz_crc32: u32,
}

/// One compressed member.
struct Member {
    raw_len: u64,
    crc32: u32,
    bytes: Vec<u8>,
}

/// Why a helper failed: a policy error goes back to the guest as a WIT error, anything else
/// (a trap, a limit, a halt) ends the calling operation too.
enum HelperError {
    Store(StoreError),
    Trap(String),
}

/// Shared between the writing thread and the helpers.
struct Work {
    /// Next member index to start.
    next: usize,
    /// Members done and not yet written, by index.
    done: BTreeMap<usize, Result<Member, HelperError>>,
    /// Members written so far (the window's base).
    written: usize,
    /// Set on the first failure: helpers start nothing more.
    stop: bool,
}

/// The scope of a member helper: reads of session `id`'s `output`, nothing else.
fn helper_scope(id: &str) -> OpScope {
    OpScope {
        op: Op::Archive,
        session: Some(id.to_string()),
        scope: Scope::Member(id.to_string()),
    }
}

/// Runs `compress-member` for `[offset, offset + len)` on the helper's instance.
fn compress(
    inst: &mut HelperInstance<'_>,
    ctx: &MemberCtx,
    id: &str,
    offset: u64,
    len: u64,
) -> Result<Member, HelperError> {
    let result = inst.call(|g, s| g.call_compress_member(s, &ctx.config, id, offset, len));
    match result {
        Ok(m) => {
            if m.raw_len != len {
                return Err(HelperError::Store(StoreError::Io(format!(
                    "compress-member of {id} [{offset}, +{len}) reported {} bytes",
                    m.raw_len
                ))));
            }
            Ok(Member {
                raw_len: m.raw_len,
                crc32: m.crc32,
                bytes: m.bytes,
            })
        }
        Err(ArchiverError::Policy {
            error: PolicyError::Conflict(m),
            ..
        }) => Err(HelperError::Store(StoreError::Conflict(m))),
        Err(ArchiverError::Policy {
            error: PolicyError::Invalid(m),
            ..
        }) => Err(HelperError::Store(StoreError::Invalid(m))),
        Err(e) => Err(helper_error(
            &format!("compress-member of {id} [{offset}, +{len})"),
            e,
        )),
    }
}

/// A helper's failure other than the verdicts its caller handles: any other policy error goes
/// back to the guest as `io`; anything else (a trap, a limit, a halt) ends the operation.
fn helper_error(what: &str, e: ArchiverError) -> HelperError {
    match e {
        ArchiverError::Policy { error, .. } => HelperError::Store(StoreError::Io(format!(
            "{what}: {}",
            crate::error::describe_policy_error(&error)
        ))),
        e => HelperError::Trap(format!("the helper running {what} failed: {e}")),
    }
}

impl Host for HostState {
    fn write_members(
        &mut self,
        w: Resource<WriterResource>,
        id: String,
        offset: u64,
        length: u64,
        member_bytes: u64,
    ) -> Result<Vec<MemberWritten>, HostError> {
        self.call(|s| {
            s.scope.file(
                "members.write-members",
                &id,
                super::scope::OUTPUT,
                Access::Write,
            )?;
            if length == 0 || member_bytes == 0 || member_bytes > MAX_MEMBER_BYTES {
                return Err(HostError::invalid(format!(
                    "members of {id}: range of {length} bytes in members of {member_bytes} \
                     (must be non-empty, members 1..={MAX_MEMBER_BYTES})"
                )));
            }
            let end = offset.checked_add(length).ok_or_else(|| {
                HostError::invalid(format!("members of {id}: {offset} + {length} overflows"))
            })?;
            let ctx = s.members.clone().ok_or_else(|| {
                HostError::invalid(format!(
                    "members of {id}: parallel members are only available to archive"
                ))
            })?;
            // The writer must be live before any work starts.
            if !s.table.get(&w)?.is_open() {
                return Err(super::archive_dir::consumed());
            }
            // Computed on demand: a guest's range is never materialised (a hostile one could
            // ask for billions of 1-byte members).
            let ranges = Ranges {
                offset,
                end,
                member: member_bytes,
            };
            let written = write_all(s, &w, &ctx, &id, &ranges)?;
            let name = s.table.get(&w)?.name().to_string();
            let out = written.iter().map(|m| m.member).collect();
            s.written.entry(name).or_default().extend(written);
            Ok(out)
        })
    }

    fn verify_members(
        &mut self,
        name: String,
        members: Vec<MemberWritten>,
    ) -> Result<Option<String>, HostError> {
        self.call(|s| s.verify_members_impl(&name, &members))
    }

    fn start_inflate(&mut self) -> Result<Option<Resource<InflaterResource>>, HostError> {
        self.call(|s| s.start_inflate_impl())
    }
}

/// `[offset, end)` cut into members of `member` bytes (the last one shorter).
struct Ranges {
    offset: u64,
    end: u64,
    member: u64,
}

impl Ranges {
    fn len(&self) -> usize {
        usize::try_from((self.end - self.offset).div_ceil(self.member)).unwrap_or(usize::MAX)
    }

    /// Member `i`: (offset, length).
    fn get(&self, i: usize) -> (u64, u64) {
        let o = self.offset + i as u64 * self.member;
        (o, self.member.min(self.end - o))
    }
}

/// Compresses `ranges` on helper threads and writes the members in order.
fn write_all(
    s: &mut HostState,
    w: &Resource<WriterResource>,
    ctx: &MemberCtx,
    id: &str,
    ranges: &Ranges,
) -> Result<Vec<WrittenMember>, HostError> {
    // How far helpers may run ahead of the member being written. With one worker, one member
    // at a time: compress, write, compress, ... (the store calls then come in one fixed order,
    // which the fault and crash sweeps rely on).
    let window = match ctx.pool.size() {
        1 => 1,
        n => 2 * n,
    };
    let work = Mutex::new(Work {
        next: 0,
        done: BTreeMap::new(),
        written: 0,
        stop: false,
    });
    let changed = Condvar::new();
    let lock = || work.lock().unwrap_or_else(|e| e.into_inner());

    // One helper: claims the next member inside the window, compresses it, hands it over.
    let helper = |_slot: Option<Slot>| {
        let mut inst =
            HelperInstance::new(&ctx.runtime, &ctx.policy, &ctx.stores, helper_scope(id));
        loop {
            let i = {
                let mut g = lock();
                loop {
                    if g.stop || g.next >= ranges.len() {
                        return;
                    }
                    if g.next < g.written + window {
                        break;
                    }
                    g = changed.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                g.next += 1;
                g.next - 1
            };
            let (o, len) = ranges.get(i);
            let result = compress(&mut inst, ctx, id, o, len)
                .map(|m| tamper(i, m))
                .and_then(|m| verified(&mut inst, ctx, id, i, m));
            let mut g = lock();
            if result.is_err() {
                g.stop = true;
            }
            g.done.insert(i, result);
            changed.notify_all();
        }
    };

    std::thread::scope(|scope| {
        let mut out = Vec::new();
        // The calling operation's own slot runs the first helper.
        scope.spawn(|| helper(None));
        let mut helpers = 1;
        let mut failure: Option<HostError> = None;
        loop {
            // More helpers while slots are free and members are left to start.
            while helpers < ranges.len() {
                let left = {
                    let g = lock();
                    !g.stop && g.next < ranges.len()
                };
                if !left {
                    break;
                }
                match ctx.pool.try_acquire() {
                    Some(slot) => {
                        let h = &helper;
                        scope.spawn(move || h(Some(slot)));
                        helpers += 1;
                    }
                    None => break,
                }
            }
            let ready = {
                let mut g = lock();
                loop {
                    let written = g.written;
                    if let Some(r) = g.done.remove(&written) {
                        break Some(r);
                    }
                    if g.stop && g.next <= written {
                        // A later member failed before this one was started: report it.
                        let first_err = g.done.iter().find(|(_, r)| r.is_err()).map(|(k, _)| *k);
                        break first_err.and_then(|k| g.done.remove(&k));
                    }
                    g = changed.wait(g).unwrap_or_else(|e| e.into_inner());
                }
            };
            let Some(result) = ready else { break };
            let member = match result {
                Ok(m) => m,
                Err(e) => {
                    failure = Some(helper_failure(e));
                    break;
                }
            };
            if let Err(e) = append(s, w, &member) {
                failure = Some(e);
                break;
            }
            out.push(WrittenMember {
                member: MemberWritten {
                    raw_len: member.raw_len,
                    crc32: member.crc32,
                    gz_len: member.bytes.len() as u64,
                },
                gz_crc32: crc32fast::hash(&member.bytes),
            });
            let mut g = lock();
            g.written += 1;
            changed.notify_all();
            if g.written == ranges.len() {
                break;
            }
        }
        // Stop the helpers (they finish the member in hand) before the scope joins them.
        {
            let mut g = lock();
            g.stop = true;
            changed.notify_all();
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    })
    .and_then(|out| {
        if out.len() == ranges.len() {
            Ok(out)
        } else {
            // The loop ended without a member and without a failure: a helper stopped early.
            Err(HostError::Store(StoreError::Io(format!(
                "members of {id}: {} of {} members were written",
                out.len(),
                ranges.len()
            ))))
        }
    })
}

/// Test seam (feature `fault-hooks`): when set, called with each member's index and bytes after
/// `compress-member` and before `verify-member`.
#[cfg(feature = "fault-hooks")]
pub static TAMPER_MEMBER: Mutex<Option<Tamper>> = Mutex::new(None);

/// What [`TAMPER_MEMBER`] holds: member index, member bytes.
#[cfg(feature = "fault-hooks")]
pub type Tamper = fn(usize, &mut Vec<u8>);

#[cfg(feature = "fault-hooks")]
fn tamper(i: usize, mut m: Member) -> Member {
    if let Some(f) = *TAMPER_MEMBER.lock().unwrap_or_else(|e| e.into_inner()) {
        f(i, &mut m.bytes);
    }
    m
}

#[cfg(not(feature = "fault-hooks"))]
fn tamper(_: usize, m: Member) -> Member {
    m
}

/// Checks a member just compressed with the policy's `verify-member`, before it is written.
fn verified(
    inst: &mut HelperInstance<'_>,
    ctx: &MemberCtx,
    id: &str,
    i: usize,
    m: Member,
) -> Result<Member, HelperError> {
    match verify_one(inst, ctx, id, i, &m.bytes, m.raw_len, m.crc32) {
        Ok(()) => Ok(m),
        Err(VerifyFail::Corrupt(why)) => Err(HelperError::Store(StoreError::Io(format!(
            "compress-member of {id} made a member that does not verify: {why}"
        )))),
        Err(VerifyFail::Helper(e)) => Err(e),
    }
}

fn helper_failure(e: HelperError) -> HostError {
    match e {
        HelperError::Store(e) => HostError::Store(e),
        HelperError::Trap(msg) => HostError::Trap(wasmtime::Error::new(HostTrap::Helper(msg))),
    }
}

/// Appends one member to the writer in chunks, charged to the operation's write allowance.
fn append(
    s: &mut HostState,
    w: &Resource<WriterResource>,
    member: &Member,
) -> Result<(), HostError> {
    // The helpers read the member's bytes on this operation's behalf: count them as read by
    // it, so its write allowance (a multiple of the bytes read) covers the members written.
    s.usage.file_read = s.usage.file_read.saturating_add(member.raw_len);
    for chunk in member.bytes.chunks(MAX_CHUNK_BYTES) {
        let name = s.table.get(w)?.name().to_string();
        s.charge_write(
            "members.write-members",
            || format!("archive {name}"),
            chunk.len(),
        )?;
        let writer = s
            .table
            .get_mut(w)?
            .writer_mut()
            .ok_or_else(super::archive_dir::consumed)?;
        writer.write(chunk)?;
    }
    Ok(())
}

/// A verify job's failure: the archive is corrupt (a message for the guest), or a helper failed.
enum VerifyFail {
    Corrupt(String),
    Helper(HelperError),
}

/// Shared between the reading thread and the verify helpers.
struct Checks {
    /// Members read and not yet taken: (index, bytes, raw length, CRC-32).
    pending: std::collections::VecDeque<(usize, Vec<u8>, u64, u32)>,
    /// Members being verified now.
    in_flight: usize,
    /// No more members will be queued.
    closed: bool,
    /// The first failure; helpers stop taking members.
    failed: Option<VerifyFail>,
}

/// Runs `verify-member` for one member on the helper's instance (it needs no imports: the
/// scope allows nothing but reads of the session's output).
fn verify_one(
    inst: &mut HelperInstance<'_>,
    ctx: &MemberCtx,
    id: &str,
    i: usize,
    bytes: &[u8],
    raw_len: u64,
    crc32: u32,
) -> Result<(), VerifyFail> {
    let result = inst.call(|g, s| g.call_verify_member(s, &ctx.config, bytes, raw_len, crc32));
    match result {
        Ok(()) => Ok(()),
        Err(ArchiverError::Policy {
            error: PolicyError::Corrupt(m),
            ..
        }) => Err(VerifyFail::Corrupt(format!("member {i}: {m}"))),
        Err(e) => Err(VerifyFail::Helper(helper_error(
            &format!("verify-member {i} of {id}"),
            e,
        ))),
    }
}

/// Reads exactly `len` bytes from `reader` (fewer at the end of the file), counting them as read
/// by the operation.
fn read_exact(
    s: &mut HostState,
    reader: &mut dyn crate::archive_dir::ArchiveReader,
    len: u64,
) -> Result<Vec<u8>, HostError> {
    let mut out = Vec::with_capacity(len as usize);
    while (out.len() as u64) < len {
        let want = (len - out.len() as u64).min(MAX_CHUNK_BYTES as u64) as usize;
        let chunk = reader.read(want)?;
        if chunk.is_empty() {
            break;
        }
        s.usage.archive_read = s.usage.archive_read.saturating_add(chunk.len() as u64);
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

impl HostState {
    /// The read-back of members this operation wrote and verified as it compressed them: the
    /// file must hold exactly their bytes (each member's CRC-32 against the one taken as it was
    /// appended), in order, and nothing after.
    fn read_back_written(
        &mut self,
        name: &str,
        written: &[WrittenMember],
    ) -> Result<Option<String>, HostError> {
        let mut reader = self.stores.archive_dir.open(name)?;
        for (i, w) in written.iter().enumerate() {
            let bytes = read_exact(self, reader.as_mut(), w.member.gz_len)?;
            if (bytes.len() as u64) < w.member.gz_len {
                return Ok(Some(format!("the file ends inside member {i}")));
            }
            let got = crc32fast::hash(&bytes);
            if got != w.gz_crc32 {
                return Ok(Some(format!(
                    "member {i} reads back other bytes than were written (CRC-32 of its {} \
                     bytes {got:#010x}, written {:#010x})",
                    w.member.gz_len, w.gz_crc32
                )));
            }
        }
        if read_exact(self, reader.as_mut(), 1)?.is_empty() {
            Ok(None)
        } else {
            Ok(Some("bytes follow the last member".to_string()))
        }
    }

    /// `members.verify-members`: see the WIT.
    fn verify_members_impl(
        &mut self,
        name: &str,
        members: &[MemberWritten],
    ) -> Result<Option<String>, HostError> {
        crate::archive_dir::validate_archive_name(name)?;
        self.scope
            .archive("members.verify-members", name, Access::Read)?;
        if members.is_empty() || members.iter().any(|m| m.gz_len > MAX_MEMBER_BYTES) {
            return Err(HostError::invalid(format!(
                "verify of {name}: no members, or a member over {MAX_MEMBER_BYTES} bytes"
            )));
        }
        let ctx = self.members.clone().ok_or_else(|| {
            HostError::invalid(format!(
                "verify of {name}: parallel members are only available to archive"
            ))
        })?;
        if let Some(written) = self.written.remove(name) {
            let same = written.len() == members.len()
                && written.iter().zip(members).all(|(w, m)| {
                    (w.member.raw_len, w.member.crc32, w.member.gz_len)
                        == (m.raw_len, m.crc32, m.gz_len)
                });
            if same {
                return self.read_back_written(name, &written);
            }
        }
        let id = name
            .strip_suffix(super::scope::ARCHIVE_SUFFIX)
            .unwrap_or(name)
            .to_string();
        let mut reader = self.stores.archive_dir.open(name)?;
        let window = match ctx.pool.size() {
            1 => 1,
            n => 2 * n,
        };
        let checks = Mutex::new(Checks {
            pending: std::collections::VecDeque::new(),
            in_flight: 0,
            closed: false,
            failed: None,
        });
        let changed = Condvar::new();
        let lock = || checks.lock().unwrap_or_else(|e| e.into_inner());
        let helper = |_slot: Option<Slot>| {
            let mut inst =
                HelperInstance::new(&ctx.runtime, &ctx.policy, &ctx.stores, helper_scope(&id));
            loop {
                let (i, bytes, raw_len, crc) = {
                    let mut g = lock();
                    loop {
                        if g.failed.is_some() {
                            return;
                        }
                        if let Some(job) = g.pending.pop_front() {
                            g.in_flight += 1;
                            break job;
                        }
                        if g.closed {
                            return;
                        }
                        g = changed.wait(g).unwrap_or_else(|e| e.into_inner());
                    }
                };
                let result = verify_one(&mut inst, &ctx, &id, i, &bytes, raw_len, crc);
                let mut g = lock();
                g.in_flight -= 1;
                if let Err(e) = result {
                    g.failed.get_or_insert(e);
                }
                changed.notify_all();
            }
        };
        std::thread::scope(|scope| {
            scope.spawn(|| helper(None));
            let mut helpers = 1;
            let mut read_failure = None;
            let mut corrupt = None;
            for (i, m) in members.iter().enumerate() {
                let bytes = match read_exact(self, reader.as_mut(), m.gz_len) {
                    Ok(b) => b,
                    Err(e) => {
                        read_failure = Some(e);
                        break;
                    }
                };
                if (bytes.len() as u64) < m.gz_len {
                    corrupt = Some(format!("the file ends inside member {i}"));
                    break;
                }
                {
                    let mut g = lock();
                    while g.failed.is_none() && g.pending.len() + g.in_flight >= window {
                        g = changed.wait(g).unwrap_or_else(|e| e.into_inner());
                    }
                    if g.failed.is_some() {
                        break;
                    }
                    g.pending.push_back((i, bytes, m.raw_len, m.crc32));
                    changed.notify_all();
                }
                if helpers < members.len() {
                    if let Some(slot) = ctx.pool.try_acquire() {
                        let h = &helper;
                        scope.spawn(move || h(Some(slot)));
                        helpers += 1;
                    }
                }
            }
            if read_failure.is_none() && corrupt.is_none() {
                match read_exact(self, reader.as_mut(), 1) {
                    Ok(tail) if !tail.is_empty() => {
                        corrupt = Some("bytes follow the last member".to_string())
                    }
                    Ok(_) => {}
                    Err(e) => read_failure = Some(e),
                }
            }
            // Let the helpers drain the queue (or stop on a failure) and wait for them.
            let mut g = lock();
            g.closed = true;
            if read_failure.is_some() || corrupt.is_some() {
                g.pending.clear();
            }
            changed.notify_all();
            while g.in_flight > 0 || (g.failed.is_none() && !g.pending.is_empty()) {
                g = changed.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            let failed = g.failed.take();
            drop(g);
            if let Some(e) = read_failure {
                return Err(e);
            }
            match failed {
                Some(VerifyFail::Helper(e)) => Err(helper_failure(e)),
                Some(VerifyFail::Corrupt(m)) => Ok(Some(m)),
                None => Ok(corrupt),
            }
        })
    }
}
