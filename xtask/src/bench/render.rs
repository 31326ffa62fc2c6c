//! The table: the machine it ran on, one section per group, the targets' verdicts, and writing
//! it between the README's markers.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};

use super::args::Plan;
use super::harness::{Group, Row, Target, Unit};
use super::MIB;
use crate::cmd;

pub(crate) struct Machine {
    date: String,
    nproc: usize,
    cpu: String,
    load_before: String,
    load_after: String,
    elapsed: Duration,
}

impl Machine {
    pub(crate) fn probe(load_before: String, load_after: String, elapsed: Duration) -> Self {
        let date = cmd::probe(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown date".into());
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        Machine {
            date,
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            load_before,
            load_after,
            elapsed,
        }
    }
}

pub(crate) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// The verdict of a row's target, if it has one.
fn verdict(g: &Group, row: &Row) -> Option<(bool, String)> {
    let median = row.median()?;
    match &row.target {
        Target::None => None,
        Target::AtLeastTimes { factor, of, label } => {
            let other = g.rows[*of].median()?;
            // Same bytes: the ratio of speeds is the inverse ratio of times.
            let ratio = other / median;
            Some((
                ratio >= *factor,
                format!("≥ {factor}× {label} ({ratio:.2}×)"),
            ))
        }
        Target::MemoryAtMost(b) => Some((median <= *b as f64, format!("≤ {} MiB", b / MIB))),
        Target::LatencyUnder(d) => Some((
            median < d.as_secs_f64(),
            if d.as_secs() >= 1 {
                format!("< {} s", d.as_secs())
            } else {
                format!("< {} ms", d.as_millis())
            },
        )),
    }
}

pub(crate) fn render(groups: &[Group], plan: &Plan, m: &Machine, quick: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Measured {} on {} × {} (`nproc` = {}), load average {} at the start and {} at the end; \
         {} rounds per row, interleaved; `cargo xtask \
         bench{}` took {:.0} s.",
        m.date,
        m.nproc,
        m.cpu,
        m.nproc,
        m.load_before,
        m.load_after,
        plan.rounds,
        if quick {
            " --quick"
        } else if plan.big_bytes >= 1 << 30 {
            " --big"
        } else {
            ""
        },
        m.elapsed.as_secs_f64()
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "| measurement | median | best | × baseline | target |");
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | --- |");
    for g in groups {
        let _ = writeln!(s, "| **{}** | | | | |", g.title);
        for (i, row) in g.rows.iter().enumerate() {
            let base = row.vs.or(g.baseline).and_then(|b| g.rows[b].median());
            let name = if Some(i) == g.baseline || g.rows.iter().any(|r| r.vs == Some(i)) {
                format!("{} = **baseline**", row.name)
            } else {
                row.name.clone()
            };
            let (Some(median), Some(best)) = (row.median(), row.best()) else {
                let why = row.missing.clone().unwrap_or_else(|| "not measured".into());
                let _ = writeln!(s, "| {name} | {why} | | | |");
                continue;
            };
            let single = row.samples.len() == 1;
            let ratio = match (base, row.unit) {
                (Some(b), Unit::Throughput(_)) => format!("{:.2}×", b / median),
                _ => String::new(),
            };
            let target = match verdict(g, row) {
                Some((ok, what)) => {
                    format!("{what}: {}", if ok { "**met**" } else { "**missed**" })
                }
                None => String::new(),
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {ratio} | {target} |",
                row.show(median),
                if single {
                    String::new()
                } else {
                    row.show(best)
                },
            );
        }
    }
    let notes: Vec<&String> = groups.iter().flat_map(|g| &g.notes).collect();
    if !notes.is_empty() {
        let _ = writeln!(s);
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

/// The README lines the table goes between; everything outside them (the section's intro and
/// the analysis under the table) is hand-written and left alone.
const BEGIN: &str = "<!-- bench:table:begin -->";
const END: &str = "<!-- bench:table:end -->";

/// Replaces what lies between README's bench markers with `table`.
pub(crate) fn write_readme(path: &Path, table: &str) -> Result<()> {
    let text = fs::read_to_string(path)?;
    let new =
        replace_table(&text, table).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    fs::write(path, new)?;
    Ok(())
}

/// `text` with the lines between the markers replaced by `table`.
fn replace_table(text: &str, table: &str) -> Result<String> {
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        bail!("no `{BEGIN}` … `{END}` markers for the benchmark table");
    };
    if end < begin {
        bail!("`{END}` comes before `{BEGIN}`");
    }
    let after_begin = begin + BEGIN.len();
    Ok(format!(
        "{}\n{}\n{}",
        &text[..after_begin],
        table.trim_end(),
        &text[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_replaces_only_what_lies_between_the_markers() {
        let readme = format!(
            "# T\n\nintro prose\n\n{BEGIN}\nold table\n\n- old note\n{END}\n\nanalysis prose\n\n## Next\n"
        );
        let new = replace_table(&readme, "new table\n\n- new note\n").unwrap();
        assert_eq!(
            new,
            format!(
                "# T\n\nintro prose\n\n{BEGIN}\nnew table\n\n- new note\n{END}\n\nanalysis prose\n\n## Next\n"
            )
        );
    }

    #[test]
    fn a_readme_without_markers_is_refused_and_not_rewritten() {
        assert!(replace_table("## Performance\n\nprose\n", "table").is_err());
        assert!(replace_table(&format!("{END}\n{BEGIN}\n"), "table").is_err());
    }
}
