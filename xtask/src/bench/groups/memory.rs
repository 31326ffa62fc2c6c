//! Peak memory of one operation on the largest session, each in a fresh process (see `probe`).

use std::time::Instant;

use anyhow::Result;
use session_archiver::store::{Clock, SystemClock};

use crate::bench::corpus::create_session;
use crate::bench::harness::{Group, Row, Target, Unit};
use crate::bench::{Bench, DAY_MS, MB, MIB};
use crate::cmd;

impl Bench {
    /// Peak RSS and guest memory of archive/export/restore of the largest session, each in a
    /// fresh child process; the seed's way for comparison.
    pub(crate) fn memory_group(&mut self) -> Result<()> {
        let size = self.plan.big_bytes;
        cmd::section(&format!("memory: one session of {} MiB", size / MIB));
        let dir = self.dir.join("big");
        let id = "bench-big";
        let t = Instant::now();
        let idle = SystemClock.now_ms() - 10 * DAY_MS;
        let bytes = create_session(&dir, id, 0xb16, size, idle, None)?;
        println!(
            "  corpus: {:.0} MB in {:.1} s",
            bytes as f64 / MB,
            t.elapsed().as_secs_f64()
        );
        let label = if bytes >= 1 << 30 {
            "1 GiB".to_string()
        } else {
            format!("{} MiB", bytes / MIB)
        };
        let mut g = Group {
            title: format!("Memory: one {label} session, each operation in a fresh process"),
            rows: vec![],
            baseline: None,
            notes: vec![],
        };
        let rss_target = Target::MemoryAtMost(64 * MIB);
        let guest_target = Target::MemoryAtMost(16 * MIB);
        // `archive-parallel` last: it leaves the session archived, and the seed's archive reads
        // the live output.
        for op in [
            "archive",
            "export",
            "restore",
            "seed-archive",
            "archive-parallel",
        ] {
            let p = self.probe(&dir, op, id)?;
            let speed = bytes as f64 / MB / p.secs;
            println!(
                "  {op}: {:.1} s ({speed:.1} MB/s), peak RSS {:.1} MiB, guest {:.1} MiB",
                p.secs,
                p.rss as f64 / MIB as f64,
                p.guest as f64 / MIB as f64
            );
            let what = match op {
                "seed-archive" => "seed-style native archive".to_string(),
                "archive-parallel" => "archive, workers = 2, parallel members".to_string(),
                op => format!("{op}, WASM policy"),
            };
            let mut rss = Row::new(
                format!("peak RSS, {what} ({:.0} MB/s)", speed),
                Unit::Memory,
            );
            rss.samples.push(p.rss as f64);
            if op != "seed-archive" {
                rss.target = rss_target.clone();
            }
            g.rows.push(rss);
            if op != "seed-archive" {
                let mut guest = Row::new(format!("peak guest linear memory, {op}"), Unit::Memory);
                guest.samples.push(p.guest as f64);
                guest.target = guest_target.clone();
                g.rows.push(guest);
            }
        }
        if bytes < 1 << 30 {
            g.notes.push(
                "the 64 MiB target is for a 1 GiB session: `cargo xtask bench --big` measures that"
                    .into(),
            );
        }
        self.groups.push(g);
        Ok(())
    }
}
