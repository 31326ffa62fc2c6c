//! Archive and restore with the archives in an S3 bucket (moto on the loopback address) against
//! the same on the filesystem.

use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use session_archiver::archive_dir::object::{ObjectArchiveDir, S3Options};
use session_archiver::host::Stores;
use session_archiver::store::{Clock, SystemClock};
use session_archiver_testkit::moto::{self, Moto};

use crate::bench::corpus::{create_session, open_stores};
use crate::bench::harness::{interleave, timed, Case, Group, Row, Unit};
use crate::bench::{Bench, DAY_MS, MB, MIB};
use crate::cmd;

/// The session's size cap: moto keeps objects in its own memory.
const MAX_BYTES: u64 = 64 * MIB;

impl Bench {
    /// One session archived and restored to a local S3 server and to a directory.
    pub(crate) fn s3_group(&mut self) -> Result<()> {
        let size = self.plan.single_bytes.min(MAX_BYTES);
        cmd::section(&format!(
            "one session of {} MiB, archives in S3 (moto) vs a directory",
            size / MIB
        ));
        let moto = Moto::start();
        moto.create_bucket("bench");
        let id = "bench-s3";
        let idle = SystemClock.now_ms() - 10 * DAY_MS;
        let fs_dir = self.dir.join("s3-vs-fs/fs");
        let s3_dir = self.dir.join("s3-vs-fs/s3");
        let bytes = create_session(&fs_dir, id, 0x53_b0c7, size, idle, None)?;
        let same = create_session(&s3_dir, id, 0x53_b0c7, size, idle, None)?;
        ensure!(bytes == same, "the two copies differ: {bytes} and {same}");
        let fs_archiver = self.archiver(open_stores(&fs_dir)?, 1)?;
        let local = open_stores(&s3_dir)?;
        let bucket = ObjectArchiveDir::s3(
            "s3://bench/archives",
            &S3Options {
                endpoint: Some(moto.endpoint.clone()),
                region: Some(moto::REGION.into()),
                credentials: Some((moto::ACCESS_KEY.into(), moto::SECRET_KEY.into())),
            },
        )
        .context("opening the bucket on moto")?;
        let s3_archiver = self.archiver(
            Stores {
                archive_dir: Arc::new(bucket),
                ..local
            },
            1,
        )?;
        let tput = Unit::Throughput(bytes);
        let mut rows = vec![
            // 0
            Row::new("archive to a directory (fsync, rename)", tput),
            // 1
            Row::new(
                "archive to S3 (moto on 127.0.0.1: one PUT, or 5 MiB parts past 5 MiB; + read-back verify)",
                tput,
            ),
            // 2
            Row::new("restore from a directory", tput),
            // 3
            Row::new(
                "restore from S3 (moto on 127.0.0.1: one streamed GET)",
                tput,
            ),
        ];
        rows[2].vs = Some(2);
        rows[3].vs = Some(2);
        let mut g = Group {
            title: format!(
                "Archives in S3 vs a directory: one session ({:.1} MB), one core",
                bytes as f64 / MB
            ),
            rows,
            baseline: Some(0),
            notes: vec![
                "moto is a Python server: these rows bound the client's overhead on loopback, \
                 not what a real S3 endpoint over a network gives"
                    .into(),
            ],
        };
        let cycle = |a: &session_archiver::Archiver| -> Result<Vec<f64>> {
            let (ta, out) = timed(|| Ok(a.archive(id)?))?;
            ensure!(
                out.value.raw_bytes == bytes,
                "archived {}",
                out.value.raw_bytes
            );
            let (tr, r) = timed(|| Ok(a.restore(id)?))?;
            ensure!(
                r.value.archived_bytes == bytes,
                "restored {}",
                r.value.archived_bytes
            );
            Ok(vec![ta, tr])
        };
        let cases = vec![
            Case {
                rows: vec![0, 2],
                run: Box::new(|| cycle(&fs_archiver)),
            },
            Case {
                rows: vec![1, 3],
                run: Box::new(|| cycle(&s3_archiver)),
            },
        ];
        interleave(&mut g, self.plan.rounds, cases)?;
        self.groups.push(g);
        Ok(())
    }
}
