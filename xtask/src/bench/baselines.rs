//! The jobs every row is compared with: the seed's native way (whole file in memory, `flate2`
//! level 6) and the peer tools (`gzip`, `pigz`).

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use session_archiver::store::{FileOpts, FileStore, MAX_CHUNK, OUTPUT_FILE};

use crate::cmd;

/// The seed's archive: the whole file read into memory, `flate2` level 6, written out.
pub(crate) fn seed_archive(files: &dyn FileStore, id: &str, out: &Path) -> Result<()> {
    let size = files
        .stat(id, OUTPUT_FILE)?
        .context("the session has no output")?
        .size;
    let mut data = Vec::with_capacity(size as usize);
    while (data.len() as u64) < size {
        let chunk = files.read(id, OUTPUT_FILE, data.len() as u64, MAX_CHUNK as u32)?;
        ensure!(!chunk.is_empty(), "output shrank while read");
        data.extend_from_slice(&chunk);
    }
    let mut enc = flate2::write::GzEncoder::new(File::create(out)?, flate2::Compression::new(6));
    enc.write_all(&data)?;
    enc.finish()?;
    Ok(())
}

/// The seed's restore: the whole archive inflated into memory, then written into the file
/// store (in `MAX_CHUNK` appends: our store's limit), then removed again. Returns the bytes.
pub(crate) fn seed_restore(files: &dyn FileStore, gz: &Path) -> Result<u64> {
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(File::open(gz)?).read_to_end(&mut data)?;
    let zone = "bench-seed-restore";
    if files.stat(zone, OUTPUT_FILE)?.is_some() {
        files.delete(zone, OUTPUT_FILE)?;
    }
    files.create(zone, OUTPUT_FILE, FileOpts::default())?;
    for chunk in data.chunks(MAX_CHUNK) {
        files.append(zone, OUTPUT_FILE, chunk)?;
    }
    files.delete(zone, OUTPUT_FILE)?;
    Ok(data.len() as u64)
}

/// Runs a peer tool with stdout into `out`.
pub(crate) fn run_tool(cmd: &mut Command, out: &Path) -> Result<()> {
    let shown = cmd::show(cmd);
    let status = cmd
        .stdout(File::create(out)?)
        .status()
        .with_context(|| format!("starting `{shown}`"))?;
    ensure!(status.success(), "`{shown}` failed ({status})");
    Ok(())
}
