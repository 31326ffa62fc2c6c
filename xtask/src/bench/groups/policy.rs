//! Policy load cold and from the compiled cache, and a live swap to a cached policy.

use std::time::Duration;

use anyhow::{ensure, Result};
use session_archiver::runtime::{CacheSetting, Runtime, RuntimeOptions};

use crate::bench::corpus::open_stores;
use crate::bench::harness::{interleave, timed, Case, Group, Row, Target, Unit};
use crate::bench::Bench;
use crate::cmd;

impl Bench {
    /// Policy load cold (Cranelift), from the compiled cache, and a swap to a cached policy.
    pub(crate) fn policy_group(&mut self) -> Result<()> {
        cmd::section("policy load and swap");
        let mut g = Group {
            title: "Policy load and swap".into(),
            rows: vec![
                Row::new("load a policy cold (compile with Cranelift)", Unit::Latency),
                Row::new("load a policy from the compiled cache", Unit::Latency),
                Row::new(
                    "swap to a cached policy (load + validate config + swap)",
                    Unit::Latency,
                )
                .target(Target::LatencyUnder(Duration::from_millis(50))),
            ],
            baseline: None,
            notes: vec![],
        };
        let cold = Runtime::new(RuntimeOptions {
            cache: CacheSetting::Disabled,
            ..RuntimeOptions::default()
        })?;
        let stores = open_stores(&self.dir.join("swap"))?;
        let archiver = self.archiver(stores, 1)?;
        let (policy, runtime) = (&self.policy, &self.runtime);
        let cases = vec![
            Case {
                rows: vec![0],
                run: Box::new(|| {
                    let (t, p) = timed(|| Ok(cold.load_file(policy)?))?;
                    ensure!(!p.from_cache, "the cold load came from a cache");
                    Ok(vec![t])
                }),
            },
            Case {
                rows: vec![1],
                run: Box::new(|| {
                    let (t, p) = timed(|| Ok(runtime.load_file(policy)?))?;
                    ensure!(p.from_cache, "the cached load compiled");
                    Ok(vec![t])
                }),
            },
            Case {
                rows: vec![2],
                run: Box::new(|| {
                    let (t, s) = timed(|| Ok(archiver.swap_policy(policy)?))?;
                    ensure!(s.from_cache, "the swap compiled");
                    Ok(vec![t])
                }),
            },
        ];
        interleave(&mut g, self.plan.rounds, cases)?;
        self.groups.push(g);
        Ok(())
    }
}
