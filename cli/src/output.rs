//! Human output (sizes, ratios, dates, aligned tables) and the JSON shapes printed by `--json`.
//!
//! The JSON shapes are defined here rather than serialising library types directly, so that
//! field names and enum spellings are under the CLI's control: scripts depend on them.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use indicatif::HumanBytes;
use serde::Serialize;
use session_archiver::archiver::{describe, PruneReport, RecoverReport, SweepSummary};
use session_archiver::bindings::guest;
use session_archiver::cap::CapUnreachable;
use session_archiver::policy::PolicyId;

/// `1.50 MiB`.
pub fn bytes(n: u64) -> String {
    HumanBytes(n).to_string()
}

/// `17.2%` of `raw`, or `-` when there is nothing to compare.
pub fn ratio(written: u64, raw: u64) -> String {
    if raw == 0 {
        "-".into()
    } else {
        format!("{:.1}%", written as f64 * 100.0 / raw as f64)
    }
}

/// Milliseconds since the epoch as an RFC 3339 date (UTC, seconds).
pub fn format_ms(ms: i64) -> String {
    if ms < 0 {
        return format!("{ms} ms");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

/// `name version (sha256 prefix)`.
pub fn policy_line(p: &PolicyId) -> String {
    p.to_string()
}

/// Left-aligned columns; the last column is not padded.
pub fn table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(out, &mut header.iter().copied())?;
    for row in rows {
        line(out, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    // Through io::Error, so a closed pipe keeps its kind (see `exit::is_broken_pipe`).
    serde_json::to_writer_pretty(&mut out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// The WIT action as scripts see it.
pub fn action_name(a: guest::Action) -> &'static str {
    match a {
        guest::Action::Archive => "archive",
        guest::Action::Skip => "skip",
        guest::Action::Prune => "prune",
        guest::Action::Recover => "recover",
    }
}

/// One target that could not be handled.
#[derive(Debug, Serialize)]
pub struct FailureJson {
    pub target: String,
    pub message: String,
}

impl From<&guest::Failure> for FailureJson {
    fn from(f: &guest::Failure) -> Self {
        FailureJson {
            target: f.target.clone(),
            message: describe(&f.error),
        }
    }
}

/// `plan --json`.
#[derive(Debug, Serialize)]
pub struct PlanJson {
    pub policy: PolicyId,
    pub scanned: u32,
    pub decisions: Vec<DecisionJson>,
    pub skipped: BTreeMap<String, u32>,
    pub archive_bytes: u64,
    pub archive_cap: u64,
    /// Set when pinned archives alone exceed the cap (no only copy is pruned to chase it).
    pub cap_unreachable: Option<CapUnreachable>,
}

#[derive(Debug, Serialize)]
pub struct DecisionJson {
    pub target: String,
    pub action: &'static str,
    pub reason: String,
    pub bytes: u64,
}

impl PlanJson {
    pub fn new(policy: PolicyId, plan: &guest::SweepPlan) -> Self {
        PlanJson {
            policy,
            scanned: plan.scanned,
            decisions: plan
                .decisions
                .iter()
                .map(|d| DecisionJson {
                    target: d.target.clone(),
                    action: action_name(d.action),
                    reason: d.reason.clone(),
                    bytes: d.bytes,
                })
                .collect(),
            skipped: skip_map(&plan.skipped),
            archive_bytes: plan.archive_bytes,
            archive_cap: plan.archive_cap,
            cap_unreachable: None,
        }
    }
}

/// Skip counts by reason, merged (a reason listed twice is summed).
pub fn skip_map(skips: &[guest::SkipCount]) -> BTreeMap<String, u32> {
    let mut m = BTreeMap::new();
    for s in skips {
        *m.entry(s.reason.clone()).or_default() += s.count;
    }
    m
}

/// `prune` inside `sweep --json`.
#[derive(Debug, Serialize)]
pub struct PruneJson {
    pub pruned: u32,
    pub tombstoned: u32,
    pub bytes_freed: u64,
    pub failed: Vec<FailureJson>,
}

impl From<&PruneReport> for PruneJson {
    fn from(p: &PruneReport) -> Self {
        PruneJson {
            pruned: p.pruned,
            tombstoned: p.tombstoned,
            bytes_freed: p.bytes_freed,
            failed: p.failed.iter().map(FailureJson::from).collect(),
        }
    }
}

/// `sweep --json`: the library's `SweepSummary`, field for field, plus the policy and time.
#[derive(Debug, Serialize)]
pub struct SweepJson {
    pub policy: PolicyId,
    pub scanned: u32,
    pub archived: u32,
    pub recovered: u32,
    pub skipped: BTreeMap<String, u32>,
    pub failed: Vec<SweepFailureJson>,
    pub bytes_archived: u64,
    pub bytes_written: u64,
    pub prune: Option<PruneJson>,
    pub workers: usize,
    pub elapsed_ms: u64,
    /// Set when pinned archives alone exceed the cap (no only copy is pruned to chase it).
    pub cap_unreachable: Option<CapUnreachable>,
}

#[derive(Debug, Serialize)]
pub struct SweepFailureJson {
    pub target: String,
    pub op: String,
    pub code: &'static str,
    pub message: String,
}

impl SweepJson {
    pub fn new(policy: PolicyId, s: &SweepSummary, elapsed: Duration) -> Self {
        SweepJson {
            policy,
            scanned: s.scanned,
            archived: s.archived,
            recovered: s.recovered,
            skipped: s.skipped.clone(),
            failed: s
                .failed
                .iter()
                .map(|f| SweepFailureJson {
                    target: f.target.clone(),
                    op: f.op.to_string(),
                    code: f.code,
                    message: crate::exit::render_archiver(&f.error),
                })
                .collect(),
            bytes_archived: s.bytes_archived,
            bytes_written: s.bytes_written,
            prune: s.prune.as_ref().map(PruneJson::from),
            workers: s.workers,
            elapsed_ms: elapsed.as_millis() as u64,
            cap_unreachable: None,
        }
    }
}

/// `recover --json`.
#[derive(Debug, Serialize)]
pub struct RecoverJson {
    pub policy: PolicyId,
    pub examined: u32,
    pub finished: u32,
    pub rolled_back: u32,
    pub failed: Vec<FailureJson>,
}

impl RecoverJson {
    pub fn new(policy: PolicyId, r: &RecoverReport) -> Self {
        RecoverJson {
            policy,
            examined: r.examined,
            finished: r.finished,
            rolled_back: r.rolled_back,
            failed: r.failed.iter().map(FailureJson::from).collect(),
        }
    }
}

/// `archive --json`.
#[derive(Debug, Serialize)]
pub struct ArchiveJson {
    pub policy: PolicyId,
    pub id: String,
    pub raw_bytes: u64,
    pub archive_bytes: u64,
    pub archive_name: Option<String>,
    pub archive_path: Option<String>,
    pub archived_at_ms: i64,
    pub crc32: u32,
}

/// `restore --json`.
#[derive(Debug, Serialize)]
pub struct RestoreJson {
    pub policy: PolicyId,
    pub id: String,
    pub archived_bytes: u64,
    pub newer_bytes: u64,
}

/// `status --json`.
#[derive(Debug, Default, Serialize)]
pub struct StatusJson {
    pub policy: Option<PolicyId>,
    pub objects: u64,
    pub agent_sessions: AgentCounts,
    pub pending_intents: u64,
    pub live_files: u64,
    pub live_bytes: u64,
    pub archive_files: u64,
    pub archive_bytes: u64,
    /// Entries of the archive directory that are not this tool's archives (left alone).
    pub foreign_files_ignored: u64,
    pub archive_cap: Option<u64>,
    pub layout: Option<LayoutJson>,
    /// Set when pinned archives alone exceed the cap (no only copy is pruned to chase it).
    pub cap_unreachable: Option<CapUnreachable>,
}

/// Which layout `--data-dir` was found to have, and where each part is.
#[derive(Debug, Serialize)]
pub struct LayoutJson {
    /// agentmux | wave | archiver | custom | given
    pub kind: &'static str,
    pub description: String,
    pub objects_db: std::path::PathBuf,
    pub filestore_db: std::path::PathBuf,
    pub archive_dir: std::path::PathBuf,
}

#[derive(Debug, Default, Serialize)]
pub struct AgentCounts {
    pub total: u64,
    pub live: u64,
    pub archived: u64,
    pub pruned: u64,
    pub pinned: u64,
}

/// `policy info --json`.
#[derive(Debug, Serialize)]
pub struct PolicyInfoJson {
    pub name: String,
    pub version: String,
    pub description: String,
    pub sha256: String,
    pub path: String,
    pub wit: String,
    pub from_cache: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_every_column_but_the_last() {
        let mut out = Vec::new();
        table(
            &mut out,
            &["A", "BB", "C"],
            &[
                vec!["xyz".into(), "1".into(), "why".into()],
                vec!["q".into(), "22222".into(), "because".into()],
            ],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "A    BB     C\nxyz  1      why\nq    22222  because\n"
        );
    }

    #[test]
    fn ratios_and_dates_read_well() {
        assert_eq!(ratio(25, 100), "25.0%");
        assert_eq!(ratio(5, 0), "-");
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(bytes(1536), "1.50 KiB");
    }
}
