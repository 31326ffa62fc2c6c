//! The operations every policy shares: archive, restore, export, recover, prune, plan and sweep.
//!
//! A policy differs only in its [`Decisions`] (which sessions to archive, which archives to prune,
//! how hard to compress). Everything here follows one safety rule: the live copy of a session's
//! output is removed only after a verified archive is durable and recorded, and only if the live
//! file did not change meanwhile; an intent in meta is recorded before the first side effect so
//! [`recover`] can finish or undo any step a crash interrupted.

use std::collections::BTreeMap;

use crate::bindings::exports::session_archiver::policy::policy as api;
use crate::gzip::{DecodeSummary, GzDecoder, GzEncoder};
use crate::host::{
    archive_dir, dir_err, file_err, files, obj_err, objects, sink_err, ArchiveRead, ArchiveWrite,
    Entry, FileStat, Host, Level, Object,
};
use crate::lines::LineCounter;
use crate::meta::{keys, EntryRecord, Intent, Meta, Patch, StatRecord};

pub use api::Error;

/// The session's live output file (the seed's `OUTPUT_FILENAME`).
pub const OUTPUT: &str = "output";
/// Scratch file a restore builds before renaming it over `output`. Exactly as long as `output`
/// on purpose: the rename rewrites the name in every 64 KiB part row, and SQLite overwrites a
/// same-size row in place, touching only the page holding the name, while a longer or shorter
/// name makes it copy every part through the WAL (measured: 30 ms instead of 350 ms for 64 MiB).
pub const SCRATCH: &str = "outnew";
/// Bytes moved per host call: guest memory stays at a few MiB whatever the session size.
pub const CHUNK: usize = 1 << 20;
/// Objects per `objects.list` page.
pub const PAGE: u32 = 500;
/// How often a restore re-copies output appended during the final rename before giving up.
const RENAME_ATTEMPTS: usize = 8;

/// The archive name of a session (the seed's `<id>.jsonl.gz`).
pub fn archive_name(id: &str) -> String {
    format!("{id}.jsonl.gz")
}

/// What a policy decides about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Archive it.
    Archive {
        /// For people: "idle 12 d >= 7 d".
        reason: String,
    },
    /// Leave it alone.
    Skip {
        /// Short reason code for the skip counts (`not-agent`, `pinned`, ...).
        code: String,
        /// For people.
        reason: String,
        /// Whether it is worth a line in a plan (an agent session), or only a count.
        candidate: bool,
    },
    /// An operation was interrupted; recover it.
    Recover {
        /// For people.
        reason: String,
    },
}

/// What an archive file in the directory is, for prune decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveClass {
    /// A restored or never-deleted session's old archive: its data is live.
    Backup,
    /// No session has it (no object, or a name that is not `<id>.jsonl.gz`).
    Orphan,
    /// The only copy of an archived session's output.
    OnlyCopy,
    /// Its session is pinned: never pruned.
    Pinned,
    /// Its session has an operation in progress: never pruned now.
    InProgress,
    /// Its session could not be read: never pruned now.
    Unknown,
}

/// One archive file and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveInfo {
    /// The directory entry.
    pub entry: Entry,
    /// Its class.
    pub class: ArchiveClass,
}

/// One archive a policy chose to prune.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePick {
    /// Index into the list given to [`Decisions::prune_plan`].
    pub index: usize,
    /// For people: "cap exceeded: oldest".
    pub reason: String,
}

/// One session as [`Decisions::select_all`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The session id.
    pub id: String,
    /// Its parsed meta (sessions whose meta does not parse never reach a policy: they are
    /// skipped as `invalid-meta`).
    pub meta: Meta,
    /// Readable bytes of its live `output` (0 when there is none). Measured (one `files.stat`
    /// per session) only when [`Decisions::needs_live_bytes`] says so; 0 otherwise.
    pub live_bytes: u64,
}

/// A policy's decisions; everything else is shared.
pub trait Decisions {
    /// What to do with one session now, judged on its own. The default
    /// [`Decisions::select_all`] calls this for each session; a policy that decides over all
    /// sessions at once (a byte budget) overrides `select_all` and may use this as its
    /// per-session filter.
    fn select(&self, meta: &Meta, now_ms: i64) -> Selection;
    /// What to do with every session now, in the order given. `plan` and `sweep` both call
    /// this, so a plan is exactly what a sweep would do. Must return one selection per
    /// candidate.
    fn select_all(&self, sessions: &[Candidate], now_ms: i64) -> Vec<Selection> {
        sessions
            .iter()
            .map(|c| self.select(&c.meta, now_ms))
            .collect()
    }
    /// Whether [`Candidate::live_bytes`] must be measured (costs a `files.stat` per session).
    fn needs_live_bytes(&self) -> bool {
        false
    }
    /// Which archives to delete, in order, so the directory fits under `cap`.
    fn prune_plan(&self, archives: &[ArchiveInfo], cap: u64) -> Vec<PrunePick>;
    /// [`Decisions::prune_plan`] with the time now, for policies with age rules. `plan`,
    /// `prune` and `sweep` call this one; the default ignores the time.
    fn prune_plan_at(&self, archives: &[ArchiveInfo], cap: u64, now_ms: i64) -> Vec<PrunePick> {
        let _ = now_ms;
        self.prune_plan(archives, cap)
    }
    /// Compression level 0..=9.
    fn level(&self) -> u8;
    /// Cap on the archive directory's total size.
    fn cap(&self) -> u64;
    /// Most bytes a restore or export may decompress.
    fn max_restore_bytes(&self) -> u64;
}

fn parse_meta(obj: &Object) -> Result<Meta, Error> {
    Meta::parse(&obj.meta).map_err(Error::from)
}

fn update<H: Host>(h: &H, id: &str, patch: Patch) -> Result<Object, Error> {
    h.update_meta(id, &patch.to_json()).map_err(obj_err)
}

fn stat_record(s: &FileStat) -> StatRecord {
    StatRecord {
        size: s.size,
        created_ms: s.created_ms,
        modified_ms: s.modified_ms,
        circular_max_size: s.circular_max_size,
    }
}

fn file_stat(s: &StatRecord) -> FileStat {
    FileStat {
        size: s.size,
        created_ms: s.created_ms,
        modified_ms: s.modified_ms,
        circular_max_size: s.circular_max_size,
    }
}

fn entry_record(e: &Entry) -> EntryRecord {
    EntryRecord {
        size: e.size,
        modified_ms: e.modified_ms,
    }
}

/// First logical offset of `output` still readable (circular files forget their oldest bytes).
fn first_held(s: &FileStat) -> u64 {
    match s.circular_max_size {
        Some(max) if s.size > max => s.size - max,
        _ => 0,
    }
}

/// Best-effort cleanup whose failure must not hide the error that caused it (it is logged).
fn best_effort<H: Host>(h: &H, what: &str, r: Result<(), Error>) {
    if let Err(e) = r {
        h.log(Level::Warn, &format!("cleanup failed ({what}): {e:?}"));
    }
}

fn clear_intent<H: Host>(h: &H, id: &str) -> Result<(), Error> {
    update(h, id, Patch::new().clear_intent()).map(|_| ())
}

fn remove_if_present<H: Host>(h: &H, name: &str) -> Result<(), Error> {
    match h.remove_archive(name) {
        Ok(()) | Err(archive_dir::Error::NotFound(_)) => Ok(()),
        Err(e) => Err(dir_err("remove archive", e)),
    }
}

fn delete_if_present<H: Host>(h: &H, zone: &str, name: &str) -> Result<(), Error> {
    match h.delete_file(zone, name) {
        Ok(()) | Err(files::Error::NotFound(_)) => Ok(()),
        Err(e) => Err(file_err("delete scratch file", e)),
    }
}

/// Collects small pieces into ~1 MiB chunks before handing them to a host call.
struct Chunker<'a> {
    buf: Vec<u8>,
    out: &'a mut dyn FnMut(&[u8]) -> Result<(), Error>,
}

impl<'a> Chunker<'a> {
    fn new(out: &'a mut dyn FnMut(&[u8]) -> Result<(), Error>) -> Self {
        Chunker {
            buf: Vec::new(),
            out,
        }
    }
    fn push(&mut self, data: &[u8]) -> Result<(), Error> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Error> {
        if !self.buf.is_empty() {
            (self.out)(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Reads `zone/name` over `[from, to)` in chunks into `sink`; a file that ends early changed
/// underneath us, which is a conflict.
pub fn copy_file_range<H: Host>(
    h: &H,
    zone: &str,
    name: &str,
    from: u64,
    to: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut off = from;
    while off < to {
        let len = (to - off).min(CHUNK as u64) as u32;
        let data = match h.read_file(zone, name, off, len) {
            Ok(d) => d,
            Err(files::Error::NotFound(m)) => {
                return Err(Error::Conflict(format!(
                    "{zone}/{name} was deleted while being read: {m}"
                )))
            }
            Err(e) => return Err(file_err("read live output", e)),
        };
        if data.is_empty() {
            return Err(Error::Conflict(format!(
                "{zone}/{name} shrank while being read (ended at {off}, expected {to})"
            )));
        }
        let take = data.len().min((to - off) as usize);
        sink(&data[..take])?;
        off += take as u64;
    }
    Ok(())
}

/// Streams an archive through the gzip decoder into `sink`, refusing to inflate past `limit`.
pub fn gunzip_archive<H: Host>(
    h: &H,
    name: &str,
    limit: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<DecodeSummary, Error> {
    let reader = match h.open_archive(name) {
        Ok(r) => r,
        Err(archive_dir::Error::NotFound(_)) => {
            return Err(Error::Corrupt(format!("archive {name} is missing")))
        }
        Err(e) => return Err(dir_err("open archive", e)),
    };
    let mut dec = GzDecoder::new(limit);
    loop {
        let chunk = reader
            .read(CHUNK as u32)
            .map_err(|e| dir_err("read archive", e))?;
        if chunk.is_empty() {
            break;
        }
        dec.write(&chunk, sink)?;
    }
    Ok(dec.finish()?)
}

/// [`gunzip_archive`] with the archive checked against what meta records: exactly `raw_len`
/// bytes (never inflating past them) and CRC-32 `crc` when known. Any difference is `corrupt`.
fn gunzip_checked<H: Host>(
    h: &H,
    name: &str,
    raw_len: u64,
    crc: Option<u32>,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<DecodeSummary, Error> {
    let summary = gunzip_archive(h, name, raw_len, sink).map_err(|e| match e {
        Error::TooLarge(_) => Error::Corrupt(format!(
            "archive {name} decompresses to more than the {raw_len} bytes recorded"
        )),
        other => other,
    })?;
    if summary.raw_len != raw_len {
        return Err(Error::Corrupt(format!(
            "archive {name} holds {} bytes, expected {raw_len}",
            summary.raw_len
        )));
    }
    if let Some(want) = crc {
        if summary.crc32 != want {
            return Err(Error::Corrupt(format!(
                "archive {name} CRC-32 {:#010x}, expected {want:#010x}",
                summary.crc32
            )));
        }
    }
    Ok(summary)
}

/// Reads an archive back and checks it holds exactly `raw_len` bytes with CRC-32 `crc` (when
/// known). Any difference is `corrupt`.
pub fn verify_archive<H: Host>(
    h: &H,
    name: &str,
    raw_len: u64,
    crc: Option<u32>,
) -> Result<(), Error> {
    gunzip_checked(h, name, raw_len, crc, &mut |_| Ok(())).map(|_| ())
}

/// What writing an archive produced.
struct Written {
    raw_len: u64,
    crc32: u32,
    gz_bytes: u64,
}

/// Streams `output[from..to)` through gzip into a new archive `name` and commits it; on any error
/// the writer is aborted, so no file of that name is created or changed.
fn write_archive<H: Host>(
    h: &H,
    id: &str,
    name: &str,
    from: u64,
    to: u64,
    level: u8,
) -> Result<Written, Error> {
    let writer = h
        .create_archive(name)
        .map_err(|e| dir_err("create archive", e))?;
    let result = (|| {
        let mut enc = GzEncoder::new(level)?;
        copy_file_range(h, id, OUTPUT, from, to, &mut |data| {
            let gz = enc.write(data)?;
            if !gz.is_empty() {
                writer.write(&gz).map_err(|e| dir_err("write archive", e))?;
            }
            Ok(())
        })?;
        let (raw_len, crc32) = (enc.raw_len(), enc.crc32());
        writer
            .write(&enc.finish()?)
            .map_err(|e| dir_err("write archive", e))?;
        let entry = writer.commit().map_err(|e| dir_err("commit archive", e))?;
        Ok(Written {
            raw_len,
            crc32,
            gz_bytes: entry.size,
        })
    })();
    if result.is_err() {
        writer.abort();
    }
    result
}

fn noop_outcome(now: i64) -> api::ArchiveOutcome {
    api::ArchiveOutcome {
        raw_bytes: 0,
        archive_bytes: 0,
        archive_name: None,
        archived_at: now,
        crc32: 0,
    }
}

/// Archives one session: see the WIT `policy.archive`.
pub fn archive<H: Host>(h: &H, id: &str, level: u8) -> Result<api::ArchiveOutcome, Error> {
    let obj = h.get_object(id).map_err(obj_err)?;
    let meta = parse_meta(&obj)?;
    if meta.has_intent() {
        return Err(Error::Busy(format!(
            "session {id} has an unfinished operation; run recover first"
        )));
    }
    if let Some(at) = meta.archived_at()? {
        // Writing again would replace the only copy of the archived bytes.
        return Err(Error::Conflict(format!(
            "session {id} is already archived (at {at}); restore it first"
        )));
    }
    if meta.pinned()? {
        return Err(Error::Invalid(format!(
            "session {id} is pinned ({}); unpin it to archive",
            keys::PINNED
        )));
    }
    let now = h.now_ms();
    let stat = match h
        .stat_file(id, OUTPUT)
        .map_err(|e| file_err("stat live output", e))?
    {
        Some(s) if s.size > 0 => s,
        _ => return Ok(noop_outcome(now)),
    };
    if now <= 0 {
        // archived_at <= 0 reads as "not archived": the archive would look like a prunable backup.
        return Err(Error::Io(format!(
            "host clock reads {now} ms; refusing to record an archive at that time"
        )));
    }
    let from = first_held(&stat);
    if from > 0 {
        h.log(
            Level::Warn,
            &format!(
                "session {id}: circular output keeps only its last {} of {} bytes; archiving those",
                stat.size - from,
                stat.size
            ),
        );
    }
    let name = archive_name(id);
    let path = h
        .archive_path(&name)
        .map_err(|e| dir_err("archive path", e))?;
    let previous = h
        .stat_archive(&name)
        .map_err(|e| dir_err("stat archive", e))?
        .map(|e| entry_record(&e));
    let intent = Intent::Archive {
        at: now,
        name: name.clone(),
        stat: stat_record(&stat),
        previous,
        restored_at: meta.get(keys::RESTORED_AT).cloned(),
        pruned_at: meta.get(keys::PRUNED_AT).cloned(),
    };
    update(h, id, Patch::new().intent(&intent))?;

    // Written, then verified by reading it back: nothing is recorded for an archive we cannot read.
    let written = match write_archive(h, id, &name, from, stat.size, level)
        .and_then(|w| verify_archive(h, &name, w.raw_len, Some(w.crc32)).map(|()| w))
    {
        Ok(w) => w,
        Err(e) => {
            // The writer aborts on a write error; a committed but unverifiable archive is ours.
            best_effort(
                h,
                "remove unverified archive",
                remove_ours(h, &name, &intent),
            );
            best_effort(h, "clear intent", clear_intent(h, id));
            return Err(e);
        }
    };

    let archived = Patch::new()
        .set(keys::ARCHIVED_AT, now)
        .set(keys::ARCHIVED_BYTES, written.raw_len)
        .set(keys::ARCHIVE_PATH, path)
        .set(keys::ARCHIVE_CRC32, written.crc32)
        .set(keys::ARCHIVE_GZ_BYTES, written.gz_bytes)
        .remove(keys::RESTORED_AT)
        .remove(keys::PRUNED_AT);
    if let Err(e) = update(h, id, archived) {
        // If the patch did land after all, leave everything to recover; otherwise undo.
        let landed = h
            .get_object(id)
            .ok()
            .and_then(|o| Meta::parse(&o.meta).ok())
            .and_then(|m| m.archived_at().ok().flatten());
        if landed != Some(now) {
            best_effort(
                h,
                "remove unrecorded archive",
                remove_ours(h, &name, &intent),
            );
            best_effort(h, "clear intent", clear_intent(h, id));
        }
        return Err(e);
    }

    match h.delete_file_if_unchanged(id, OUTPUT, &stat) {
        Ok(()) => {}
        Err(files::Error::NotFound(_)) => {
            h.log(
                Level::Warn,
                &format!("session {id}: live output was already gone; the archive is its copy"),
            );
        }
        Err(files::Error::Conflict(m)) => {
            // Appended meanwhile (logrotate's copytruncate bug): keep the live file, drop the archive.
            let undo = undo_archived_patch(&meta);
            update(h, id, undo)?;
            remove_ours(h, &name, &intent)?;
            clear_intent(h, id)?;
            return Err(Error::Conflict(format!("session {id} was written to while being archived ({m}); live output kept, archive dropped")));
        }
        // Unknown outcome: the intent stays so recover finishes or rolls back.
        Err(e) => return Err(file_err("delete live output", e)),
    }
    clear_intent(h, id)?;
    h.log(
        Level::Info,
        &format!(
            "session {id}: archived {} bytes into {name} ({} bytes)",
            written.raw_len, written.gz_bytes
        ),
    );
    Ok(api::ArchiveOutcome {
        raw_bytes: written.raw_len,
        archive_bytes: written.gz_bytes,
        archive_name: Some(name),
        archived_at: now,
        crc32: written.crc32,
    })
}

fn intent_previous(intent: &Intent) -> Option<EntryRecord> {
    match intent {
        Intent::Archive { previous, .. } => previous.clone(),
        _ => None,
    }
}

/// Removes the archive an archive intent wrote, unless what is there is still the older file
/// that had the name before (then we never replaced it).
fn remove_ours<H: Host>(h: &H, name: &str, intent: &Intent) -> Result<(), Error> {
    let now = h
        .stat_archive(name)
        .map_err(|e| dir_err("stat archive", e))?;
    match now {
        None => Ok(()),
        Some(e) if Some(entry_record(&e)) == intent_previous(intent) => Ok(()),
        Some(_) => remove_if_present(h, name),
    }
}

/// The patch that takes back an archive record, restoring the keys it replaced.
fn undo_archived_patch(before: &Meta) -> Patch {
    Patch::new()
        .clear_archived()
        .set_opt(keys::RESTORED_AT, before.get(keys::RESTORED_AT).cloned())
        .set_opt(keys::PRUNED_AT, before.get(keys::PRUNED_AT).cloned())
}

/// The archive an archived session's meta points at, checked: it must be this session's own
/// `<id>.jsonl.gz` in the archive directory (bug 6: never follow a path from meta).
fn archived_source<H: Host>(
    h: &H,
    id: &str,
    meta: &Meta,
) -> Result<(String, u64, Option<u32>), Error> {
    let name = archive_name(id);
    let expected = h
        .archive_path(&name)
        .map_err(|e| dir_err("archive path", e))?;
    match meta.str(keys::ARCHIVE_PATH)? {
        Some(p) if p == expected => {}
        Some(p) => {
            return Err(Error::InvalidMeta(format!(
            "archive path {p} is not this session's archive in the archive directory ({expected})"
        )))
        }
        None => {
            return Err(Error::InvalidMeta(format!(
                "session {id} is archived but {} is missing",
                keys::ARCHIVE_PATH
            )))
        }
    }
    let raw_len = meta.u64(keys::ARCHIVED_BYTES)?.ok_or_else(|| {
        Error::InvalidMeta(format!(
            "session {id} is archived but {} is missing",
            keys::ARCHIVED_BYTES
        ))
    })?;
    let crc = meta.u32(keys::ARCHIVE_CRC32)?;
    Ok((name, raw_len, crc))
}

/// Restores one session: see the WIT `policy.restore`.
pub fn restore<H: Host>(
    h: &H,
    id: &str,
    max_restore_bytes: u64,
) -> Result<api::RestoreOutcome, Error> {
    let obj = h.get_object(id).map_err(obj_err)?;
    let meta = parse_meta(&obj)?;
    if meta.has_intent() {
        return Err(Error::Busy(format!(
            "session {id} has an unfinished operation; run recover first"
        )));
    }
    if meta.archived_at()?.is_none() {
        return Err(match meta.pruned_at() {
            Some(at) => Error::Pruned(at),
            None => Error::NotArchived(id.to_string()),
        });
    }
    let (name, raw_len, crc) = archived_source(h, id, &meta)?;
    if raw_len > max_restore_bytes {
        return Err(Error::TooLarge(format!(
            "archive {name} holds {raw_len} bytes, over max_restore_bytes {max_restore_bytes}"
        )));
    }
    let now = h.now_ms();
    let intent = Intent::Restore {
        at: now,
        name: name.clone(),
        archived_bytes: raw_len,
        crc32: crc,
    };
    update(h, id, Patch::new().intent(&intent))?;

    let newer = match restore_into_place(h, id, &name, raw_len, crc) {
        Ok(n) => n,
        Err(e) => {
            best_effort(h, "delete scratch file", delete_if_present(h, id, SCRATCH));
            best_effort(h, "clear intent", clear_intent(h, id));
            return Err(e);
        }
    };
    // The output is in place: from here an error leaves the intent for recover to finish.
    update(
        h,
        id,
        Patch::new()
            .clear_archived()
            .set(keys::RESTORED_AT, now)
            .clear_intent(),
    )?;
    h.log(
        Level::Info,
        &format!("session {id}: restored {raw_len} archived bytes + {newer} newer bytes"),
    );
    Ok(api::RestoreOutcome {
        archived_bytes: raw_len,
        newer_bytes: newer,
    })
}

/// Builds [`SCRATCH`] = archive bytes + live bytes, then renames it over `output` only if
/// the live file did not change since we copied it (bug 4: nothing written after archiving is
/// lost). Returns the number of live bytes kept.
fn restore_into_place<H: Host>(
    h: &H,
    id: &str,
    name: &str,
    raw_len: u64,
    crc: Option<u32>,
) -> Result<u64, Error> {
    delete_if_present(h, id, SCRATCH)?;
    h.create_file(id, SCRATCH)
        .map_err(|e| file_err("create scratch file", e))?;
    let mut append = |data: &[u8]| -> Result<(), Error> {
        h.append_file(id, SCRATCH, data)
            .map(|_| ())
            .map_err(|e| file_err("append scratch file", e))
    };
    {
        let mut chunker = Chunker::new(&mut append);
        gunzip_checked(h, name, raw_len, crc, &mut |c| chunker.push(c))?;
        chunker.flush()?;
    }

    let mut live_from: Option<u64> = None;
    let mut pos = 0u64;
    let mut created: Option<i64> = None;
    for _ in 0..RENAME_ATTEMPTS {
        let live = h
            .stat_file(id, OUTPUT)
            .map_err(|e| file_err("stat live output", e))?;
        if let Some(s) = &live {
            let from = *live_from.get_or_insert_with(|| first_held(s));
            if pos == 0 {
                pos = from;
            }
            if s.size < pos || created.is_some_and(|c| c != s.created_ms) {
                return Err(Error::Conflict(format!(
                    "live output of {id} was replaced during restore"
                )));
            }
            created = Some(s.created_ms);
            let mut chunker = Chunker::new(&mut append);
            copy_file_range(h, id, OUTPUT, pos, s.size, &mut |c| chunker.push(c))?;
            chunker.flush()?;
            pos = s.size;
        } else if live_from.is_some() {
            return Err(Error::Conflict(format!(
                "live output of {id} was deleted during restore"
            )));
        }
        match h.rename_file_if_unchanged(id, SCRATCH, OUTPUT, live.as_ref()) {
            Ok(()) => return Ok(pos - live_from.unwrap_or(0)),
            Err(files::Error::Conflict(_)) => continue,
            Err(e) => return Err(file_err("rename restored output into place", e)),
        }
    }
    Err(Error::Conflict(format!(
        "live output of {id} kept changing; restore gave up after {RENAME_ATTEMPTS} attempts"
    )))
}

/// Exports one session: see the WIT `policy.export`.
pub fn export<H: Host>(
    h: &H,
    id: &str,
    max_restore_bytes: u64,
) -> Result<api::ExportOutcome, Error> {
    let obj = h.get_object(id).map_err(obj_err)?;
    let meta = parse_meta(&obj)?;
    if meta.has_intent() {
        return Err(Error::Busy(format!(
            "session {id} has an unfinished operation; run recover first"
        )));
    }
    let mut lines = LineCounter::new();
    let mut bytes = 0u64;
    let mut write = |data: &[u8]| -> Result<(), Error> { h.export_write(data).map_err(sink_err) };
    let mut chunker = Chunker::new(&mut write);
    let mut from_archive = false;
    if meta.archived_at()?.is_some() {
        let (name, raw_len, crc) = archived_source(h, id, &meta)?;
        if raw_len > max_restore_bytes {
            return Err(Error::TooLarge(format!(
                "archive {name} holds {raw_len} bytes, over max_restore_bytes {max_restore_bytes}"
            )));
        }
        gunzip_checked(h, &name, raw_len, crc, &mut |c| {
            lines.update(c);
            bytes += c.len() as u64;
            chunker.push(c)
        })?;
        from_archive = true;
    }
    let live_start = bytes;
    if let Some(s) = h
        .stat_file(id, OUTPUT)
        .map_err(|e| file_err("stat live output", e))?
    {
        copy_file_range(h, id, OUTPUT, first_held(&s), s.size, &mut |c| {
            lines.update(c);
            bytes += c.len() as u64;
            chunker.push(c)
        })?;
    }
    chunker.flush()?;
    let from_live = bytes > live_start;
    let source = match (from_archive, from_live) {
        (true, true) => api::Source::ArchiveAndLive,
        (true, false) => api::Source::Archive,
        (false, true) => api::Source::Live,
        (false, false) => {
            if let Some(at) = meta.pruned_at() {
                return Err(Error::Pruned(at));
            }
            api::Source::Empty
        }
    };
    Ok(api::ExportOutcome {
        bytes,
        lines: lines.count(),
        source,
    })
}

/// How one recovery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovered {
    Finished,
    RolledBack,
}

/// Finishes or undoes the operation recorded in one session's intent. Idempotent: each step
/// checks the state it finds.
fn recover_one<H: Host>(h: &H, obj: &Object) -> Result<Recovered, Error> {
    let id = obj.id.as_str();
    let meta = parse_meta(obj)?;
    let Some(intent) = meta.intent()? else {
        return Ok(Recovered::Finished);
    };
    match &intent {
        Intent::Archive {
            name,
            stat,
            restored_at,
            pruned_at,
            ..
        } => {
            if meta.archived_at()?.is_some() {
                // Recorded only after verification; check it still holds before deleting anything.
                let (aname, raw_len, crc) = archived_source(h, id, &meta)?;
                verify_archive(h, &aname, raw_len, crc)?;
                match h.delete_file_if_unchanged(id, OUTPUT, &file_stat(stat)) {
                    Ok(()) | Err(files::Error::NotFound(_)) => {
                        clear_intent(h, id)?;
                        Ok(Recovered::Finished)
                    }
                    Err(files::Error::Conflict(_)) => {
                        let undo = Patch::new()
                            .clear_archived()
                            .set_opt(keys::RESTORED_AT, restored_at.clone())
                            .set_opt(keys::PRUNED_AT, pruned_at.clone());
                        update(h, id, undo)?;
                        remove_ours(h, name, &intent)?;
                        clear_intent(h, id)?;
                        Ok(Recovered::RolledBack)
                    }
                    Err(e) => Err(file_err("delete live output", e)),
                }
            } else {
                // Never recorded: the live file is untouched; drop what we may have written.
                remove_ours(h, name, &intent)?;
                clear_intent(h, id)?;
                Ok(Recovered::RolledBack)
            }
        }
        Intent::Restore {
            at,
            name,
            archived_bytes,
            crc32,
        } => {
            delete_if_present(h, id, SCRATCH)?;
            if meta.archived_at()?.is_none() {
                clear_intent(h, id)?;
                return Ok(Recovered::Finished);
            }
            let want = match crc32 {
                Some(c) => *c,
                None => gunzip_archive(h, name, *archived_bytes, &mut |_| Ok(()))?.crc32,
            };
            let live = h
                .stat_file(id, OUTPUT)
                .map_err(|e| file_err("stat live output", e))?;
            let renamed = match live {
                Some(s) if s.size >= *archived_bytes && first_held(&s) == 0 => {
                    let mut hasher = crc32fast::Hasher::new();
                    copy_file_range(h, id, OUTPUT, 0, *archived_bytes, &mut |c| {
                        hasher.update(c);
                        Ok(())
                    })?;
                    hasher.finalize() == want
                }
                _ => false,
            };
            if renamed {
                update(
                    h,
                    id,
                    Patch::new()
                        .clear_archived()
                        .set(keys::RESTORED_AT, *at)
                        .clear_intent(),
                )?;
                Ok(Recovered::Finished)
            } else {
                clear_intent(h, id)?;
                Ok(Recovered::RolledBack)
            }
        }
        Intent::Prune { name, .. } => {
            remove_if_present(h, name)?;
            clear_intent(h, id)?;
            Ok(Recovered::Finished)
        }
    }
}

/// Calls `f` on every object, page by page.
fn for_each_object<H: Host>(h: &H, f: &mut dyn FnMut(Object)) -> Result<(), Error> {
    let mut after: Option<String> = None;
    loop {
        let page = h.list_objects(after.as_deref(), PAGE).map_err(obj_err)?;
        let last = page.objects.last().map(|o| o.id.clone());
        for o in page.objects {
            f(o);
        }
        match page.next {
            // Guard against a host that repeats a cursor: that would loop forever.
            Some(n) if Some(&n) != after.as_ref() && last.is_some() => after = Some(n),
            _ => return Ok(()),
        }
    }
}

/// Recovers interrupted operations: see the WIT `policy.recover`.
pub fn recover<H: Host>(h: &H, id: Option<&str>) -> Result<api::RecoverReport, Error> {
    let mut pending = Vec::new();
    match id {
        Some(id) => {
            let obj = h.get_object(id).map_err(obj_err)?;
            if Meta::parse(&obj.meta)
                .map(|m| m.has_intent())
                .unwrap_or(false)
            {
                pending.push(obj);
            }
        }
        None => for_each_object(h, &mut |o| {
            if Meta::parse(&o.meta)
                .map(|m| m.has_intent())
                .unwrap_or(false)
            {
                pending.push(o);
            }
        })?,
    }
    let mut report = api::RecoverReport {
        examined: 0,
        finished: 0,
        rolled_back: 0,
        failed: Vec::new(),
    };
    for obj in pending {
        report.examined += 1;
        match recover_one(h, &obj) {
            Ok(Recovered::Finished) => report.finished += 1,
            Ok(Recovered::RolledBack) => report.rolled_back += 1,
            Err(error) => {
                h.log(
                    Level::Warn,
                    &format!("session {}: recovery failed: {error:?}", obj.id),
                );
                report.failed.push(api::Failure {
                    target: obj.id.clone(),
                    error,
                });
            }
        }
    }
    Ok(report)
}

fn classify<H: Host>(h: &H, e: &Entry) -> ArchiveClass {
    let Some(id) = e.name.strip_suffix(".jsonl.gz").filter(|id| !id.is_empty()) else {
        return ArchiveClass::Orphan;
    };
    let obj = match h.get_object(id) {
        Ok(o) => o,
        Err(objects::Error::NotFound(_)) | Err(objects::Error::Invalid(_)) => {
            return ArchiveClass::Orphan
        }
        Err(_) => return ArchiveClass::Unknown,
    };
    let Ok(meta) = Meta::parse(&obj.meta) else {
        return ArchiveClass::Unknown;
    };
    if meta.has_intent() {
        return ArchiveClass::InProgress;
    }
    // An unreadable pin counts as a pin: keeping an archive is never a loss.
    if meta.pinned() != Ok(false) {
        return ArchiveClass::Pinned;
    }
    match meta.archived_at() {
        Ok(Some(_)) => ArchiveClass::OnlyCopy,
        Ok(None) => ArchiveClass::Backup,
        Err(_) => ArchiveClass::Unknown,
    }
}

/// Lists the `.gz` files of the archive directory with their classes.
pub fn classify_archives<H: Host>(h: &H) -> Result<Vec<ArchiveInfo>, Error> {
    let entries = h.list_archives().map_err(|e| dir_err("list archives", e))?;
    Ok(entries
        .into_iter()
        .filter(|e| e.name.ends_with(".gz"))
        .map(|entry| ArchiveInfo {
            class: classify(h, &entry),
            entry,
        })
        .collect())
}

/// Deletes one picked archive after checking nothing changed since it was classified. Returns
/// whether a session was tombstoned, or `None` when it was left alone.
fn prune_one<H: Host>(h: &H, info: &ArchiveInfo) -> Result<Option<bool>, Error> {
    let name = info.entry.name.as_str();
    match h
        .stat_archive(name)
        .map_err(|e| dir_err("stat archive", e))?
    {
        Some(now) if now.size == info.entry.size && now.modified_ms == info.entry.modified_ms => {}
        _ => return Ok(None),
    }
    let class = classify(h, &info.entry);
    if class != info.class {
        return Ok(None);
    }
    match class {
        ArchiveClass::Backup | ArchiveClass::Orphan => {
            remove_if_present(h, name)?;
            Ok(Some(false))
        }
        ArchiveClass::OnlyCopy => {
            // Bug 5: meta never says "archived" without an archive. Tombstone first, then remove.
            let id = name.strip_suffix(".jsonl.gz").unwrap_or(name);
            let now = h.now_ms();
            let intent = Intent::Prune {
                at: now,
                name: name.to_string(),
            };
            update(
                h,
                id,
                Patch::new()
                    .clear_archived()
                    .set(keys::PRUNED_AT, now)
                    .intent(&intent),
            )?;
            remove_if_present(h, name)?;
            clear_intent(h, id)?;
            h.log(
                Level::Info,
                &format!("session {id}: pruned its only archive {name}; tombstone recorded"),
            );
            Ok(Some(true))
        }
        ArchiveClass::Pinned | ArchiveClass::InProgress | ArchiveClass::Unknown => Ok(None),
    }
}

/// Prunes archives down to the cap: see the WIT `policy.prune`.
pub fn prune<H: Host, D: Decisions>(h: &H, d: &D) -> Result<api::PruneReport, Error> {
    let archives = classify_archives(h)?;
    let picks = d.prune_plan_at(&archives, d.cap(), h.now_ms());
    let mut report = api::PruneReport {
        pruned: 0,
        tombstoned: 0,
        bytes_freed: 0,
        failed: Vec::new(),
    };
    for pick in picks {
        let Some(info) = archives.get(pick.index) else {
            continue;
        };
        match prune_one(h, info) {
            Ok(Some(tombstoned)) => {
                report.pruned += 1;
                report.tombstoned += u32::from(tombstoned);
                report.bytes_freed += info.entry.size;
            }
            Ok(None) => {}
            Err(error) => report.failed.push(api::Failure {
                target: info.entry.name.clone(),
                error,
            }),
        }
    }
    Ok(report)
}

fn skip_counts(counts: BTreeMap<String, u32>) -> Vec<api::SkipCount> {
    counts
        .into_iter()
        .map(|(reason, count)| api::SkipCount { reason, count })
        .collect()
}

/// Readable bytes of a session's live output; 0 when there is none or it cannot be stat'ed
/// (logged: under-counting only makes a budget policy archive less, never lose data).
fn live_bytes<H: Host>(h: &H, id: &str) -> u64 {
    match h.stat_file(id, OUTPUT) {
        Ok(Some(s)) => s.size - first_held(&s),
        Ok(None) => 0,
        Err(e) => {
            h.log(
                Level::Warn,
                &format!("session {id}: cannot stat live output: {e:?}"),
            );
            0
        }
    }
}

/// The policy's selection for every object, in order, with unreadable meta as its own skip
/// reason (never shown to the policy). Returns each object with its selection and its measured
/// live bytes (`None` when not measured).
fn select_objects<H: Host, D: Decisions>(
    h: &H,
    d: &D,
    objects: Vec<Object>,
    now: i64,
) -> Vec<(Object, Selection, Option<u64>)> {
    let measure = d.needs_live_bytes();
    let mut candidates = Vec::new();
    let mut slots: Vec<(Object, Result<usize, Selection>)> = Vec::with_capacity(objects.len());
    for obj in objects {
        match Meta::parse(&obj.meta) {
            Ok(meta) => {
                candidates.push(Candidate {
                    id: obj.id.clone(),
                    live_bytes: if measure { live_bytes(h, &obj.id) } else { 0 },
                    meta,
                });
                slots.push((obj, Ok(candidates.len() - 1)));
            }
            Err(e) => slots.push((
                obj,
                Err(Selection::Skip {
                    code: "invalid-meta".into(),
                    reason: e.to_string(),
                    candidate: true,
                }),
            )),
        }
    }
    let mut chosen = d.select_all(&candidates, now).into_iter();
    slots
        .into_iter()
        .map(|(obj, slot)| match slot {
            Ok(i) => {
                let sel = chosen.next().unwrap_or_else(|| Selection::Skip {
                    code: "policy-error".into(),
                    reason: "the policy returned no decision for this session".into(),
                    candidate: true,
                });
                let bytes = measure.then(|| candidates[i].live_bytes);
                (obj, sel, bytes)
            }
            Err(sel) => (obj, sel, None),
        })
        .collect()
}

/// A dry run of a sweep: see the WIT `policy.plan`. Only reads.
pub fn plan<H: Host, D: Decisions>(h: &H, d: &D) -> Result<api::SweepPlan, Error> {
    let now = h.now_ms();
    let mut scanned = 0u32;
    let mut decisions = Vec::new();
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    let mut objects = Vec::new();
    for_each_object(h, &mut |o| objects.push(o))?;
    for (obj, selection, measured) in select_objects(h, d, objects, now) {
        scanned += 1;
        match selection {
            Selection::Archive { reason } => {
                let bytes = measured.unwrap_or_else(|| live_bytes(h, &obj.id));
                decisions.push(api::Decision {
                    target: obj.id,
                    action: api::Action::Archive,
                    reason,
                    bytes,
                });
            }
            Selection::Skip {
                code,
                reason,
                candidate,
            } => {
                *counts.entry(code).or_default() += 1;
                if candidate {
                    decisions.push(api::Decision {
                        target: obj.id,
                        action: api::Action::Skip,
                        reason,
                        bytes: 0,
                    });
                }
            }
            Selection::Recover { reason } => {
                decisions.push(api::Decision {
                    target: obj.id,
                    action: api::Action::Recover,
                    reason,
                    bytes: 0,
                });
            }
        }
    }
    let archives = classify_archives(h)?;
    let total: u64 = archives.iter().map(|a| a.entry.size).sum();
    for pick in d.prune_plan_at(&archives, d.cap(), now) {
        if let Some(a) = archives.get(pick.index) {
            decisions.push(api::Decision {
                target: a.entry.name.clone(),
                action: api::Action::Prune,
                reason: pick.reason,
                bytes: a.entry.size,
            });
        }
    }
    Ok(api::SweepPlan {
        scanned,
        decisions,
        skipped: skip_counts(counts),
        archive_bytes: total,
        archive_cap: d.cap(),
    })
}

/// Recover, archive what the policy selects, prune: see the WIT `policy.sweep`.
pub fn sweep<H: Host, D: Decisions>(h: &H, d: &D) -> Result<api::SweepReport, Error> {
    let rec = recover(h, None)?;
    let now = h.now_ms();
    let mut objects = Vec::new();
    for_each_object(h, &mut |o| objects.push(o))?;
    let mut report = api::SweepReport {
        scanned: 0,
        archived: 0,
        recovered: rec.finished + rec.rolled_back,
        skipped: Vec::new(),
        failed: rec.failed,
        bytes_archived: 0,
        bytes_written: 0,
        prune: api::PruneReport {
            pruned: 0,
            tombstoned: 0,
            bytes_freed: 0,
            failed: Vec::new(),
        },
    };
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for (obj, selection, _) in select_objects(h, d, objects, now) {
        report.scanned += 1;
        match selection {
            Selection::Archive { .. } => match archive(h, &obj.id, d.level()) {
                Ok(o) if o.raw_bytes > 0 => {
                    report.archived += 1;
                    report.bytes_archived += o.raw_bytes;
                    report.bytes_written += o.archive_bytes;
                }
                Ok(_) => *counts.entry("empty".into()).or_default() += 1,
                Err(error) => report.failed.push(api::Failure {
                    target: obj.id,
                    error,
                }),
            },
            Selection::Skip { code, .. } => *counts.entry(code).or_default() += 1,
            // Recovery ran first; a session still busy failed there and is reported in `failed`.
            Selection::Recover { .. } => *counts.entry("busy".into()).or_default() += 1,
        }
    }
    report.skipped = skip_counts(counts);
    report.prune = match prune(h, d) {
        Ok(p) => p,
        Err(error) => api::PruneReport {
            pruned: 0,
            tombstoned: 0,
            bytes_freed: 0,
            failed: vec![api::Failure {
                target: "archive directory".into(),
                error,
            }],
        },
    };
    Ok(report)
}
