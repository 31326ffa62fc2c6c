//! `archive`: live output into a verified gzip archive, recorded in meta, then the live copy
//! deleted only if it did not change meanwhile.

use super::stream::{copy_file_range, verify_archive, verify_members, write_archive};
use super::{
    archive_name, best_effort, clear_intent, entry_record, first_held, parse_meta,
    remove_if_present, stat_record, update, Error, OUTPUT_FILE,
};
use crate::bindings::exports::session_archiver::policy::policy as api;
use crate::decisions::{Parallel, MAX_MEMBER_BYTES};
use crate::gzip::{seal_index, GzDecoder, GzEncoder};
use crate::host::{dir_err, file_err, files, obj_err, Host, Level};
use crate::meta::{keys, EntryRecord, Intent, Meta, Patch};

fn noop_outcome(now: i64) -> api::ArchiveOutcome {
    api::ArchiveOutcome {
        raw_bytes: 0,
        archive_bytes: 0,
        archive_name: None,
        archived_at: now,
        crc32: 0,
    }
}

/// Archives one session: see the WIT `policy.archive`. Sessions of the default
/// [`Parallel::min_bytes`] or more take the parallel-member path.
pub fn archive<H: Host>(h: &H, id: &str, level: u8) -> Result<api::ArchiveOutcome, Error> {
    archive_with(h, id, level, Parallel::default())
}

/// Compresses `output[offset, offset + length)` of `id` into one complete gzip member: see the
/// WIT `policy.compress-member`. A range the file no longer holds is a conflict.
pub fn compress_member<H: Host>(
    h: &H,
    id: &str,
    offset: u64,
    length: u64,
    level: u8,
) -> Result<api::Member, Error> {
    if length == 0 || length > MAX_MEMBER_BYTES {
        return Err(Error::Invalid(format!(
            "member of {length} bytes (must be 1..={MAX_MEMBER_BYTES})"
        )));
    }
    let end = offset
        .checked_add(length)
        .ok_or_else(|| Error::Invalid(format!("member range {offset} + {length} overflows")))?;
    // Indexed: restore and export find the member's end from its header and inflate members in
    // parallel.
    let mut enc = GzEncoder::indexed(level)?;
    let mut bytes = Vec::new();
    copy_file_range(h, id, OUTPUT_FILE, offset, end, &mut |data| {
        bytes.extend(enc.write(data)?);
        Ok(())
    })?;
    let (raw_len, crc32) = (enc.raw_len(), enc.crc32());
    bytes.extend(enc.finish()?);
    seal_index(&mut bytes, raw_len)?;
    Ok(api::Member {
        raw_len,
        crc32,
        bytes,
    })
}

/// Checks that `member` is one complete gzip member of `raw_len` bytes with CRC-32 `crc32`: see
/// the WIT `policy.verify-member`.
pub fn verify_member(member: &[u8], raw_len: u64, crc32: u32) -> Result<(), Error> {
    let mut dec = GzDecoder::new(raw_len);
    dec.write::<Error>(member, &mut |_| Ok(()))
        .map_err(|e| Error::Corrupt(format!("member does not inflate: {e:?}")))?;
    let got = dec
        .finish()
        .map_err(|e| Error::Corrupt(format!("member does not inflate: {e}")))?;
    if got.members != 1 || got.raw_len != raw_len || got.crc32 != crc32 {
        return Err(Error::Corrupt(format!(
            "member holds {} gzip member(s) of {} bytes with CRC-32 {:#010x}, expected one of \
             {raw_len} bytes with {crc32:#010x}",
            got.members, got.raw_len, got.crc32
        )));
    }
    Ok(())
}

/// Inflates `member`, one complete gzip member of exactly `raw_len` bytes: see the WIT
/// `policy.inflate-member`.
pub fn inflate_member(member: &[u8], raw_len: u64) -> Result<api::Inflated, Error> {
    if raw_len > MAX_MEMBER_BYTES {
        return Err(Error::Invalid(format!(
            "member of {raw_len} bytes (must be at most {MAX_MEMBER_BYTES})"
        )));
    }
    let mut bytes = Vec::with_capacity(raw_len as usize);
    let mut dec = GzDecoder::new(raw_len);
    let fed = dec.write::<Error>(member, &mut |c| {
        bytes.extend_from_slice(c);
        Ok(())
    });
    let got = fed
        .and_then(|()| Ok(dec.finish()?))
        .map_err(|e| Error::Corrupt(format!("member does not inflate: {}", describe(&e))))?;
    if got.members != 1 || got.raw_len != raw_len {
        return Err(Error::Corrupt(format!(
            "member holds {} gzip member(s) of {} bytes, expected one of {raw_len} bytes",
            got.members, got.raw_len
        )));
    }
    Ok(api::Inflated {
        bytes,
        crc32: got.crc32,
    })
}

/// The message of a decode error without its variant's name.
fn describe(e: &Error) -> String {
    match e {
        Error::Corrupt(m) | Error::TooLarge(m) | Error::Io(m) | Error::Invalid(m) => m.clone(),
        other => format!("{other:?}"),
    }
}

/// [`archive`] with the policy's [`Parallel`] settings.
pub fn archive_with<H: Host>(
    h: &H,
    id: &str,
    level: u8,
    parallel: Parallel,
) -> Result<api::ArchiveOutcome, Error> {
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
        .stat_file(id, OUTPUT_FILE)
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
    let file_meta = own_file_meta(h, id)?;
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
    let written =
        match write_archive(h, id, &name, from, stat.size, level, parallel).and_then(|w| {
            match &w.members {
                // Parallel members are read back and checked member by member in parallel.
                Some(members) => verify_members(h, &name, members)?,
                None => verify_archive(h, &name, w.raw_len, Some(w.crc32))?,
            }
            Ok(w)
        }) {
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
        .set_opt(keys::ARCHIVE_CIRCULAR_MAX_SIZE, stat.circular_max_size)
        .set_opt(keys::ARCHIVE_FILE_META, file_meta)
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

    match h.delete_file_if_unchanged(id, OUTPUT_FILE, &stat) {
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
pub(super) fn remove_ours<H: Host>(h: &H, name: &str, intent: &Intent) -> Result<(), Error> {
    let now = h
        .stat_archive(name)
        .map_err(|e| dir_err("stat archive", e))?;
    match now {
        None => Ok(()),
        Some(e) if Some(entry_record(&e)) == intent_previous(intent) => Ok(()),
        Some(_) => remove_if_present(h, name),
    }
}

/// The live output's own file meta, to record beside the archive (`None` when it has none, so
/// meta stays as the seed wrote it for ordinary sessions). Meta the host hands back unreadable
/// is not worth refusing the archive for: it is logged and left out.
fn own_file_meta<H: Host>(h: &H, id: &str) -> Result<Option<serde_json::Value>, Error> {
    let text = h
        .get_file_meta(id, OUTPUT_FILE)
        .map_err(|e| file_err("read live output's file meta", e))?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(m)) if m.is_empty() => Ok(None),
        Ok(v @ serde_json::Value::Object(_)) => Ok(Some(v)),
        _ => {
            h.log(
                Level::Warn,
                &format!("session {id}: the output's file meta is not a JSON object; not kept"),
            );
            Ok(None)
        }
    }
}

/// The patch that takes back an archive record, restoring the keys it replaced.
fn undo_archived_patch(before: &Meta) -> Patch {
    Patch::new()
        .clear_archived()
        .set_opt(keys::RESTORED_AT, before.get(keys::RESTORED_AT).cloned())
        .set_opt(keys::PRUNED_AT, before.get(keys::PRUNED_AT).cloned())
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::super::test_fixtures::*;

    use crate::fake::FakeHost;
    use crate::gzip;
    use crate::meta::keys;
    use crate::ops::{self, Error, OUTPUT_FILE, SCRATCH};

    #[test]
    fn archive_then_restore_round_trips_and_keeps_the_archive_as_a_backup() {
        let data = body(5000);
        let h = host_with_session(&data);
        let out = ops::archive(&h, ID, 6).unwrap();
        assert_eq!(out.raw_bytes, data.len() as u64);
        assert_eq!(out.crc32, crc32fast::hash(&data));
        assert_eq!(out.archive_name.as_deref(), Some("s1.jsonl.gz"));
        assert_eq!(h.file(ID, OUTPUT_FILE), None, "live copy freed");
        let gz = h.archive("s1.jsonl.gz").unwrap();
        assert_eq!(out.archive_bytes, gz.len() as u64);
        assert_eq!(gzip::decompress(&gz, u64::MAX).unwrap(), data);
        let m = h.meta(ID);
        assert_eq!(m[keys::ARCHIVED_AT], NOW);
        assert_eq!(m[keys::ARCHIVED_BYTES], data.len() as u64);
        assert_eq!(m[keys::ARCHIVE_PATH], "/archives/s1.jsonl.gz");
        assert_eq!(m[keys::ARCHIVE_CRC32], crc32fast::hash(&data));
        assert!(m.get(keys::INTENT).is_none());

        let r = ops::restore(&h, ID, u64::MAX).unwrap();
        assert_eq!((r.archived_bytes, r.newer_bytes), (data.len() as u64, 0));
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), data);
        assert!(
            h.archive("s1.jsonl.gz").is_some(),
            "the .gz stays as a backup"
        );
        let m = h.meta(ID);
        for k in keys::ARCHIVED_KEYS {
            assert!(m.get(k).is_none(), "{k} cleared");
        }
        assert_eq!(m[keys::RESTORED_AT], NOW);
        assert!(h.file(ID, SCRATCH).is_none());
    }

    #[test]
    fn a_large_session_is_archived_as_members_whose_crcs_combine_into_the_whole_files() {
        let data = body(20_000);
        let h = host_with_session(&data);
        let parallel = crate::decisions::Parallel {
            min_bytes: 1000,
            member_bytes: 100_000,
        };
        let out = ops::archive_with(&h, ID, 6, parallel).unwrap();
        assert_eq!(out.raw_bytes, data.len() as u64);
        assert_eq!(out.crc32, crc32fast::hash(&data));
        assert!(h
            .calls()
            .iter()
            .any(|c| c.starts_with("members.write-members")));
        let gz = h.archive("s1.jsonl.gz").unwrap();
        let mut dec = gzip::GzDecoder::new(u64::MAX);
        let mut back = Vec::new();
        dec.write::<gzip::GzError>(&gz, &mut |c| {
            back.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        let summary = dec.finish().unwrap();
        let want_members = data.len().div_ceil(100_000) as u32;
        assert!(want_members > 1, "the body spans several members");
        assert_eq!(summary.members, want_members);
        assert_eq!(back, data);
        assert_eq!(h.meta(ID)[keys::ARCHIVE_CRC32], crc32fast::hash(&data));
        assert_eq!(h.file(ID, OUTPUT_FILE), None, "live copy freed");
        let r = ops::restore(&h, ID, u64::MAX).unwrap();
        assert_eq!(r.archived_bytes, data.len() as u64);
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), data);
    }

    /// A session archived as indexed members of 100 000 bytes; returns its bytes and host.
    fn archived_in_members() -> (Vec<u8>, FakeHost) {
        let data = body(20_000);
        let h = host_with_session(&data);
        let parallel = crate::decisions::Parallel {
            min_bytes: 1000,
            member_bytes: 100_000,
        };
        ops::archive_with(&h, ID, 6, parallel).unwrap();
        (data, h)
    }

    /// Offsets of the archive's members, from their indexes.
    fn member_offsets(gz: &[u8]) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < gz.len() {
            let gzip::MemberIndex::Indexed { gz_len, raw_len } = gzip::member_index(&gz[at..])
            else {
                panic!("member at {at} has no index");
            };
            out.push((at, raw_len));
            at += gz_len as usize;
        }
        assert_eq!(at, gz.len(), "the indexes tile the file");
        out
    }

    #[test]
    fn restore_and_export_of_indexed_members_go_through_the_inflater_and_match_the_decoder() {
        let (data, h) = archived_in_members();
        let gz = h.archive("s1.jsonl.gz").unwrap();
        let offsets = member_offsets(&gz);
        assert_eq!(offsets.len(), data.len().div_ceil(100_000));
        assert!(offsets.iter().rev().skip(1).all(|&(_, raw)| raw == 100_000));

        ops::export(&h, ID, u64::MAX).unwrap();
        assert_eq!(std::mem::take(&mut h.state.borrow_mut().sink), data);
        let pushes = |h: &FakeHost| {
            h.calls()
                .iter()
                .filter(|c| *c == "members.inflater.push")
                .count()
        };
        assert_eq!(
            pushes(&h),
            offsets.len(),
            "every member went to the inflater"
        );

        // The same export with a host that has no helpers: inflated here, same bytes.
        h.state.borrow_mut().no_inflater = true;
        h.state.borrow_mut().calls.clear();
        ops::export(&h, ID, u64::MAX).unwrap();
        assert_eq!(std::mem::take(&mut h.state.borrow_mut().sink), data);
        assert_eq!(pushes(&h), 0);

        h.state.borrow_mut().no_inflater = false;
        let r = ops::restore(&h, ID, u64::MAX).unwrap();
        assert_eq!(r.archived_bytes, data.len() as u64);
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), data);
    }

    #[test]
    fn a_damaged_member_is_corrupt_by_number_and_restore_keeps_the_archive() {
        let (_, h) = archived_in_members();
        let gz = h.archive("s1.jsonl.gz").unwrap();
        let (at, _) = member_offsets(&gz)[1];
        h.state
            .borrow_mut()
            .archives
            .get_mut("s1.jsonl.gz")
            .unwrap()
            .0[at + gzip::INDEX_HEADER_LEN + 40] ^= 0x55;
        let err = ops::restore(&h, ID, u64::MAX).unwrap_err();
        let Error::Corrupt(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("member 2"), "{msg}");
        assert!(h.archive("s1.jsonl.gz").is_some());
        assert!(
            h.meta(ID).get(keys::ARCHIVED_AT).is_some(),
            "still archived"
        );
        assert!(h.file(ID, OUTPUT_FILE).is_none() && h.file(ID, SCRATCH).is_none());
    }

    #[test]
    fn a_member_without_a_usable_index_is_inflated_here_and_a_wrong_one_is_corrupt() {
        let (data, h) = archived_in_members();
        let gz = h.archive("s1.jsonl.gz").unwrap();
        let (at, _) = member_offsets(&gz)[2];
        let set_gz_len = |v: u32| {
            let mut s = h.state.borrow_mut();
            let file = &mut s.archives.get_mut("s1.jsonl.gz").unwrap().0;
            file[at + 16..at + 20].copy_from_slice(&v.to_le_bytes());
        };
        // An implausible length: members 1-2 go to the inflater, the rest is decoded here.
        set_gz_len(3);
        h.state.borrow_mut().calls.clear();
        ops::export(&h, ID, u64::MAX).unwrap();
        assert_eq!(std::mem::take(&mut h.state.borrow_mut().sink), data);
        let pushes = h
            .calls()
            .iter()
            .filter(|c| *c == "members.inflater.push")
            .count();
        assert_eq!(pushes, 2);
        // A plausible but wrong length cuts the member short: that is damage, never data.
        let real = gzip::member_index(&gz[at..]);
        let gzip::MemberIndex::Indexed { gz_len, .. } = real else {
            panic!("{real:?}")
        };
        set_gz_len(gz_len as u32 - 1);
        let err = ops::export(&h, ID, u64::MAX).unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn a_truncated_indexed_archive_is_corrupt() {
        let (_, h) = archived_in_members();
        for cut in [1, 9, 5000] {
            let gz = h.archive("s1.jsonl.gz").unwrap();
            let (at, _) = member_offsets(&gz)[1];
            let keep = at + cut;
            h.state
                .borrow_mut()
                .archives
                .get_mut("s1.jsonl.gz")
                .unwrap()
                .0
                .truncate(keep);
            let err = ops::export(&h, ID, u64::MAX).unwrap_err();
            assert!(matches!(err, Error::Corrupt(_)), "cut at {keep}: {err:?}");
            h.state
                .borrow_mut()
                .archives
                .get_mut("s1.jsonl.gz")
                .unwrap()
                .0 = gz;
        }
    }

    #[test]
    fn an_inflater_failure_fails_the_export_cleanly() {
        let (_, h) = archived_in_members();
        for call in [
            "members.start-inflate",
            "members.inflater.push",
            "members.inflater.next",
        ] {
            h.state.borrow_mut().fail_next.push(call.into());
            let err = ops::export(&h, ID, u64::MAX).unwrap_err();
            assert!(matches!(err, Error::Io(_)), "{call}: {err:?}");
        }
    }

    #[test]
    fn inflate_member_gives_the_bytes_and_crc_of_exactly_one_member() {
        let data = body(3000);
        let gz = gzip::compress(&data, 6).unwrap();
        let m = ops::inflate_member(&gz, data.len() as u64).unwrap();
        assert_eq!(
            (m.bytes.as_slice(), m.crc32),
            (&data[..], crc32fast::hash(&data))
        );
        for bad in [
            ops::inflate_member(&gz, data.len() as u64 - 1),
            ops::inflate_member(&gz, data.len() as u64 + 1),
            ops::inflate_member(&gz[..gz.len() - 1], data.len() as u64),
            ops::inflate_member(&[gz.clone(), gz.clone()].concat(), 2 * data.len() as u64),
        ] {
            assert!(matches!(bad, Err(Error::Corrupt(_))), "{bad:?}");
        }
        assert!(matches!(
            ops::inflate_member(&gz, crate::decisions::MAX_MEMBER_BYTES + 1),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn a_failed_member_write_keeps_the_live_copy_and_leaves_no_archive_or_intent() {
        let data = body(5000);
        let h = host_with_session(&data);
        h.state
            .borrow_mut()
            .fail_next
            .push("members.write-members".into());
        let parallel = crate::decisions::Parallel {
            min_bytes: 1,
            member_bytes: 10_000,
        };
        assert!(ops::archive_with(&h, ID, 6, parallel).is_err());
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), data);
        assert!(h.archive("s1.jsonl.gz").is_none());
        assert!(h.meta(ID).get(keys::INTENT).is_none());
    }

    #[test]
    fn parallel_members_that_do_not_read_back_keep_the_live_copy() {
        let data = body(20_000);
        let h = host_with_session(&data);
        h.state.borrow_mut().corrupt_next_commit = true;
        let parallel = crate::decisions::Parallel {
            min_bytes: 1000,
            member_bytes: 100_000,
        };
        let err = ops::archive_with(&h, ID, 6, parallel).unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
        assert!(h
            .calls()
            .iter()
            .any(|c| c.starts_with("members.verify-members")));
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), data);
        assert!(h.archive("s1.jsonl.gz").is_none(), "bad archive removed");
        let m = h.meta(ID);
        assert!(m.get(keys::ARCHIVED_AT).is_none() && m.get(keys::INTENT).is_none());
    }

    #[test]
    fn a_member_verifies_only_against_its_own_length_and_crc() {
        let data = body(3000);
        let gz = gzip::compress(&data, 6).unwrap();
        let crc = crc32fast::hash(&data);
        assert!(ops::verify_member(&gz, data.len() as u64, crc).is_ok());
        assert!(ops::verify_member(&gz, data.len() as u64 - 1, crc).is_err());
        assert!(ops::verify_member(&gz, data.len() as u64, crc ^ 1).is_err());
        assert!(ops::verify_member(&gz[..gz.len() - 1], data.len() as u64, crc).is_err());
        let two = [gz.clone(), gzip::compress(b"", 6).unwrap()].concat();
        assert!(
            ops::verify_member(&two, data.len() as u64, crc).is_err(),
            "one member only"
        );
    }

    #[test]
    fn crc32_combine_matches_the_crc_of_the_concatenation() {
        let (a, b) = (body(300), body(700));
        let whole: Vec<u8> = a.iter().chain(&b).copied().collect();
        assert_eq!(
            gzip::crc32_combine(crc32fast::hash(&a), crc32fast::hash(&b), b.len() as u64),
            crc32fast::hash(&whole)
        );
        assert_eq!(
            gzip::crc32_combine(0, crc32fast::hash(&a), a.len() as u64),
            crc32fast::hash(&a)
        );
    }

    #[test]
    fn archiving_missing_or_empty_output_is_a_no_op_reporting_zero_bytes() {
        let h = host_with_session(b"");
        let out = ops::archive(&h, ID, 6).unwrap();
        assert_eq!((out.raw_bytes, out.archive_name), (0, None));
        h.state.borrow_mut().files.clear();
        assert_eq!(ops::archive(&h, ID, 6).unwrap().raw_bytes, 0);
        assert!(h.state.borrow().archives.is_empty());
        assert!(meta_i64(&h, keys::ARCHIVED_AT).is_none());
    }

    #[test]
    fn archiving_an_archived_session_is_refused_so_its_only_copy_is_never_overwritten() {
        let h = host_with_session(b"a\n");
        ops::archive(&h, ID, 6).unwrap();
        let before = h.archive("s1.jsonl.gz");
        h.put_file(ID, OUTPUT_FILE, b"newer\n");
        assert!(matches!(ops::archive(&h, ID, 6), Err(Error::Conflict(_))));
        assert_eq!(h.archive("s1.jsonl.gz"), before);
    }

    #[test]
    fn a_crash_before_commit_leaves_no_archive_and_the_live_copy() {
        let data = body(100);
        let h = host_with_session(&data);
        h.crash_at("commit", 0, false);
        assert!(catch_unwind(AssertUnwindSafe(|| ops::archive(&h, ID, 6))).is_err());
        assert!(h.archive("s1.jsonl.gz").is_none());
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), data);
        let rep = ops::recover(&h, ID).unwrap();
        assert_eq!((rep.examined, rep.rolled_back), (1, 1));
        assert!(h.meta(ID).get(keys::INTENT).is_none());
    }

    #[test]
    fn an_archive_that_does_not_read_back_keeps_the_live_copy() {
        let data = body(3000);
        let h = host_with_session(&data);
        h.state.borrow_mut().corrupt_next_commit = true;
        let err = ops::archive(&h, ID, 6).unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), data);
        assert!(h.archive("s1.jsonl.gz").is_none(), "bad archive removed");
        let m = h.meta(ID);
        assert!(m.get(keys::ARCHIVED_AT).is_none() && m.get(keys::INTENT).is_none());
    }

    #[test]
    fn output_appended_during_archive_survives_and_the_archive_is_dropped() {
        let data = body(100);
        let h = host_with_session(&data);
        h.state.borrow_mut().append_before = Some((
            "files.delete-if-unchanged".into(),
            ID.into(),
            b"late\n".to_vec(),
        ));
        let err = ops::archive(&h, ID, 6).unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err:?}");
        let mut want = data.clone();
        want.extend_from_slice(b"late\n");
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), want);
        assert!(h.archive("s1.jsonl.gz").is_none());
        let m = h.meta(ID);
        for k in keys::ARCHIVED_KEYS.iter().chain([&keys::INTENT]) {
            assert!(m.get(*k).is_none(), "{k} left behind");
        }
    }

    #[test]
    fn a_circular_output_archives_the_bytes_it_still_holds() {
        let h = host_with_session(b"");
        {
            let mut s = h.state.borrow_mut();
            let f = s
                .files
                .get_mut(&(ID.to_string(), OUTPUT_FILE.to_string()))
                .unwrap();
            f.circular = Some(4);
            f.held = b"cdef".to_vec();
            f.size = 6;
        }
        let out = ops::archive(&h, ID, 6).unwrap();
        assert_eq!(out.raw_bytes, 4);
        assert_eq!(
            gzip::decompress(&h.archive("s1.jsonl.gz").unwrap(), 10).unwrap(),
            b"cdef"
        );
        assert!(h.state.borrow().logs.iter().any(|l| l.contains("circular")));
    }
}
