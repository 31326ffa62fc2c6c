//! The operations every policy shares: archive, restore, export, recover, prune and plan, one
//! file each, with the streaming helpers they use in `stream`.
//!
//! A policy differs only in its [`Decisions`](crate::decisions::Decisions) (which sessions to
//! archive, which archives to prune, how hard to compress). Everything here follows one safety
//! rule: the live copy of a session's output is removed only after a verified archive is durable
//! and recorded, and only if the live file did not change meanwhile; an intent in meta is
//! recorded before the first side effect so [`recover`] can finish or undo any step a crash
//! interrupted.

mod archive;
mod export;
mod plan;
mod prune;
mod recover;
mod restore;
mod stream;
#[cfg(test)]
mod test_fixtures;

use crate::bindings::exports::session_archiver::policy::policy as api;
use crate::host::{
    archive_dir, dir_err, file_err, files, obj_err, Entry, FileStat, Host, Level, Object,
};
use crate::meta::{keys, EntryRecord, Meta, Patch, StatRecord};

pub use api::Error;
pub use archive::{archive, archive_with, compress_member, inflate_member, verify_member};
pub use export::export;
pub use plan::plan;
pub use prune::{classify_archives, prune};
pub use recover::recover;
pub use restore::restore;
pub use stream::{copy_file_range, gunzip_archive, verify_archive};

/// The session's live output file (the seed's `OUTPUT_FILENAME`).
pub const OUTPUT_FILE: &str = "output";
/// Scratch file a restore builds before renaming it over `output`. Exactly as long as `output`
/// on purpose: the rename rewrites the name in every 64 KiB part row, and SQLite overwrites a
/// same-size row in place, touching only the page holding the name, while a longer or shorter
/// name makes it copy every part through the WAL (measured: 30 ms instead of 350 ms for 64 MiB).
pub const SCRATCH: &str = "outnew";
/// Bytes moved per host call: guest memory stays at a few MiB whatever the session size.
pub const CHUNK: usize = 1 << 20;
/// Objects per `objects.list` page.
pub const PAGE: u32 = 500;

/// The archive name of a session (the seed's `<id>.jsonl.gz`).
pub fn archive_name(id: &str) -> String {
    format!("{id}.jsonl.gz")
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

/// Where the live file's bytes written after archiving start. Normally where the file starts;
/// but when the seed archived the session and failed to delete the live file (it only logged
/// that), the live file still begins with the archived bytes (same length, same CRC-32): then the
/// newer bytes start after them, so restore and export count the archived bytes once.
///
/// Only for the seed's archives, recognised by having no CRC in meta: this archiver records the
/// CRC and always removes the live file it archived before the archive counts, so a live file
/// beside one of its archives is new output, even when it happens to repeat the archived bytes
/// (a reopened session writing the same first line again) — dropping it would lose it.
fn newer_start<H: Host>(
    h: &H,
    id: &str,
    live: &FileStat,
    archive: &str,
    raw_len: u64,
    crc: Option<u32>,
) -> Result<u64, Error> {
    let start = first_held(live);
    if crc.is_some() || start != 0 || raw_len == 0 || live.size < raw_len {
        return Ok(start);
    }
    let want = gunzip_archive(h, archive, raw_len, &mut |_| Ok(()))?.crc32;
    let mut hasher = crc32fast::Hasher::new();
    copy_file_range(h, id, OUTPUT_FILE, 0, raw_len, &mut |c| {
        hasher.update(c);
        Ok(())
    })?;
    if hasher.finalize() != want {
        return Ok(start);
    }
    h.log(
        Level::Info,
        &format!(
            "session {id}: the live output still holds the {raw_len} archived bytes (never \
             deleted after archiving); counting them once"
        ),
    );
    Ok(raw_len)
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

/// The archive an archived session's meta points at, checked: it must be this session's own
/// `<id>.jsonl.gz` in the archive directory (never follow a path from meta).
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
        // Spelled differently (a symlinked or moved data directory, a path the seed recorded
        // unresolved) but the host resolves it to this session's archive here.
        Some(p)
            if h.is_archive_path_of(p, &name)
                .map_err(|e| dir_err("archive path", e))? => {}
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
