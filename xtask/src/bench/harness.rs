//! Rows, groups and the interleaved timing loop every group runs its cases through.

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

use super::{MB, MIB};

/// What a row's samples are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Unit {
    /// Seconds to move this many raw bytes; shown as MB/s.
    Throughput(u64),
    /// Seconds; shown as ms or s.
    Latency,
    /// Bytes (one sample); shown as MiB.
    Memory,
}

/// A target checked on a row.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    None,
    /// Median throughput ≥ `factor` × the median of row `of` in the same group.
    AtLeastTimes {
        factor: f64,
        of: usize,
        label: &'static str,
    },
    /// Median (or only) value ≤ this many bytes.
    MemoryAtMost(u64),
    /// Median ≤ this long.
    LatencyUnder(Duration),
}

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) unit: Unit,
    pub(crate) samples: Vec<f64>,
    pub(crate) target: Target,
    /// Shown when the row has no samples (a tool not installed, …).
    pub(crate) missing: Option<String>,
    /// The row its ratio is against, when not the group's baseline (restore rows compare
    /// with the seed-style restore, not the seed-style archive).
    pub(crate) vs: Option<usize>,
}

impl Row {
    pub(crate) fn new(name: impl Into<String>, unit: Unit) -> Self {
        Row {
            name: name.into(),
            unit,
            samples: Vec::new(),
            target: Target::None,
            missing: None,
            vs: None,
        }
    }
    pub(crate) fn target(mut self, t: Target) -> Self {
        self.target = t;
        self
    }
    pub(crate) fn median(&self) -> Option<f64> {
        let mut v = self.samples.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }
    pub(crate) fn best(&self) -> Option<f64> {
        self.samples.iter().copied().min_by(f64::total_cmp)
    }
    /// Throughput in MB/s for a time, or the value itself.
    fn rate(&self, secs: f64) -> f64 {
        match self.unit {
            Unit::Throughput(bytes) => bytes as f64 / MB / secs,
            _ => secs,
        }
    }
    pub(crate) fn show(&self, v: f64) -> String {
        match self.unit {
            Unit::Throughput(_) => format!("{:.1} MB/s", self.rate(v)),
            Unit::Latency if v < 1.0 => format!("{:.1} ms", v * 1e3),
            Unit::Latency => format!("{v:.2} s"),
            Unit::Memory => format!("{:.1} MiB", v / MIB as f64),
        }
    }
}

/// Rows measured together; row `baseline` is what the ratios are against.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) title: String,
    pub(crate) rows: Vec<Row>,
    pub(crate) baseline: Option<usize>,
    pub(crate) notes: Vec<String>,
}

/// One interleaved case: runs once per round and returns one sample per row it feeds.
pub(crate) struct Case<'a> {
    pub(crate) rows: Vec<usize>,
    pub(crate) run: Box<dyn FnMut() -> Result<Vec<f64>> + 'a>,
}

/// Runs `cases` `rounds` times, each round starting one case later, into `group`'s rows.
pub(crate) fn interleave(group: &mut Group, rounds: usize, mut cases: Vec<Case<'_>>) -> Result<()> {
    let n = cases.len();
    for round in 0..rounds {
        let mut this_round = vec![None; group.rows.len()];
        for k in 0..n {
            let case = &mut cases[(k + round) % n];
            let samples = (case.run)()?;
            ensure!(
                samples.len() == case.rows.len(),
                "a case returned the wrong sample count"
            );
            for (&row, s) in case.rows.iter().zip(samples) {
                group.rows[row].samples.push(s);
                this_round[row] = Some(s);
            }
        }
        // In row order, whatever order the cases ran in.
        let shown: Vec<String> = this_round
            .iter()
            .zip(&group.rows)
            .filter_map(|(s, row)| s.map(|s| row.show(s)))
            .collect();
        println!("  round {}/{rounds}: {}", round + 1, shown.join(" | "));
    }
    Ok(())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

pub(crate) fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let t = Instant::now();
    let v = f()?;
    Ok((secs(t.elapsed()), v))
}

/// CPU time of the whole process so far (user + system, every thread), in seconds, from
/// `/proc/self/stat` (fields 14 and 15, in the kernel's fixed 100 Hz clock ticks).
pub(crate) fn process_cpu_secs() -> Option<f64> {
    let text = fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest
        .split_whitespace()
        .skip(11)
        .map(|v| v.parse::<u64>().ok());
    let (utime, stime) = (f.next()??, f.next()??);
    Some((utime + stime) as f64 / 100.0)
}

/// The calling thread's time on a CPU and time runnable but waiting for one, in seconds
/// (`/proc/thread-self/schedstat`).
pub(crate) fn thread_schedstat() -> Option<(f64, f64)> {
    let text = fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    let (cpu, wait) = (f.next()??, f.next()??);
    Some((cpu as f64 / 1e9, wait as f64 / 1e9))
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_cpu_time_grows_with_work() {
        // Spins until the process has used 50 ms more CPU (however loaded the machine is), so a
        // parse of the wrong fields (which do not grow, or not like this) fails within 10 s.
        let a = super::process_cpu_secs().expect("/proc/self/stat");
        let t = std::time::Instant::now();
        let mut x = 0u64;
        let mut grew = 0.0;
        while grew < 0.05 && t.elapsed().as_secs() < 10 {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            grew = super::process_cpu_secs().expect("/proc/self/stat") - a;
        }
        assert!(grew >= 0.05, "CPU time grew {grew} s in 10 s of spinning");
        assert!(grew < t.elapsed().as_secs_f64() * 64.0, "{grew} s");
    }
}
