//! Selection alone: a sweep over many sessions of which none is due.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

use crate::bench::corpus::{create_noop_corpus, open_stores};
use crate::bench::harness::{interleave, timed, Case, Group, Row, Target, Unit};
use crate::bench::Bench;
use crate::cmd;

impl Bench {
    /// 100 000 sessions of which none is due: the cost of selection alone.
    pub(crate) fn noop_sweep_group(&mut self) -> Result<()> {
        let n = self.plan.noop_sessions;
        cmd::section(&format!("no-op sweep over {n} sessions"));
        let dir = self.dir.join("noop");
        let t = Instant::now();
        create_noop_corpus(&dir, n)?;
        println!(
            "  corpus: {n} sessions in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let mut g = Group {
            title: format!("Selection: {n} sessions, none due"),
            rows: vec![
                Row::new("plan (dry run)", Unit::Latency),
                Row::new(
                    "host-driven sweep (plan + parallel archive step + prune)",
                    Unit::Latency,
                )
                .target(Target::LatencyUnder(Duration::from_secs(1))),
            ],
            baseline: None,
            notes: vec![
                "selection corpus: 80% recently active agent sessions, 10% non-agent blocks, 10% \
                 pinned idle sessions; no files, no archives"
                    .into(),
            ],
        };
        let archiver = self.archiver(open_stores(&dir)?, self.plan.workers)?;
        let cases = vec![
            Case {
                rows: vec![0],
                run: Box::new(|| {
                    let (t, plan) = timed(|| Ok(archiver.plan()?))?;
                    ensure!(
                        plan.value.scanned as usize == n,
                        "plan scanned {}",
                        plan.value.scanned
                    );
                    Ok(vec![t])
                }),
            },
            Case {
                rows: vec![1],
                run: Box::new(|| {
                    let (t, s) = timed(|| Ok(archiver.sweep(|_| {})?))?;
                    ensure!(
                        s.value.archived == 0 && s.value.failed.is_empty(),
                        "the no-op sweep did something: {:?}",
                        s.value
                    );
                    Ok(vec![t])
                }),
            },
        ];
        interleave(&mut g, self.plan.rounds, cases)?;
        self.groups.push(g);
        Ok(())
    }
}
