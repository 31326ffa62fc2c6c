//! `export`: a session's bytes to the export sink, from the archive, then the live file.

use super::stream::{copy_live_tail, gunzip_checked, Chunker};
use super::{archived_source, first_held, newer_start, parse_meta, Error};
use crate::bindings::exports::session_archiver::policy::policy as api;
use crate::host::{obj_err, sink_err, Host};
use crate::lines::LineCounter;

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
    let mut archived = None;
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
        archived = Some((name, raw_len, crc));
    }
    let from_archive = archived.is_some();
    let live_start = bytes;
    // Racing the app: a circular file that wraps before the first live byte is read starts
    // over from a fresh stat; a wrap after that is a conflict (see `copy_live_tail`).
    copy_live_tail(
        h,
        id,
        &mut |s| match &archived {
            Some((name, raw_len, crc)) => newer_start(h, id, s, name, *raw_len, *crc),
            None => Ok(first_held(s)),
        },
        &mut |c| {
            lines.update(c);
            bytes += c.len() as u64;
            chunker.push(c)
        },
    )?;
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

#[cfg(test)]
mod tests {

    use super::super::test_fixtures::*;
    use crate::bindings::exports::session_archiver::policy::policy as api;

    use crate::ops::{self, OUTPUT_FILE};

    #[test]
    fn export_streams_archive_then_live_and_counts_non_blank_lines() {
        let h = host_with_session(b"a\n\n  \nb\n");
        ops::archive(&h, ID, 6).unwrap();
        h.put_file(ID, OUTPUT_FILE, b"c\n");
        let out = ops::export(&h, ID, u64::MAX).unwrap();
        assert_eq!(h.state.borrow().sink, b"a\n\n  \nb\nc\n");
        assert_eq!(
            (out.bytes, out.lines, out.source),
            (10, 3, api::Source::ArchiveAndLive)
        );
        h.state.borrow_mut().files.clear();
        h.state.borrow_mut().sink.clear();
        assert_eq!(
            ops::export(&h, ID, u64::MAX).unwrap().source,
            api::Source::Archive
        );
        ops::restore(&h, ID, u64::MAX).unwrap();
        assert_eq!(
            ops::export(&h, ID, u64::MAX).unwrap().source,
            api::Source::Live
        );
        h.state.borrow_mut().files.clear();
        assert_eq!(
            ops::export(&h, ID, u64::MAX).unwrap().source,
            api::Source::Empty
        );
    }
}
