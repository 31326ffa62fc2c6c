//! `demo`: a realistic demo data directory in the app's SQLite layout.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use session_archiver::data_dir::{find_objects_db, store_blocks_as_blob, DataDirPaths};
use session_archiver::store::{Clock, SystemClock};
use session_archiver_demo::{create_demo, DemoOptions};

use crate::cli::Global;
use crate::setup;

/// The demo's options from the command line.
pub struct Params {
    pub sessions: usize,
    pub scale: f64,
    pub seed: Option<u64>,
    pub max_age_days: u32,
    pub force: bool,
}

pub fn demo(g: &Global, p: Params) -> Result<()> {
    if !(p.scale > 0.0 && p.scale.is_finite()) {
        bail!("--scale must be a positive number, not {}", p.scale);
    }
    let paths = setup::new_paths(g);
    let existing = existing_data(g, &paths)?;
    if !existing.is_empty() {
        if !p.force {
            bail!(
                "{} already holds data ({}); the demo only writes into a new or empty directory \
                 (pass --force to delete that data and start over)",
                g.data_dir.display(),
                existing.join(", ")
            );
        }
        // The object store already there, whatever its name, goes too: two would make the
        // directory ambiguous.
        let mut dbs = vec![paths.objects_db.clone(), paths.filestore_db.clone()];
        if g.objects_db.is_none() {
            if let Ok((found, _)) = find_objects_db(&g.data_dir) {
                dbs.push(found);
            }
        }
        setup::live_guard_over(g, dbs.iter().cloned()).ensure_not_live()?;
        remove_data(&dbs, &paths.archive_dir)?;
    }
    std::fs::create_dir_all(&g.data_dir)
        .with_context(|| format!("creating {}", g.data_dir.display()))?;
    let stores = paths.open(false)?;

    let mut opts = DemoOptions {
        scale: p.scale,
        max_age_days: p.max_age_days,
        ..DemoOptions::with_agent_sessions(p.sessions)
    };
    if let Some(seed) = p.seed {
        opts.seed = seed;
    }
    let bar = crate::progress::bar(!g.quiet, "creating sessions");
    let started = Instant::now();
    let summary = create_demo(
        stores.objects.as_ref(),
        stores.files.as_ref(),
        &opts,
        SystemClock.now_ms(),
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )
    .context("creating the demo data")?;
    drop(stores);
    store_blocks_as_blob(&paths.objects_db)?;
    crate::progress::finish(&bar);
    out!("{summary}")?;
    out!(
        "created in {:.1} s: {}, {}, {}",
        started.elapsed().as_secs_f64(),
        paths.objects_db.display(),
        paths.filestore_db.display(),
        paths.archive_dir.display()
    )?;
    Ok(())
}

/// What in the data directory (or the overridden paths) would be overwritten.
fn existing_data(g: &Global, paths: &DataDirPaths) -> Result<Vec<String>> {
    let mut found = Vec::new();
    if g.data_dir.is_dir() {
        let n = std::fs::read_dir(&g.data_dir)
            .with_context(|| format!("reading {}", g.data_dir.display()))?
            .count();
        if n > 0 {
            found.push(format!("{n} entries"));
        }
    } else if g.data_dir.exists() {
        bail!("{} exists and is not a directory", g.data_dir.display());
    }
    for p in [&paths.objects_db, &paths.filestore_db] {
        if p.exists() && !p.starts_with(&g.data_dir) {
            found.push(p.display().to_string());
        }
    }
    if !paths.archive_dir.starts_with(&g.data_dir) && non_empty_dir(&paths.archive_dir) {
        found.push(paths.archive_dir.display().to_string());
    }
    Ok(found)
}

fn non_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_some())
}

/// Deletes exactly the demo's own files: the databases (with their WAL and shared-memory files)
/// and the archive directory. Nothing else in the data directory is touched.
fn remove_data(dbs: &[std::path::PathBuf], archive_dir: &Path) -> Result<()> {
    for db in dbs {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            let f = Path::new(&name);
            if f.exists() {
                std::fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
            }
        }
    }
    if archive_dir.exists() {
        std::fs::remove_dir_all(archive_dir)
            .with_context(|| format!("removing {}", archive_dir.display()))?;
    }
    Ok(())
}
