//! `recover [ID]`: finish or roll back interrupted operations.

use anyhow::Result;

use crate::cli::Global;
use crate::exit::PartialFailure;
use crate::output::{self, RecoverJson};
use crate::setup;

pub fn recover(g: &Global, id: Option<&str>, json: bool, strict: bool) -> Result<()> {
    let s = setup::open(g)?;
    let served = match id {
        Some(id) => s.archiver.recover(id)?,
        None => s.archiver.recover_pending()?,
    };
    let r = &served.value;
    if json {
        output::print_json(&RecoverJson::new(served.policy, r))?;
    } else {
        out!(
            "recovery: {} interrupted operations found, {} finished, {} rolled back, {} failed",
            r.examined,
            r.finished,
            r.rolled_back,
            r.failed.len()
        )?;
        for f in &r.failed {
            out!(
                "  {}: {}",
                f.target,
                session_archiver::archiver::describe(&f.error)
            )?;
        }
    }
    if strict && !r.failed.is_empty() {
        return Err(PartialFailure(format!("{} recoveries", r.failed.len())).into());
    }
    Ok(())
}
