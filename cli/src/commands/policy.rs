//! `policy info FILE`: load a component the way `--policy` would and say who it is.

use std::path::Path;

use anyhow::Result;
use session_archiver::bindings::{WIT_PACKAGE, WIT_VERSION};

use crate::cli::Global;
use crate::output::{self, PolicyInfoJson};
use crate::setup;

pub fn info(g: &Global, file: &Path, json: bool) -> Result<()> {
    let runtime = setup::runtime(g)?;
    let p = runtime.load_file(file)?;
    let j = PolicyInfoJson {
        name: p.info.name.clone(),
        version: p.info.version.clone(),
        description: p.info.description.clone(),
        sha256: p.sha256.clone(),
        path: file.display().to_string(),
        wit: format!("{WIT_PACKAGE}@{WIT_VERSION}"),
        from_cache: p.from_cache,
    };
    if json {
        return output::print_json(&j);
    }
    out!("name:        {}", j.name)?;
    out!("version:     {}", j.version)?;
    out!("description: {}", j.description)?;
    out!("sha256:      {}", j.sha256)?;
    out!("file:        {}", j.path)?;
    out!(
        "imports:     OK (only {} interfaces; world archive-policy)",
        j.wit
    )?;
    out!(
        "compiled:    {}",
        if j.from_cache {
            "from the cache"
        } else {
            "now"
        }
    )?;
    Ok(())
}
