//! The deterministic corpus: agent sessions of generated JSONL in real SQLite stores.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use serde_json::json;
use session_archiver::archive_dir::fs::FsArchiveDir;
use session_archiver::host::Stores;
use session_archiver::store::sqlite_files::SqliteFiles;
use session_archiver::store::sqlite_objects::SqliteObjects;
use session_archiver::store::{Clock, FileOpts, FileStore, Meta, SystemClock, OUTPUT_FILE};
use session_archiver_demo::{count_lines, session_jsonl};

use super::DAY_MS;

pub(crate) fn open_stores(dir: &Path) -> Result<Stores> {
    fs::create_dir_all(dir)?;
    Ok(Stores {
        objects: Arc::new(SqliteObjects::open(dir.join("objects.db"))?),
        files: Arc::new(SqliteFiles::open(dir.join("filestore.db"))?),
        archive_dir: Arc::new(FsArchiveDir::open(dir.join("archives"))?),
        clock: Arc::new(SystemClock),
    })
}

fn agent_meta(last_activity: i64, lines: u64) -> Meta {
    let mut m = Meta::new();
    m.insert("view".into(), json!("agent"));
    m.insert("session:last_activity_ms".into(), json!(last_activity));
    m.insert("session:line_count".into(), json!(lines));
    m
}

/// One agent session of about `size` bytes, idle since `idle_since`; also written to `raw`.
/// Returns its exact size.
pub(crate) fn create_session(
    dir: &Path,
    id: &str,
    seed: u64,
    size: u64,
    idle_since: i64,
    raw: Option<&Path>,
) -> Result<u64> {
    fs::create_dir_all(dir)?;
    let objects = SqliteObjects::open(dir.join("objects.db"))?;
    let files = SqliteFiles::open(dir.join("filestore.db"))?;
    let mut raw = raw.map(File::create).transpose()?;
    let (bytes, lines) = fill(&files, id, seed, size, raw.as_mut())?;
    objects.insert_many([(id, &agent_meta(idle_since, lines))])?;
    Ok(bytes)
}

/// Appends `session_jsonl(seed, size)` to a new `id/output`; returns (bytes, lines).
fn fill(
    files: &SqliteFiles,
    id: &str,
    seed: u64,
    size: u64,
    mut raw: Option<&mut File>,
) -> Result<(u64, u64)> {
    files.create(id, OUTPUT_FILE, FileOpts::default())?;
    let (mut bytes, mut lines) = (0, 0);
    for chunk in session_jsonl(seed, size) {
        files.append(id, OUTPUT_FILE, &chunk)?;
        if let Some(f) = raw.as_deref_mut() {
            f.write_all(&chunk)?;
        }
        bytes += chunk.len() as u64;
        lines += count_lines(&chunk);
    }
    Ok((bytes, lines))
}

/// `n` sessions none of which a sweep archives: mostly recently active agent sessions, some
/// non-agent blocks and pinned idle sessions.
pub(crate) fn create_noop_corpus(dir: &Path, n: usize) -> Result<()> {
    fs::create_dir_all(dir)?;
    let objects = SqliteObjects::open(dir.join("objects.db"))?;
    SqliteFiles::open(dir.join("filestore.db"))?;
    let now = SystemClock.now_ms();
    let items: Vec<(String, Meta)> = (0..n)
        .map(|i| {
            let id = format!("noop-{i:06}");
            let meta = match i % 10 {
                0 => {
                    let mut m = agent_meta(now - 30 * DAY_MS, 1000);
                    m.insert("view".into(), json!("term"));
                    m
                }
                1 => {
                    let mut m = agent_meta(now - 30 * DAY_MS, 1000);
                    m.insert("session:archive_pinned".into(), json!(true));
                    m
                }
                _ => agent_meta(now - (i as i64 % 3_600_000), 1000),
            };
            (id, meta)
        })
        .collect();
    objects.insert_many(items.iter().map(|(id, m)| (id.as_str(), m)))?;
    Ok(())
}

/// Idle sessions from 100 KB to 16 MB (doubling) until `total` bytes; every byte also appended
/// to `raw` for pigz. Returns (sessions, bytes).
pub(crate) fn create_sweep_corpus(dir: &Path, total: u64, raw: &Path) -> Result<(usize, u64)> {
    fs::create_dir_all(dir)?;
    let objects = SqliteObjects::open(dir.join("objects.db"))?;
    let files = SqliteFiles::open(dir.join("filestore.db"))?;
    let mut raw = File::create(raw)?;
    let idle = SystemClock.now_ms() - 10 * DAY_MS;
    let sizes: Vec<u64> = (0..8).map(|k| 100_000u64 << k).collect(); // 100 KB … 12.8 MB
    let (mut bytes, mut metas) = (0u64, Vec::new());
    let mut i = 0;
    while bytes < total {
        let size = sizes[i % sizes.len()].min(total - bytes).max(100_000);
        let id = format!("sweep-{i:04}");
        let (b, lines) = fill(&files, &id, 0x5eed + i as u64, size, Some(&mut raw))?;
        bytes += b;
        metas.push((id, agent_meta(idle, lines)));
        i += 1;
    }
    objects.insert_many(metas.iter().map(|(id, m)| (id.as_str(), m)))?;
    Ok((metas.len(), bytes))
}

/// Copies a closed data directory (both databases checkpointed: their connections are gone)
/// over `to`, removing whatever a previous round left.
pub(crate) fn copy_store(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        fs::remove_dir_all(to)?;
    }
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}
