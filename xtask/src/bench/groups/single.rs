//! One session on one core: archive, restore and export against the seed's way, gzip and pigz,
//! and the deflate ceiling (`bench::ceiling`) measured on the same bytes in the same rounds.

use std::fs::{self, File};
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Result};
use session_archiver::store::{Clock, SystemClock};

use crate::bench::baselines::{run_tool, seed_archive, seed_restore};
use crate::bench::ceiling::{native_deflate, Sandbox};
use crate::bench::corpus::{create_session, open_stores};
use crate::bench::harness::{interleave, timed, Case, Group, Row, Target, Unit};
use crate::bench::{Bench, DAY_MS, MB, MIB, ONE_MEMBER_CONFIG};
use crate::cmd;

impl Bench {
    /// One session: WASM archive/restore against the seed's way and gzip/pigz, on one core and
    /// (parallel members) on every core.
    pub(crate) fn single_group(&mut self) -> Result<()> {
        let size = self.plan.single_bytes;
        cmd::section(&format!("one session of {} MiB, one core", size / MIB));
        let dir = self.dir.join("single");
        let id = "bench-single";
        let raw = dir.join("single.jsonl");
        let idle = SystemClock.now_ms() - 10 * DAY_MS;
        let bytes = create_session(&dir, id, 0x5149_e61e, size, idle, Some(&raw))?;
        let stores = open_stores(&dir)?;
        let archiver = self.archiver(stores.clone(), 1)?;
        let nproc = self.plan.workers;
        let archiver_n = self.archiver(stores.clone(), nproc)?;
        let archiver_one = self.archiver_with_config(stores.clone(), 1, ONE_MEMBER_CONFIG)?;
        let tput = Unit::Throughput(bytes);

        let mut rows = vec![
            // 0
            Row::new(
                "archive, WASM policy (SQLite → guest gzip → file, + read-back verify)",
                tput,
            ),
            // 1
            Row::new(
                "archive, seed-style native baseline (whole read, flate2 -6, write)",
                tput,
            ),
            // 2
            Row::new("`gzip -6` (file → file)", tput),
            // 3
            Row::new(format!("`pigz -6 -p {nproc}` (file → file)"), tput),
            // 4
            Row::new("restore, WASM policy (file → guest inflate → SQLite)", tput),
            // 5
            Row::new(
                "restore, seed-style native (whole gunzip in memory, SQLite append)",
                tput,
            ),
            // 6
            Row::new("`gzip -d` (file → file)", tput),
            // 7
            Row::new(
                "export of the archived session, WASM policy (file → guest inflate → file)",
                tput,
            ),
            // 8
            Row::new(
                format!(
                    "archive, WASM policy, workers = {nproc} (parallel 4 MiB gzip members, one \
                     instance each, + read-back verify)"
                ),
                tput,
            ),
            // 9
            Row::new(
                format!("the same, workers = {nproc}, against `pigz -6 -p {nproc}`"),
                tput,
            ),
            // 10
            Row::new(
                "archive, WASM policy, one member deflated in the policy instance (parallel \
                 path off)",
                tput,
            ),
            // 11
            Row::new(
                "ceiling: miniz_oxide deflate -6 alone in the sandbox, one core (the runtime's \
                 engine: Cranelift, epoch checks)",
                tput,
            ),
            // 12
            Row::new(
                "the same with epoch interruption off (what the checks cost; the sandbox needs \
                 them to stop a looping policy)",
                tput,
            ),
            // 13
            Row::new(
                "the same deflate natively (LLVM, in the bench process): the Cranelift factor",
                tput,
            ),
            // 14
            Row::new(
                format!(
                    "ceiling on {nproc} cores: {nproc} instances of the runtime's engine at once, \
                     1/{nproc} of the bytes each"
                ),
                tput,
            ),
            // 15
            Row::new(
                format!(
                    "restore, WASM policy, workers = {nproc} (the members inflated on helper \
                     instances in parallel)"
                ),
                tput,
            ),
            // 16
            Row::new(
                format!(
                    "export, WASM policy, workers = {nproc} (the members inflated on helper \
                     instances in parallel)"
                ),
                tput,
            ),
        ];
        rows[0].target = Target::AtLeastTimes {
            factor: 0.70,
            of: 1,
            label: "seed-style",
        };
        for r in &mut rows[4..8] {
            r.vs = Some(5);
        }
        rows[4].target = Target::AtLeastTimes {
            factor: 1.0,
            of: 5,
            label: "seed-style native restore",
        };
        rows[7].target = Target::AtLeastTimes {
            factor: 1.0,
            of: 6,
            label: "`gzip -d`",
        };
        rows[15].vs = Some(5);
        rows[15].target = rows[4].target.clone();
        rows[16].vs = Some(5);
        rows[16].target = rows[7].target.clone();
        rows[8].target = Target::AtLeastTimes {
            factor: 1.2,
            of: 1,
            label: "seed-style (one thread)",
        };
        rows[9].vs = Some(3);
        rows[9].target = Target::AtLeastTimes {
            factor: 0.75,
            of: 3,
            label: "`pigz`",
        };
        if !self.pigz {
            rows[3].missing = Some("pigz not installed".into());
        }
        if nproc < 2 {
            rows[14].missing = Some("one core: the row above".into());
        }
        let mut g = Group {
            title: format!(
                "One session ({:.1} MB agent JSONL), one core and {nproc} workers",
                bytes as f64 / MB
            ),
            rows,
            baseline: Some(1),
            notes: vec![],
        };

        let seed_gz = dir.join("seed.jsonl.gz");
        let gz_out = dir.join("gzip-out.jsonl.gz");
        let gunzip_out = dir.join("gunzip-out.jsonl");
        let export_out = dir.join("export-out.jsonl");
        // The input of `gzip -d`: gzip -6 of the same bytes.
        let gz_in = dir.join("single.jsonl.gz");
        run_tool(Command::new("gzip").args(["-6", "-c"]).arg(&raw), &gz_in)?;
        let files = stores.files.clone();
        // Warm-up, and the seed's archive for its restore.
        seed_archive(files.as_ref(), id, &seed_gz)?;

        // The ceiling rows: the session's bytes deflated by the probe module on the runtime's
        // own engine, on one without epochs, and natively (whose length the others must match:
        // the same code on the same bytes). The native run is also the warm-up.
        let session = fs::read(&raw)?;
        let sandbox = Sandbox::new(self.runtime.engine(), &self.deflate_probe, true)?;
        let no_epochs = Sandbox::new(
            &Sandbox::engine_without_epochs()?,
            &self.deflate_probe,
            false,
        )?;
        let (_, deflated) = native_deflate(&session)?;
        let same_length = |n: usize, what: &str| {
            ensure!(
                n == deflated,
                "{what}: {n} compressed bytes, natively {deflated}"
            );
            Ok(())
        };

        let mut ratio_wasm = None;
        let mut ratio_one = None;
        let p = nproc.to_string();
        let mut cases = vec![
            Case {
                rows: vec![0, 7, 4],
                run: Box::new(|| {
                    let (ta, a) = timed(|| Ok(archiver.archive(id)?))?;
                    ensure!(
                        a.value.raw_bytes == bytes,
                        "archived {} bytes",
                        a.value.raw_bytes
                    );
                    ratio_wasm = Some(a.value.archive_bytes as f64 / bytes as f64);
                    let (te, e) = timed(|| {
                        let out = std::io::BufWriter::new(File::create(&export_out)?);
                        Ok(archiver.export(id, out)?)
                    })?;
                    ensure!(e.value.bytes == bytes, "exported {}", e.value.bytes);
                    let (tr, r) = timed(|| Ok(archiver.restore(id)?))?;
                    ensure!(
                        r.value.archived_bytes == bytes,
                        "restored {}",
                        r.value.archived_bytes
                    );
                    Ok(vec![ta, te, tr])
                }),
            },
            Case {
                rows: vec![8, 9, 16, 15],
                run: Box::new(|| {
                    let (ta, a) = timed(|| Ok(archiver_n.archive(id)?))?;
                    ensure!(
                        a.value.raw_bytes == bytes,
                        "archived {} bytes",
                        a.value.raw_bytes
                    );
                    let (te, e) = timed(|| {
                        let out = std::io::BufWriter::new(File::create(&export_out)?);
                        Ok(archiver_n.export(id, out)?)
                    })?;
                    ensure!(
                        e.value.bytes == bytes,
                        "exported {} at workers = n",
                        e.value.bytes
                    );
                    let (tr, r) = timed(|| Ok(archiver_n.restore(id)?))?;
                    ensure!(r.value.archived_bytes == bytes, "restore after workers = n");
                    Ok(vec![ta, ta, te, tr])
                }),
            },
            Case {
                rows: vec![11],
                run: Box::new(|| {
                    let (t, n) = sandbox.deflate(&session)?;
                    same_length(n, "the sandbox's deflate")?;
                    Ok(vec![t])
                }),
            },
            Case {
                rows: vec![12],
                run: Box::new(|| {
                    let (t, n) = no_epochs.deflate(&session)?;
                    same_length(n, "the deflate without epochs")?;
                    Ok(vec![t])
                }),
            },
            Case {
                rows: vec![13],
                run: Box::new(|| {
                    let (t, n) = native_deflate(&session)?;
                    same_length(n, "the native deflate")?;
                    Ok(vec![t])
                }),
            },
            Case {
                rows: vec![10],
                run: Box::new(|| {
                    let (ta, a) = timed(|| Ok(archiver_one.archive(id)?))?;
                    ensure!(
                        a.value.raw_bytes == bytes,
                        "archived {} bytes",
                        a.value.raw_bytes
                    );
                    ratio_one = Some(a.value.archive_bytes as f64 / bytes as f64);
                    let r = archiver_one.restore(id)?;
                    ensure!(r.value.archived_bytes == bytes, "restore after one member");
                    Ok(vec![ta])
                }),
            },
            Case {
                rows: vec![1],
                run: Box::new(|| {
                    Ok(vec![
                        timed(|| seed_archive(files.as_ref(), id, &seed_gz))?.0,
                    ])
                }),
            },
            Case {
                rows: vec![5],
                run: Box::new(|| {
                    let (t, n) = timed(|| seed_restore(files.as_ref(), &seed_gz))?;
                    ensure!(n == bytes, "seed restore made {n} bytes");
                    Ok(vec![t])
                }),
            },
            Case {
                rows: vec![2],
                run: Box::new(|| {
                    Ok(vec![
                        timed(|| {
                            run_tool(Command::new("gzip").args(["-6", "-c"]).arg(&raw), &gz_out)
                        })?
                        .0,
                    ])
                }),
            },
            Case {
                rows: vec![6],
                run: Box::new(|| {
                    Ok(vec![
                        timed(|| {
                            run_tool(
                                Command::new("gzip").args(["-d", "-c"]).arg(&gz_in),
                                &gunzip_out,
                            )
                        })?
                        .0,
                    ])
                }),
            },
        ];
        if self.pigz {
            cases.push(Case {
                rows: vec![3],
                run: Box::new(|| {
                    Ok(vec![
                        timed(|| {
                            run_tool(
                                Command::new("pigz").args(["-6", "-p", &p, "-c"]).arg(&raw),
                                &gz_out,
                            )
                        })?
                        .0,
                    ])
                }),
            });
        }
        if nproc >= 2 {
            cases.push(Case {
                rows: vec![14],
                run: Box::new(|| {
                    let (t, n) = sandbox.deflate_parallel(&session, nproc)?;
                    ensure!(n > 0, "{nproc} probe instances wrote nothing");
                    Ok(vec![t])
                }),
            });
        }
        interleave(&mut g, self.plan.rounds, cases)?;
        // Samples are seconds: a time ratio is the inverse speed ratio.
        let speed = |fast: usize, slow: usize| {
            let (f, s) = (g.rows[fast].median(), g.rows[slow].median());
            f.zip(s).map_or(f64::NAN, |(f, s)| s / f)
        };
        g.notes.push(format!(
            "deflate alone (the ceiling rows): native {:.2}× the sandbox's speed (Cranelift \
             against LLVM on the same miniz_oxide code), without epoch checks {:.2}×; the \
             one-core archive reaches {:.0} % of the sandbox's deflate alone",
            speed(13, 11),
            speed(12, 11),
            100.0 * speed(0, 11),
        ));
        let size_of = |p: &Path| {
            fs::metadata(p)
                .map(|m| m.len() as f64 / bytes as f64)
                .unwrap_or(0.0)
        };
        let (members, one) = (ratio_wasm.unwrap_or(0.0), ratio_one.unwrap_or(0.0));
        g.notes.push(format!(
            "compressed size / raw, one session: WASM policy, 4 MiB members {members:.4}, one \
             member {one:.4}, seed-style flate2 {:.4}, gzip -6 {:.4}",
            size_of(&seed_gz),
            size_of(&gz_in),
        ));
        let extra = if one > 0.0 {
            100.0 * (members / one - 1.0)
        } else {
            f64::NAN
        };
        g.notes.push(format!(
            "target: compressed size, parallel members vs one member ≤ +0.5 % — {} ({extra:+.2} %)",
            if extra <= 0.5 {
                "**met**"
            } else {
                "**missed**"
            }
        ));
        self.groups.push(g);
        Ok(())
    }
}
