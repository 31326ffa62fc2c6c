//! `restore`: an archive back into the live file store, keeping output written after archiving.

use super::stream::{copy_file_range, gunzip_checked, Chunker};
use super::{
    archived_source, best_effort, clear_intent, delete_if_present, newer_start, parse_meta, update,
    Error, OUTPUT_FILE, SCRATCH,
};
use crate::bindings::exports::session_archiver::policy::policy as api;
use crate::host::{file_err, files, obj_err, Host, Level};
use crate::meta::{keys, Intent, Patch};

/// How often a restore re-copies output appended during the final rename before giving up.
const RENAME_ATTEMPTS: usize = 8;

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

    // A circular output comes back circular, with its capacity (a bad value is ignored: an
    // unbounded file loses nothing).
    let circular = meta
        .u64(keys::ARCHIVE_CIRCULAR_MAX_SIZE)
        .ok()
        .flatten()
        .filter(|m| *m > 0);
    let file_meta = match meta.get(keys::ARCHIVE_FILE_META) {
        Some(serde_json::Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let shape = Shape {
        circular,
        file_meta,
    };
    let newer = match restore_into_place(h, id, &name, raw_len, crc, &shape) {
        Ok(n) => n,
        Err(PlaceError::Failed(e)) => {
            best_effort(h, "delete scratch file", delete_if_present(h, id, SCRATCH));
            best_effort(h, "clear intent", clear_intent(h, id));
            return Err(e);
        }
        // The rename may have committed: the scratch file may now be `output`, and clearing the
        // intent would leave meta saying "archived" over restored bytes (a later restore would
        // duplicate them). Recovery reads `output` and decides.
        Err(PlaceError::OutcomeUnknown(e)) => {
            h.log(
                Level::Warn,
                &format!(
                    "session {id}: the rename of the restored output failed with an unknown \
                     outcome; the restore intent stays for recover to decide: {e:?}"
                ),
            );
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

/// Why a restore could not put its output in place.
enum PlaceError {
    /// Nothing was put in place: the scratch file can go and the intent can be cleared.
    Failed(Error),
    /// The final rename failed with an I/O error: it may or may not have committed.
    OutcomeUnknown(Error),
}

impl From<Error> for PlaceError {
    fn from(e: Error) -> Self {
        PlaceError::Failed(e)
    }
}

/// What the restored output is made like: the archived output's circular capacity and its own
/// file meta.
struct Shape {
    circular: Option<u64>,
    file_meta: serde_json::Map<String, serde_json::Value>,
}

/// Gives the scratch file the archived output's file meta, with the meta of the live output it
/// replaces (the app's newer settings) on top.
fn carry_file_meta<H: Host>(h: &H, id: &str, shape: &Shape, live: bool) -> Result<(), Error> {
    let mut meta = shape.file_meta.clone();
    if live {
        let text = h
            .get_file_meta(id, OUTPUT_FILE)
            .map_err(|e| file_err("read live output's file meta", e))?;
        if let Ok(serde_json::Value::Object(newer)) = serde_json::from_str(&text) {
            meta.extend(newer);
        }
    }
    if meta.is_empty() {
        return Ok(());
    }
    h.set_file_meta(id, SCRATCH, &serde_json::Value::Object(meta).to_string())
        .map_err(|e| file_err("set restored output's file meta", e))
}

/// Builds [`SCRATCH`] = archive bytes + live bytes, then renames it over `output` only if
/// the live file did not change since we copied it (nothing written after archiving is lost). Returns the number of live bytes kept.
fn restore_into_place<H: Host>(
    h: &H,
    id: &str,
    name: &str,
    raw_len: u64,
    crc: Option<u32>,
    shape: &Shape,
) -> Result<u64, PlaceError> {
    delete_if_present(h, id, SCRATCH)?;
    h.create_file(id, SCRATCH, shape.circular)
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
            .stat_file(id, OUTPUT_FILE)
            .map_err(|e| file_err("stat live output", e))?;
        if let Some(s) = &live {
            let first_copy = live_from.is_none();
            let mut delivered = 0u64;
            let copied = (|| {
                let from = match live_from {
                    Some(f) => f,
                    None => *live_from.insert(newer_start(h, id, s, name, raw_len, crc)?),
                };
                if first_copy {
                    pos = from;
                }
                if s.size < pos || created.is_some_and(|c| c != s.created_ms) {
                    return Err(Error::Conflict(format!(
                        "live output of {id} was replaced during restore"
                    )));
                }
                created = Some(s.created_ms);
                let mut chunker = Chunker::new(&mut append);
                copy_file_range(h, id, OUTPUT_FILE, pos, s.size, &mut |c| {
                    delivered += c.len() as u64;
                    chunker.push(c)
                })?;
                chunker.flush()
            })();
            match copied {
                Ok(()) => pos = s.size,
                // A circular output wrapped past the newer bytes' start before the first of
                // them was read: nothing of it reached the scratch file, so start over from a
                // fresh stat. Later a wrap would leave a gap: a conflict.
                Err(Error::Conflict(_)) if first_copy && delivered == 0 => {
                    (live_from, pos, created) = (None, 0, None);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        } else if live_from.is_some() {
            return Err(
                Error::Conflict(format!("live output of {id} was deleted during restore")).into(),
            );
        }
        carry_file_meta(h, id, shape, live.is_some())?;
        match h.rename_file_if_unchanged(id, SCRATCH, OUTPUT_FILE, live.as_ref()) {
            Ok(()) => return Ok(pos - live_from.unwrap_or(0)),
            Err(files::Error::Conflict(_)) => continue,
            Err(e @ files::Error::Io(_)) => {
                return Err(PlaceError::OutcomeUnknown(file_err(
                    "rename restored output into place",
                    e,
                )))
            }
            Err(e) => return Err(file_err("rename restored output into place", e).into()),
        }
    }
    Err(Error::Conflict(format!(
        "live output of {id} kept changing; restore gave up after {RENAME_ATTEMPTS} attempts"
    ))
    .into())
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::super::test_fixtures::*;

    use crate::fake::FakeHost;
    use crate::gzip;
    use crate::meta::keys;
    use crate::ops::{self, Error, OUTPUT_FILE, SCRATCH};

    #[test]
    fn restore_keeps_output_written_after_archiving_even_during_the_rename() {
        let h = host_with_session(b"old-1\nold-2\n");
        ops::archive(&h, ID, 6).unwrap();
        h.put_file(ID, OUTPUT_FILE, b"new-1\n");
        h.state.borrow_mut().append_before = Some((
            "files.rename-if-unchanged".into(),
            ID.into(),
            b"new-2\n".to_vec(),
        ));
        let r = ops::restore(&h, ID, u64::MAX).unwrap();
        assert_eq!(
            h.file(ID, OUTPUT_FILE).unwrap(),
            b"old-1\nold-2\nnew-1\nnew-2\n"
        );
        assert_eq!((r.archived_bytes, r.newer_bytes), (12, 12));
    }

    fn set_file_meta(h: &FakeHost, meta: &str) {
        let key = (ID.to_string(), OUTPUT_FILE.to_string());
        h.state.borrow_mut().files.get_mut(&key).unwrap().meta = meta.into();
    }

    fn file_meta(h: &FakeHost) -> serde_json::Value {
        let key = (ID.to_string(), OUTPUT_FILE.to_string());
        serde_json::from_str(&h.state.borrow().files[&key].meta).unwrap()
    }

    #[test]
    fn restore_puts_the_outputs_own_file_meta_back() {
        let h = host_with_session(b"a\n");
        set_file_meta(&h, r#"{"term:rows":40,"app:title":"build"}"#);
        ops::archive(&h, ID, 6).unwrap();
        assert_eq!(
            h.meta(ID)[keys::ARCHIVE_FILE_META],
            json!({"term:rows": 40, "app:title": "build"})
        );
        ops::restore(&h, ID, u64::MAX).unwrap();
        assert_eq!(
            file_meta(&h),
            json!({"term:rows": 40, "app:title": "build"})
        );
        assert!(h.meta(ID).get(keys::ARCHIVE_FILE_META).is_none(), "cleared");
    }

    #[test]
    fn restore_keeps_the_newer_outputs_file_meta_over_the_archived_one() {
        let h = host_with_session(b"a\n");
        set_file_meta(&h, r#"{"term:rows":40,"app:title":"build"}"#);
        ops::archive(&h, ID, 6).unwrap();
        h.put_file(ID, OUTPUT_FILE, b"b\n");
        set_file_meta(&h, r#"{"term:rows":50}"#);
        ops::restore(&h, ID, u64::MAX).unwrap();
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), b"a\nb\n");
        assert_eq!(
            file_meta(&h),
            json!({"term:rows": 50, "app:title": "build"})
        );
    }

    #[test]
    fn an_output_without_file_meta_records_none() {
        let h = host_with_session(b"a\n");
        ops::archive(&h, ID, 6).unwrap();
        assert!(h.meta(ID).get(keys::ARCHIVE_FILE_META).is_none());
        ops::restore(&h, ID, u64::MAX).unwrap();
        assert_eq!(file_meta(&h), json!({}));
    }

    #[test]
    fn restore_and_export_accept_a_meta_path_that_resolves_to_the_sessions_own_archive() {
        let h = host_with_session(b"x\n");
        ops::archive(&h, ID, 6).unwrap();
        let via_link = format!("{}/s1.jsonl.gz", crate::fake::FAKE_ARCHIVES_LINK);
        h.state
            .borrow_mut()
            .objects
            .get_mut(ID)
            .unwrap()
            .0
            .insert(keys::ARCHIVE_PATH.into(), json!(via_link));
        ops::export(&h, ID, u64::MAX).unwrap();
        assert_eq!(h.state.borrow().sink, b"x\n");
        ops::restore(&h, ID, u64::MAX).unwrap();
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), b"x\n");
        // Another session's archive through the same link is still refused.
        let h = host_with_session(b"x\n");
        ops::archive(&h, ID, 6).unwrap();
        let other = format!("{}/other.jsonl.gz", crate::fake::FAKE_ARCHIVES_LINK);
        h.state
            .borrow_mut()
            .objects
            .get_mut(ID)
            .unwrap()
            .0
            .insert(keys::ARCHIVE_PATH.into(), json!(other));
        assert!(matches!(
            ops::restore(&h, ID, u64::MAX),
            Err(Error::InvalidMeta(_))
        ));
    }

    #[test]
    fn restore_refuses_a_meta_path_that_is_not_the_sessions_own_archive() {
        let h = host_with_session(b"x\n");
        ops::archive(&h, ID, 6).unwrap();
        for bad in [
            "/etc/passwd",
            "/archives/other.jsonl.gz",
            "/archives/../s1.jsonl.gz",
        ] {
            h.state
                .borrow_mut()
                .objects
                .get_mut(ID)
                .unwrap()
                .0
                .insert(keys::ARCHIVE_PATH.into(), json!(bad));
            let calls_before = h.calls().len();
            let err = ops::restore(&h, ID, u64::MAX).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidMeta(m) if m.contains(bad)),
                "{err:?}"
            );
            assert!(
                !h.calls()[calls_before..]
                    .iter()
                    .any(|c| c == "archive-dir.open"),
                "nothing read for {bad}"
            );
            assert!(matches!(
                ops::export(&h, ID, u64::MAX),
                Err(Error::InvalidMeta(_))
            ));
        }
    }

    #[test]
    fn a_gzip_bomb_is_refused_on_restore_with_meta_untouched() {
        let h = host_with_session(b"x\n");
        ops::archive(&h, ID, 6).unwrap();
        let bomb = gzip::compress(&vec![0u8; 20 << 20], 9).unwrap();
        h.put_archive("s1.jsonl.gz", bomb, 1);
        let before = h.meta(ID);
        let err = ops::restore(&h, ID, u64::MAX).unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
        assert_eq!(h.meta(ID), before);
        assert!(h.file(ID, SCRATCH).is_none());
        // And a session recorded as larger than the configured limit is too large before any read.
        assert!(matches!(ops::restore(&h, ID, 1), Err(Error::TooLarge(_))));
    }

    #[test]
    fn multi_member_archives_restore_byte_exact() {
        let h = host_with_session(b"x\n");
        ops::archive(&h, ID, 6).unwrap();
        let (a, b) = (body(300), body(7));
        let mut gz = gzip::compress(&a, 1).unwrap();
        gz.extend(gzip::compress(&b, 9).unwrap());
        let mut all = a.clone();
        all.extend(&b);
        h.put_archive("s1.jsonl.gz", gz, 1);
        let patch =
            json!({ keys::ARCHIVED_BYTES: all.len(), keys::ARCHIVE_CRC32: crc32fast::hash(&all) });
        for (k, v) in patch.as_object().unwrap() {
            h.state
                .borrow_mut()
                .objects
                .get_mut(ID)
                .unwrap()
                .0
                .insert(k.clone(), v.clone());
        }
        ops::restore(&h, ID, u64::MAX).unwrap();
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), all);
    }
}
