//! One-session commands: `archive`, `restore`, `export`.

use std::io::{BufWriter, ErrorKind, Write};
use std::path::Path;

use anyhow::{Context, Result};
use session_archiver::archiver::ExportOutcome;
use session_archiver::bindings::guest::Source;
use session_archiver::error::ArchiverError;

use crate::cli::Global;
use crate::output::{self, bytes, ratio, ArchiveJson, RestoreJson};
use crate::setup;

pub fn archive(g: &Global, id: &str, json: bool) -> Result<()> {
    let s = setup::open(g)?;
    let served = s.archiver.archive(id)?;
    let o = &served.value;
    let path = match &o.archive_name {
        Some(name) => Some(
            s.archiver
                .stores()
                .archive_dir
                .path(name)
                .with_context(|| format!("resolving the path of archive {name}"))?,
        ),
        None => None,
    };
    if json {
        return output::print_json(&ArchiveJson {
            policy: served.policy,
            id: id.to_string(),
            raw_bytes: o.raw_bytes,
            archive_bytes: o.archive_bytes,
            archive_name: o.archive_name.clone(),
            archive_path: path,
            archived_at_ms: o.archived_at,
            crc32: o.crc32,
        });
    }
    match path {
        Some(path) if o.raw_bytes > 0 => out!(
            "archived {id}: {} -> {} ({}) in {path}",
            bytes(o.raw_bytes),
            bytes(o.archive_bytes),
            ratio(o.archive_bytes, o.raw_bytes)
        )?,
        _ => out!("nothing to archive in {id}: it has no live output")?,
    }
    Ok(())
}

pub fn restore(g: &Global, id: &str, json: bool) -> Result<()> {
    let s = setup::open(g)?;
    let served = s.archiver.restore(id)?;
    let o = &served.value;
    if json {
        return output::print_json(&RestoreJson {
            policy: served.policy,
            id: id.to_string(),
            archived_bytes: o.archived_bytes,
            newer_bytes: o.newer_bytes,
        });
    }
    if o.newer_bytes > 0 {
        out!(
            "restored {id}: {} from the archive, {} written since archiving kept after it",
            bytes(o.archived_bytes),
            bytes(o.newer_bytes)
        )?;
    } else {
        out!(
            "restored {id}: {} from the archive",
            bytes(o.archived_bytes)
        )?;
    }
    Ok(())
}

/// Streams to stdout or, with `-o`, to a temp file renamed into place on success. A reader that
/// goes away (`| head`) ends the export quietly.
pub fn export(g: &Global, id: &str, output: Option<&Path>) -> Result<()> {
    let s = setup::open_read_only(g)?;
    let outcome = match output {
        None => {
            let out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            match s.archiver.export(id, out) {
                Err(ArchiverError::Io { source, .. }) if source.kind() == ErrorKind::BrokenPipe => {
                    return Ok(());
                }
                other => other?.value,
            }
        }
        Some(path) => export_to_file(&s.archiver, id, path)?,
    };
    if !g.quiet {
        let from = match outcome.source {
            Source::Live => "the live store",
            Source::Archive => "the archive",
            Source::ArchiveAndLive => "the archive and the live store",
            Source::Empty => "nowhere (the session has no output)",
        };
        let to = output.map_or("stdout".to_string(), |p| p.display().to_string());
        eprintln!(
            "exported {} lines ({}) of {id} from {from} to {to}",
            outcome.lines,
            bytes(outcome.bytes)
        );
    }
    Ok(())
}

fn export_to_file(
    archiver: &session_archiver::archiver::Archiver,
    id: &str,
    path: &Path,
) -> Result<ExportOutcome> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".archiver-export-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    let mut out = BufWriter::with_capacity(1 << 16, tmp);
    let outcome = archiver.export(id, &mut out)?.value;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    let tmp = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    // On any error above, dropping `tmp` deletes the temp file: no partial output remains.
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the export into {}", path.display()))?;
    Ok(outcome)
}
