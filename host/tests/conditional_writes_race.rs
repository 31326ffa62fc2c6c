//! `delete_if_unchanged` and `rename_if_unchanged` on the SQLite file store against a writer that
//! is not transactional, the way AgentMux appends: each part it touches in its own autocommit
//! statement, then `UPDATE db_wave_file SET size` in another. The test drives the interleaving
//! step by step — the conditional operation runs before the append, after each part write, and
//! after the size update — for every combination of start size and append length around part
//! boundaries, on plain and (not yet wrapped) circular files: a few thousand interleavings, each
//! checked to lose no byte.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use session_archiver::store::sqlite_files::{round_circular_max, SqliteFiles, PART_SIZE};
use session_archiver::store::{FileOpts, FileStat, FileStore, StoreError, OUTPUT_FILE};

const PS: u64 = PART_SIZE;
const SCRATCH: &str = "restore-tmp";

/// Deterministic bytes, different for every case.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One statement of the writer's append.
enum Step {
    /// `INSERT OR REPLACE` part `index` with `bytes` written at `off`.
    Part {
        index: i64,
        off: usize,
        bytes: Vec<u8>,
    },
    /// `UPDATE db_wave_file SET size = ?, modts = ?`.
    Size(u64),
}

/// A faithful double of AgentMux's append, computed from the size it has cached and run one
/// autocommit statement at a time on its own connection.
struct AppAppend {
    zone: String,
    steps: Vec<Step>,
    next: usize,
    /// Rows the size update changed (`None` until it ran).
    size_rows: Option<usize>,
}

impl AppAppend {
    fn new(zone: &str, cached_size: u64, circular_max: Option<u64>, data: &[u8]) -> Self {
        let mut steps = Vec::new();
        let mut pos = cached_size;
        let mut rest = data;
        while !rest.is_empty() {
            let lp = pos / PS;
            let off = (pos % PS) as usize;
            let take = (PS as usize - off).min(rest.len());
            let index = match circular_max {
                Some(max) => lp % (max / PS),
                None => lp,
            } as i64;
            steps.push(Step::Part {
                index,
                off,
                bytes: rest[..take].to_vec(),
            });
            pos += take as u64;
            rest = &rest[take..];
        }
        steps.push(Step::Size(cached_size + data.len() as u64));
        Self {
            zone: zone.to_owned(),
            steps,
            next: 0,
            size_rows: None,
        }
    }

    fn len(&self) -> usize {
        self.steps.len()
    }

    /// Runs the next statement.
    fn step(&mut self, conn: &Connection) {
        let zone = &self.zone;
        match &self.steps[self.next] {
            Step::Part { index, off, bytes } => {
                let old: Vec<u8> = conn
                    .query_row(
                        "SELECT data FROM db_file_data WHERE zoneid = ?1 AND name = ?2 AND partidx = ?3",
                        params![zone, OUTPUT_FILE, index],
                        |r| r.get(0),
                    )
                    .optional()
                    .unwrap()
                    .unwrap_or_default();
                let mut new = old.clone();
                new.resize(new.len().max(*off), 0);
                let end = off + bytes.len();
                if new.len() < end {
                    new.truncate(*off);
                    new.extend_from_slice(bytes);
                } else {
                    new[*off..end].copy_from_slice(bytes);
                }
                conn.execute(
                    "INSERT OR REPLACE INTO db_file_data (zoneid, name, partidx, data) VALUES (?1, ?2, ?3, ?4)",
                    params![zone, OUTPUT_FILE, index, new],
                )
                .unwrap();
            }
            Step::Size(size) => {
                let rows = conn
                    .execute(
                        "UPDATE db_wave_file SET size = ?3, modts = modts + 1 WHERE zoneid = ?1 AND name = ?2",
                        params![zone, OUTPUT_FILE, *size as i64],
                    )
                    .unwrap();
                self.size_rows = Some(rows);
            }
        }
        self.next += 1;
    }

    fn finish(&mut self, conn: &Connection) {
        while self.next < self.steps.len() {
            self.step(conn);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Delete,
    Rename,
}

/// Every byte the file holds, read through the store.
fn read_all(files: &SqliteFiles, zone: &str, name: &str) -> Option<Vec<u8>> {
    let stat = files.stat(zone, name).unwrap()?;
    let mut pos = match stat.circular_max_size {
        Some(max) => stat.size.saturating_sub(max),
        None => 0,
    };
    let mut out = Vec::new();
    while pos < stat.size {
        let chunk = files.read(zone, name, pos, 1 << 20).unwrap();
        assert!(
            !chunk.is_empty(),
            "{zone}/{name}: nothing at {pos} of {}",
            stat.size
        );
        pos += chunk.len() as u64;
        out.extend_from_slice(&chunk);
    }
    Some(out)
}

/// The bytes a file of this kind holds after `logical` was appended to it.
fn held(logical: &[u8], circular_max: Option<u64>) -> &[u8] {
    match circular_max {
        Some(max) => &logical[logical.len().saturating_sub(max as usize)..],
        None => logical,
    }
}

/// A database on tmpfs when there is one: thousands of commits, each one fsynced.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

struct Counts {
    interleavings: usize,
    conflicts: usize,
    done: usize,
}

/// Runs every interleaving of one append against `op`; returns how many ran.
#[allow(clippy::too_many_arguments)]
fn race(
    files: &SqliteFiles,
    app: &Connection,
    case: u64,
    start: u64,
    len: usize,
    circular: Option<u64>,
    op: Op,
    counts: &mut Counts,
) {
    let initial = pattern(start as usize, case);
    let data = pattern(len, case + 1_000_000);
    let restored = pattern(100, case + 2_000_000);
    let opts = FileOpts {
        circular_max_size: circular,
    };
    let circular = circular.map(round_circular_max);
    let steps = AppAppend::new("z", start, circular, &data).len();
    for cut in 0..=steps {
        let zone = format!("z{case}-{cut}-{op:?}");
        files.create(&zone, OUTPUT_FILE, opts).unwrap();
        for c in initial.chunks(1 << 20) {
            files.append(&zone, OUTPUT_FILE, c).unwrap();
        }
        if op == Op::Rename {
            files.create(&zone, SCRATCH, FileOpts::default()).unwrap();
            files.append(&zone, SCRATCH, &restored).unwrap();
        }
        let expected: FileStat = files.stat(&zone, OUTPUT_FILE).unwrap().unwrap();
        let mut writer = AppAppend::new(&zone, start, circular, &data);
        for _ in 0..cut {
            writer.step(app);
        }
        let result = match op {
            Op::Delete => files.delete_if_unchanged(&zone, OUTPUT_FILE, &expected),
            Op::Rename => files.rename_if_unchanged(&zone, SCRATCH, OUTPUT_FILE, Some(&expected)),
        };
        let what = format!(
            "{op:?} of a {start}-byte file (circular {circular:?}) after {cut} of the {steps} \
             statements of a {len}-byte append"
        );
        counts.interleavings += 1;
        if cut == 0 {
            // Nobody is writing: the file is unchanged and the operation must go ahead.
            result.unwrap_or_else(|e| panic!("{what}: {e}"));
            counts.done += 1;
            match op {
                Op::Delete => assert_eq!(files.stat(&zone, OUTPUT_FILE).unwrap(), None, "{what}"),
                Op::Rename => assert_eq!(
                    read_all(files, &zone, OUTPUT_FILE).as_deref(),
                    Some(&restored[..]),
                    "{what}"
                ),
            }
            files.delete(&zone, OUTPUT_FILE).ok();
            continue;
        }
        match result {
            Err(StoreError::Conflict(_)) => counts.conflicts += 1,
            other => panic!("{what}: the writer's bytes would be lost, got {other:?}"),
        }
        // The operation did nothing: the writer finishes and every byte is in the live file.
        writer.finish(app);
        assert_eq!(writer.size_rows, Some(1), "{what}: the file's row is gone");
        let mut logical = initial.clone();
        logical.extend_from_slice(&data);
        let live = read_all(files, &zone, OUTPUT_FILE).expect("live file");
        assert!(
            live == held(&logical, circular),
            "{what}: the live file lost or garbled bytes ({} bytes, expected {})",
            live.len(),
            held(&logical, circular).len()
        );
        if op == Op::Rename {
            assert_eq!(
                read_all(files, &zone, SCRATCH).as_deref(),
                Some(&restored[..]),
                "{what}: the source was touched"
            );
            files.delete(&zone, SCRATCH).unwrap();
        }
        files.delete(&zone, OUTPUT_FILE).unwrap();
    }
}

fn sizes_around_parts(parts: u64) -> Vec<u64> {
    let mut v = Vec::new();
    for p in 0..=parts {
        for d in [-2i64, -1, 0, 1, 2, (PS / 2) as i64] {
            let s = (p * PS) as i64 + d;
            if s >= 0 {
                v.push(s as u64);
            }
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

const LENGTHS: [usize; 10] = [
    1,
    2,
    7,
    (PS / 2) as usize,
    PS as usize - 1,
    PS as usize,
    PS as usize + 1,
    2 * PS as usize - 1,
    2 * PS as usize + 3,
    3 * PS as usize + 5,
];

fn run(circular: Option<u64>, starts: &[u64]) -> Counts {
    let dir = scratch_dir();
    let path = dir.path().join("filestore.db");
    let files = SqliteFiles::open(&path).unwrap();
    let app = Connection::open(&path).unwrap();
    app.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    let mut counts = Counts {
        interleavings: 0,
        conflicts: 0,
        done: 0,
    };
    let mut case = 0;
    for &start in starts {
        for len in LENGTHS {
            for op in [Op::Delete, Op::Rename] {
                case += 1;
                race(&files, &app, case, start, len, circular, op, &mut counts);
            }
        }
    }
    eprintln!(
        "circular {circular:?}: {} interleavings, {} conflicts, {} done",
        counts.interleavings, counts.conflicts, counts.done
    );
    counts
}

#[test]
fn a_writer_between_parts_and_size_is_never_deleted_or_renamed_under() {
    let counts = run(None, &sizes_around_parts(3));
    assert!(counts.interleavings >= 1500, "{}", counts.interleavings);
    assert_eq!(counts.interleavings, counts.conflicts + counts.done);
}

#[test]
fn a_writer_on_a_circular_file_that_has_not_wrapped_is_seen_too() {
    let max = 4 * PS;
    let starts: Vec<u64> = sizes_around_parts(4)
        .into_iter()
        .filter(|&s| s < max)
        .collect();
    let counts = run(Some(max), &starts);
    assert!(counts.interleavings >= 1000, "{}", counts.interleavings);
}

#[test]
fn parts_left_past_the_size_by_a_crashed_writer_keep_the_file() {
    // The app died between writing a part and updating the size: the stat is the one the
    // archiver saw, but the parts hold bytes it never read.
    let dir = scratch_dir();
    let path = dir.path().join("filestore.db");
    let files = SqliteFiles::open(&path).unwrap();
    let app = Connection::open(&path).unwrap();
    files.create("z", OUTPUT_FILE, FileOpts::default()).unwrap();
    files.append("z", OUTPUT_FILE, &pattern(10, 1)).unwrap();
    let stat = files.stat("z", OUTPUT_FILE).unwrap().unwrap();
    let mut writer = AppAppend::new("z", 10, None, b"never counted");
    writer.step(&app);
    let err = files
        .delete_if_unchanged("z", OUTPUT_FILE, &stat)
        .unwrap_err();
    let StoreError::Conflict(msg) = err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("z/output") && msg.contains("23 bytes"),
        "{msg}"
    );
    assert_eq!(files.stat("z", OUTPUT_FILE).unwrap(), Some(stat));
}
