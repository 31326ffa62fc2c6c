//! `status`: what is in the stores and the archive directory.

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::Value;
use session_archiver::archiver::Archiver;
use session_archiver::cap::CapUnreachable;
use session_archiver::host::Stores;
use session_archiver::policy::PolicyId;
use session_archiver::store::OUTPUT_FILE;

use crate::cli::Global;
use crate::output::{self, bytes, AgentCounts, LayoutJson, StatusJson};
use crate::setup;

const PAGE: u32 = 1000;

pub fn status(g: &Global, json: bool) -> Result<()> {
    let s = setup::open_read_only(g)?;
    let a = &s.archiver;
    let stores = a.stores();
    let mut st = StatusJson {
        layout: Some(LayoutJson {
            kind: s.layout.id(),
            description: s.layout.to_string(),
            objects_db: s.paths.objects_db.clone(),
            filestore_db: s.paths.filestore_db.clone(),
            archive_dir: s.paths.archive_dir.clone(),
        }),
        ..StatusJson::default()
    };

    let (policy, cap) = policy_cap(a)?;
    st.policy = Some(policy);
    st.archive_cap = cap;

    let mut after: Option<String> = None;
    loop {
        let page = stores
            .objects
            .list(after.as_deref(), PAGE)
            .context("listing the object store")?;
        for o in &page.objects {
            st.objects += 1;
            count(&mut st, &o.meta);
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }

    for (_, name, stat) in stores
        .files
        .list_files()
        .context("listing the file store")?
    {
        if name != OUTPUT_FILE {
            continue;
        }
        st.live_files += 1;
        st.live_bytes += stat
            .circular_max_size
            .map_or(stat.size, |m| stat.size.min(m));
    }
    for e in stores
        .archive_dir
        .list()
        .context("listing the archive directory")?
    {
        st.archive_files += 1;
        st.archive_bytes += e.size;
    }
    st.foreign_files_ignored = stores
        .archive_dir
        .foreign_count()
        .context("listing the archive directory")?;
    st.cap_unreachable = cap_unreachable(stores, st.archive_cap)?;

    if json {
        return output::print_json(&st);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "layout: {} in {}",
        s.layout,
        s.paths
            .objects_db
            .parent()
            .unwrap_or(&s.paths.objects_db)
            .display()
    )?;
    if let Some(p) = &st.policy {
        writeln!(out, "policy {}", output::policy_line(p))?;
    }
    let c = &st.agent_sessions;
    writeln!(out, "objects: {}", st.objects)?;
    writeln!(
        out,
        "agent sessions: {} ({} live, {} archived, {} pruned; {} pinned)",
        c.total, c.live, c.archived, c.pruned, c.pinned
    )?;
    writeln!(
        out,
        "live output: {} in {} files",
        bytes(st.live_bytes),
        st.live_files
    )?;
    let cap = st.archive_cap.map_or("no".to_string(), bytes);
    writeln!(
        out,
        "archives: {} in {} files, cap {cap}",
        bytes(st.archive_bytes),
        st.archive_files
    )?;
    if let Some(url) = s.paths.archive_url() {
        // The usage above is the bucket's under this prefix, shared with every machine there.
        writeln!(out, "archives in {url} (shared by every archiver using it)")?;
    }
    // Files of the user's own in the directory: left alone, but said, so nobody wonders.
    writeln!(out, "foreign files ignored: {}", st.foreign_files_ignored)?;
    if let Some(c) = &st.cap_unreachable {
        writeln!(out, "{}", cap_line(c))?;
    }
    if st.pending_intents > 0 {
        writeln!(
            out,
            "interrupted operations: {} (run `archiver recover`)",
            st.pending_intents
        )?;
    } else {
        writeln!(out, "interrupted operations: 0")?;
    }
    Ok(())
}

/// The policy and the cap its normalised config says (defaults filled in), if it has one.
pub fn policy_cap(a: &Archiver) -> Result<(PolicyId, Option<u64>)> {
    let normalised = a.set_config(&a.config())?;
    let cap = serde_json::from_str::<Value>(&normalised.value)
        .ok()
        .and_then(|v| v.get("max_total_bytes").and_then(Value::as_u64));
    Ok((normalised.policy, cap))
}

/// Whether pinned archives alone exceed `cap` (never, without a cap).
pub fn cap_unreachable(stores: &Stores, cap: Option<u64>) -> Result<Option<CapUnreachable>> {
    let Some(cap) = cap else {
        return Ok(None);
    };
    session_archiver::cap::cap_unreachable(stores, cap).context("measuring pinned archives")
}

/// The line people see, with sizes made readable.
pub fn cap_line(c: &CapUnreachable) -> String {
    format!(
        "cap unreachable: pinned archives hold {}, cap {} (no session's only archive is pruned to chase it)",
        bytes(c.pinned_bytes),
        bytes(c.cap)
    )
}

/// Classifies one object by its meta (the seed's keys and ours).
fn count(st: &mut StatusJson, meta: &serde_json::Map<String, Value>) {
    let positive = |k: &str| meta.get(k).and_then(Value::as_i64).is_some_and(|v| v > 0);
    if meta
        .get("session:archive_intent")
        .is_some_and(|v| !v.is_null())
    {
        st.pending_intents += 1;
    }
    if meta.get("view").and_then(Value::as_str) != Some("agent") {
        return;
    }
    let c: &mut AgentCounts = &mut st.agent_sessions;
    c.total += 1;
    if meta.get("session:archive_pinned").and_then(Value::as_bool) == Some(true) {
        c.pinned += 1;
    }
    if positive("session:archived_at") {
        c.archived += 1;
    } else if positive("session:archive_pruned_at") {
        c.pruned += 1;
    } else {
        c.live += 1;
    }
}
