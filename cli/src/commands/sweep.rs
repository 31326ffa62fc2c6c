//! `plan` (the dry run) and `sweep` (archive idle sessions, then prune).

use std::io::Write;
use std::time::Instant;

use anyhow::Result;
use session_archiver::archiver::SweepSummary;
use session_archiver::bindings::guest::{Action, Decision, SweepPlan};

use crate::cli::Global;
use crate::commands::status;
use crate::exit::PartialFailure;
use crate::output::{self, bytes, ratio, PlanJson, SweepJson};
use crate::setup;

pub fn plan(g: &Global, json: bool, all: bool) -> Result<()> {
    let s = setup::open_read_only(g)?;
    let served = s.archiver.plan()?;
    let location = s.paths.archive_url().map(str::to_owned);
    let unreachable = status::cap_unreachable(s.archiver.stores(), Some(served.value.archive_cap))?;
    if json {
        let mut plan = PlanJson::new(served.policy, &served.value);
        plan.cap_unreachable = unreachable;
        return output::print_json(&plan);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "policy {}", output::policy_line(&served.policy))?;
    print_plan(&mut out, &served.value, all)?;
    if let Some(url) = location {
        // The usage above is the bucket's under this prefix, shared with every machine there.
        writeln!(out, "archives in {url} (shared by every archiver using it)")?;
    }
    if let Some(c) = &unreachable {
        writeln!(out, "{}", status::cap_line(c))?;
    }
    Ok(())
}

/// The table; skipped candidates only with `all` (on a large store they are most of it).
fn print_plan(out: &mut impl Write, plan: &SweepPlan, all: bool) -> Result<()> {
    let shown = |d: &&Decision| all || d.action != Action::Skip;
    let hidden = plan.decisions.iter().filter(|d| !shown(d)).count();
    let rows: Vec<Vec<String>> = plan
        .decisions
        .iter()
        .filter(shown)
        .map(|d| {
            vec![
                output::action_name(d.action).to_string(),
                d.target.clone(),
                bytes(d.bytes),
                d.reason.clone(),
            ]
        })
        .collect();
    if rows.is_empty() {
        writeln!(out, "nothing to do")?;
    } else {
        output::table(out, &["ACTION", "TARGET", "BYTES", "REASON"], &rows)?;
    }
    let total = |a: Action| {
        plan.decisions
            .iter()
            .filter(|d| d.action == a)
            .fold((0u64, 0u64), |(n, b), d| (n + 1, b + d.bytes))
    };
    let (archive_n, archive_b) = total(Action::Archive);
    let (prune_n, prune_b) = total(Action::Prune);
    let (recover_n, _) = total(Action::Recover);
    writeln!(out)?;
    if hidden > 0 {
        writeln!(
            out,
            "({hidden} skipped candidates not listed; --all lists them)"
        )?;
    }
    writeln!(out, "scanned {} objects", plan.scanned)?;
    writeln!(
        out,
        "would archive {archive_n} sessions ({}), prune {prune_n} archives (freeing {}), recover {recover_n}",
        bytes(archive_b),
        bytes(prune_b)
    )?;
    let skipped = output::skip_map(&plan.skipped);
    if !skipped.is_empty() {
        let parts: Vec<String> = skipped.iter().map(|(r, n)| format!("{r} {n}")).collect();
        writeln!(out, "skipped: {}", parts.join(", "))?;
    }
    writeln!(
        out,
        "archive directory: {} of {} cap",
        bytes(plan.archive_bytes),
        bytes(plan.archive_cap)
    )?;
    Ok(())
}

pub fn sweep(g: &Global, json: bool, strict: bool) -> Result<()> {
    let s = setup::open(g)?;
    let bar = crate::progress::bar(!json && !g.quiet, "archiving");
    let started = Instant::now();
    let served = s.archiver.sweep(|p| {
        if bar.length() != Some(p.total as u64) {
            bar.set_length(p.total as u64);
        }
        bar.set_position(p.done as u64);
    })?;
    crate::progress::finish(&bar);
    let elapsed = started.elapsed();
    let summary = &served.value;
    let (_, cap) = status::policy_cap(&s.archiver)?;
    let unreachable = status::cap_unreachable(s.archiver.stores(), cap)?;
    if json {
        let mut report = SweepJson::new(served.policy, summary, elapsed);
        report.cap_unreachable = unreachable;
        output::print_json(&report)?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "policy {}", output::policy_line(&served.policy))?;
        print_summary(&mut out, summary, elapsed)?;
        if let Some(c) = &unreachable {
            writeln!(out, "{}", status::cap_line(c))?;
        }
    }
    let failures = failure_count(summary);
    if strict && failures > 0 {
        return Err(PartialFailure(format!("{failures} sessions, archives or steps")).into());
    }
    Ok(())
}

/// Failed sessions and steps plus archives the prune could not remove: `--strict` counts both, a
/// prune failure may leave the directory over its cap.
pub fn failure_count(s: &SweepSummary) -> usize {
    s.failed.len() + s.prune.as_ref().map_or(0, |p| p.failed.len())
}

/// The human summary of one sweep (also used by `run`'s log line).
pub fn print_summary(
    out: &mut impl Write,
    s: &SweepSummary,
    elapsed: std::time::Duration,
) -> Result<()> {
    writeln!(
        out,
        "scanned {}, archived {} ({} -> {}, {}), recovered {} in {:.1} s with {} workers",
        s.scanned,
        s.archived,
        bytes(s.bytes_archived),
        bytes(s.bytes_written),
        ratio(s.bytes_written, s.bytes_archived),
        s.recovered,
        elapsed.as_secs_f64(),
        s.workers
    )?;
    if !s.skipped.is_empty() {
        let parts: Vec<String> = s.skipped.iter().map(|(r, n)| format!("{r} {n}")).collect();
        writeln!(out, "skipped: {}", parts.join(", "))?;
    }
    match &s.prune {
        Some(p) => {
            writeln!(
                out,
                "pruned {} archives ({} tombstoned), freed {}",
                p.pruned,
                p.tombstoned,
                bytes(p.bytes_freed)
            )?;
            for f in &p.failed {
                writeln!(
                    out,
                    "  prune failed: {}: {}",
                    f.target,
                    session_archiver::archiver::describe(&f.error)
                )?;
            }
        }
        None => writeln!(out, "prune did not run (see failures)")?,
    }
    if s.failed.is_empty() {
        writeln!(out, "failed: 0")?;
    } else {
        writeln!(out, "failed: {}", s.failed.len())?;
        for f in &s.failed {
            writeln!(out, "  {}", crate::exit::render_archiver(&f.error))?;
        }
    }
    Ok(())
}
