//! The whole sweep on one worker and on every core, against pigz on the same bytes.

use std::process::Command;

use anyhow::{ensure, Result};

use crate::bench::baselines::run_tool;
use crate::bench::corpus::{copy_store, create_sweep_corpus, open_stores};
use crate::bench::harness::{
    interleave, process_cpu_secs, thread_schedstat, timed, Case, Group, Row, Target, Unit,
};
use crate::bench::{Bench, MB, MIB};
use crate::cmd;

impl Bench {
    /// The whole sweep on 1 worker and on every core, against `pigz -p 2` on the same bytes.
    pub(crate) fn sweep_group(&mut self) -> Result<()> {
        let total = self.plan.sweep_bytes;
        let nproc = self.plan.workers;
        cmd::section(&format!(
            "whole sweep of {} MiB, 1 vs {nproc} workers",
            total / MIB
        ));
        let pristine = self.dir.join("sweep-pristine");
        let raw = self.dir.join("sweep.jsonl");
        let (sessions, bytes) = create_sweep_corpus(&pristine, total, &raw)?;
        println!("  corpus: {sessions} sessions, {:.1} MB", bytes as f64 / MB);
        let tput = Unit::Throughput(bytes);
        let mut rows = vec![
            Row::new("sweep, workers = 1", tput),
            Row::new(format!("sweep, workers = {nproc}"), tput),
            Row::new("`pigz -6 -p 2` on the same bytes (one file)", tput),
        ];
        rows[1].target = Target::AtLeastTimes {
            factor: 1.7,
            of: 0,
            label: "workers = 1",
        };
        if !self.pigz {
            rows[2].missing = Some("pigz not installed".into());
        }
        let mut g = Group {
            title: format!(
                "Whole sweep: {sessions} idle sessions, 100 KB – 16 MB, {:.0} MB",
                bytes as f64 / MB
            ),
            rows,
            baseline: Some(0),
            notes: vec![],
        };
        let run_dir = self.dir.join("sweep-run");
        // Where the worker threads' time went, per sweep, workers = 1 and = nproc: summed
        // [on a CPU, runnable but waiting for a CPU, wall × workers, the whole process's CPU
        // time (member helpers included), wall].
        let split = std::cell::RefCell::new([[0f64; 5]; 2]);
        let this = &*self;
        let sweep = |workers: usize| -> Result<f64> {
            copy_store(&pristine, &run_dir)?;
            let archiver = this.archiver(open_stores(&run_dir)?, workers)?;
            // A worker thread's counters start at zero when the sweep spawns it, and it reports
            // progress after each session: its last report is its whole life but the exit.
            let last = std::sync::Mutex::new(std::collections::HashMap::new());
            let cpu_before = process_cpu_secs();
            let (t, s) = timed(|| {
                Ok(archiver.sweep(|_| {
                    if let Some(v) = thread_schedstat() {
                        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                        last.insert(std::thread::current().id(), v);
                    }
                })?)
            })?;
            let last = last.into_inner().unwrap_or_else(|p| p.into_inner());
            let mut split = split.borrow_mut();
            let slot = &mut split[usize::from(workers > 1)];
            for (cpu, wait) in last.values() {
                slot[0] += cpu;
                slot[1] += wait;
            }
            slot[2] += t * s.value.workers as f64;
            if let (Some(a), Some(b)) = (cpu_before, process_cpu_secs()) {
                slot[3] += b - a;
                slot[4] += t;
            }
            let s = s.value;
            ensure!(
                s.archived as usize == sessions && s.bytes_archived == bytes && s.failed.is_empty(),
                "sweep archived {} sessions, {} bytes, failures {:?}",
                s.archived,
                s.bytes_archived,
                s.failed
            );
            Ok(t)
        };
        let out = self.dir.join("sweep-pigz.gz");
        let mut cases = vec![
            Case {
                rows: vec![0],
                run: Box::new(|| Ok(vec![sweep(1)?])),
            },
            Case {
                rows: vec![1],
                run: Box::new(|| Ok(vec![sweep(nproc)?])),
            },
        ];
        if self.pigz {
            cases.push(Case {
                rows: vec![2],
                run: Box::new(|| {
                    Ok(vec![
                        timed(|| {
                            run_tool(
                                Command::new("pigz").args(["-6", "-p", "2", "-c"]).arg(&raw),
                                &out,
                            )
                        })?
                        .0,
                    ])
                }),
            });
        }
        interleave(&mut g, self.plan.rounds, cases)?;
        let split = split.into_inner();
        let share = |i: usize, k: usize| 100.0 * split[i][k] / split[i][2].max(1e-9);
        g.notes.push(format!(
            "sweep worker threads' time (Linux schedstat): workers = 1: {:.0}% on a CPU, {:.0}% \
             runnable but waiting for a CPU, {:.0}% blocked (I/O, fsync, locks, and waiting for \
             the member helpers of a large session); workers = {nproc}: {:.0}% on a CPU, {:.0}% \
             waiting for a CPU, {:.0}% blocked. The whole process, member helpers included, kept \
             {:.2} of the {nproc} cores busy on average with workers = 1 and {:.2} with workers \
             = {nproc}. Time waiting for a CPU is the other processes on the machine taking the \
             cores",
            share(0, 0),
            share(0, 1),
            100.0 - share(0, 0) - share(0, 1),
            share(1, 0),
            share(1, 1),
            100.0 - share(1, 0) - share(1, 1),
            split[0][3] / split[0][4].max(1e-9),
            split[1][3] / split[1][4].max(1e-9),
        ));
        if let (Some(w), Some(p)) = (g.rows[1].median(), g.rows[2].median()) {
            // Both are times for the same bytes: the ratio of speeds is the inverse of times.
            let ok = p / w >= 0.70;
            g.notes.push(format!(
                "target: sweep on {nproc} cores ≥ 0.70× `pigz -6 -p 2` on the same bytes — {} ({:.2}×)",
                if ok { "**met**" } else { "**missed**" },
                p / w
            ));
        }
        self.groups.push(g);
        Ok(())
    }
}
