//! The file store on `filestore.db`, in the Wave/AgentMux layout: one `db_wave_file` row per file
//! and its bytes in 64 KiB parts in `db_file_data`.
//!
//! Files can be gigabytes and the app appends while we read, so every read touches only the parts
//! of the requested range, inside one read transaction (a consistent snapshot of size and parts),
//! and every write is one `BEGIN IMMEDIATE` transaction that checks and changes the file together.
//!
//! Circular files keep only their last `maxsize` bytes: logical offset `o` lives in part
//! `(o / 65536) % (maxsize / 65536)` at `o % 65536`, with `maxsize` rounded up to whole parts.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::sqlite_objects::{is_constraint, open_connection};
use super::wal_checkpointer::{WalCheckpointer, BACKSTOP_PAGES};
use super::{
    Clock, FileOpts, FileStat, FileStore, Meta, StoreError, SystemClock, MAX_CHUNK, SCRATCH_FILE,
};

/// Bytes per row of `db_file_data` (Wave's `DefaultPartDataSize`).
pub const PART_SIZE: u64 = 64 * 1024;

/// `filestore.db` behind one connection, and a second one that checkpoints its WAL.
pub struct SqliteFiles {
    conn: Mutex<Connection>,
    clock: Arc<dyn Clock>,
    /// `None` on a read-only store, or where the thread could not start (the writer's own
    /// autocheckpoint then does all the work, at SQLite's default interval).
    wal: Option<WalCheckpointer>,
}

impl std::fmt::Debug for SqliteFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteFiles").finish_non_exhaustive()
    }
}

/// Rounds a circular size up to whole parts, as Wave does when it makes the file.
pub fn round_circular_max(max: u64) -> u64 {
    max.div_ceil(PART_SIZE).max(1) * PART_SIZE
}

/// The `opts` JSON shape the app writes.
fn opts_json(opts: FileOpts) -> String {
    match opts.circular_max_size {
        Some(max) => format!(r#"{{"maxsize":{max},"circular":true,"ijson":false}}"#),
        None => r#"{"maxsize":0,"circular":false,"ijson":false}"#.to_owned(),
    }
}

/// The part of `opts` we act on; every other key (`ijson`, `ijsonbudget`, ...) is ignored.
#[derive(serde::Deserialize, Default)]
struct WaveOpts {
    #[serde(default)]
    maxsize: Option<i64>,
    #[serde(default)]
    circular: Option<bool>,
}

/// A `db_wave_file` row as we use it.
struct FileRow {
    stat: FileStat,
}

impl FileRow {
    /// The physical part holding logical part `lp`.
    fn part_index(&self, lp: u64) -> i64 {
        let p = match self.stat.circular_max_size {
            Some(max) => lp % (max / PART_SIZE),
            None => lp,
        };
        p as i64
    }

    /// The first logical byte still held.
    fn first_held(&self) -> u64 {
        match self.stat.circular_max_size {
            Some(max) => self.stat.size.saturating_sub(max),
            None => 0,
        }
    }
}

fn where_(zone: &str, name: &str) -> String {
    format!("file {zone}/{name}")
}

fn parse_opts(zone: &str, name: &str, opts: &[u8]) -> Result<Option<u64>, StoreError> {
    let trimmed = opts.trim_ascii();
    let opts: WaveOpts = if trimmed.is_empty() || trimmed == b"null" {
        WaveOpts::default()
    } else {
        serde_json::from_slice(trimmed)
            .map_err(|e| StoreError::Io(format!("{}: bad opts JSON: {e}", where_(zone, name))))?
    };
    if !opts.circular.unwrap_or(false) {
        return Ok(None);
    }
    match opts.maxsize {
        Some(max) if max > 0 => Ok(Some(round_circular_max(max as u64))),
        _ => Err(StoreError::Io(format!(
            "{}: circular file without a positive maxsize",
            where_(zone, name)
        ))),
    }
}

type RawRow = (i64, i64, i64, Vec<u8>);

fn raw_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<RawRow> {
    Ok((
        r.get(first)?,
        r.get(first + 1)?,
        r.get(first + 2)?,
        r.get_ref(first + 3)?.as_bytes().map(<[u8]>::to_vec)?,
    ))
}

fn to_row(zone: &str, name: &str, raw: RawRow) -> Result<FileRow, StoreError> {
    let (size, created_ms, modified_ms, opts) = raw;
    Ok(FileRow {
        stat: FileStat {
            size: u64::try_from(size).map_err(|_| {
                StoreError::Io(format!("{}: negative size {size}", where_(zone, name)))
            })?,
            created_ms,
            modified_ms,
            circular_max_size: parse_opts(zone, name, &opts)?,
        },
    })
}

fn load_row(conn: &Connection, zone: &str, name: &str) -> Result<Option<FileRow>, StoreError> {
    conn.prepare_cached(
        "SELECT size, createdts, modts, opts FROM db_wave_file WHERE zoneid = ?1 AND name = ?2",
    )?
    .query_row(params![zone, name], |r| raw_row(r, 0))
    .optional()?
    .map(|raw| to_row(zone, name, raw))
    .transpose()
}

fn require_row(conn: &Connection, zone: &str, name: &str) -> Result<FileRow, StoreError> {
    load_row(conn, zone, name)?.ok_or_else(|| StoreError::NotFound(where_(zone, name)))
}

fn load_part(
    conn: &Connection,
    zone: &str,
    name: &str,
    part: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT data FROM db_file_data WHERE zoneid = ?1 AND name = ?2 AND partidx = ?3",
        )?
        .query_row(params![zone, name, part], |r| {
            Ok(r.get_ref(0)?.as_bytes()?.to_vec())
        })
        .optional()?)
}

fn check_zone_name(zone: &str, name: &str) -> Result<(), StoreError> {
    if zone.is_empty() || name.is_empty() {
        return Err(StoreError::Invalid(format!(
            "empty zone or file name ({zone:?}/{name:?})"
        )));
    }
    Ok(())
}

fn delete_rows(tx: &Transaction<'_>, zone: &str, name: &str) -> Result<usize, StoreError> {
    let n = tx
        .prepare_cached("DELETE FROM db_wave_file WHERE zoneid = ?1 AND name = ?2")?
        .execute(params![zone, name])?;
    tx.prepare_cached("DELETE FROM db_file_data WHERE zoneid = ?1 AND name = ?2")?
        .execute(params![zone, name])?;
    Ok(n)
}

/// Checks that the parts of a file agree with its recorded `stat`: the highest part index and the
/// length of the part that holds the last byte are what the size says.
///
/// The apps append without one transaction: AgentMux writes the parts, then updates the size in
/// a separate statement. Between the two, the stat is the old one but the parts already hold the
/// new bytes (a longer last part, or a part past the last one); deleting or replacing the file
/// then would lose them, so that state is a `Conflict`.
///
/// A circular file that has wrapped holds every part at full length, and an append overwrites
/// the oldest bytes in place: its shape does not change, so this check can only see a part past
/// the ring there, not an overwrite in progress.
fn check_parts(
    tx: &Transaction<'_>,
    zone: &str,
    name: &str,
    stat: &FileStat,
) -> Result<(), StoreError> {
    let highest: Option<i64> = tx
        .prepare_cached("SELECT max(partidx) FROM db_file_data WHERE zoneid = ?1 AND name = ?2")?
        .query_row(params![zone, name], |r| r.get(0))?;
    // (highest part index, the part holding the last byte, that part's length)
    let expected: Option<(i64, i64, u64)> = if stat.size == 0 {
        None
    } else {
        let last_lp = (stat.size - 1) / PART_SIZE;
        match stat.circular_max_size {
            Some(max) if stat.size > max => {
                let parts = max / PART_SIZE;
                Some(((parts - 1) as i64, (last_lp % parts) as i64, PART_SIZE))
            }
            _ => Some((
                last_lp as i64,
                last_lp as i64,
                stat.size - last_lp * PART_SIZE,
            )),
        }
    };
    let conflict = |what: String| {
        Err(StoreError::Conflict(format!(
            "{} changed: its size says {} bytes but {what}; a write is in progress or was cut off",
            where_(zone, name),
            stat.size
        )))
    };
    match (highest, expected) {
        (None, None) => Ok(()),
        (Some(h), None) => conflict(format!("part {h} exists")),
        (None, Some(_)) => conflict("no part exists".to_owned()),
        (Some(h), Some((want, _, _))) if h != want => {
            conflict(format!("the highest part is {h}, not {want}"))
        }
        (Some(_), Some((_, part, len))) => {
            // octet length: `length()` of a TEXT value counts characters.
            let actual: Option<i64> = tx
                .prepare_cached(
                    "SELECT length(CAST(data AS BLOB)) FROM db_file_data
                     WHERE zoneid = ?1 AND name = ?2 AND partidx = ?3",
                )?
                .query_row(params![zone, name, part], |r| r.get(0))
                .optional()?;
            match actual {
                Some(n) if n == len as i64 => Ok(()),
                Some(n) => conflict(format!("part {part} is {n} bytes, not {len}")),
                None => conflict(format!("part {part} is missing")),
            }
        }
    }
}

/// The body of [`SqliteFiles::append`]: one `BEGIN IMMEDIATE` transaction that writes the parts
/// and the new size together.
fn append_parts(
    conn: &mut Connection,
    clock: &dyn Clock,
    zone: &str,
    name: &str,
    data: &[u8],
) -> Result<FileStat, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row = require_row(&tx, zone, name)?;
    if data.is_empty() {
        return Ok(row.stat);
    }
    let circular = row.stat.circular_max_size;
    let mut pos = row.stat.size;
    let mut bytes = data;
    // Of a chunk longer than a circular file, only its tail survives.
    if let Some(max) = circular {
        if bytes.len() as u64 > max {
            let skip = bytes.len() - max as usize;
            pos += skip as u64;
            bytes = &bytes[skip..];
        }
    }
    while !bytes.is_empty() {
        let lp = pos / PART_SIZE;
        let off = (pos % PART_SIZE) as usize;
        let take = (PART_SIZE as usize - off).min(bytes.len());
        let (chunk, rest) = bytes.split_at(take);
        let part = row.part_index(lp);
        let mut new = load_part(&tx, zone, name, part)?.unwrap_or_default();
        if new.len() < off {
            if circular.is_none() {
                return Err(StoreError::Io(format!(
                    "{}: part {part} is {} bytes, the file's size says {off}",
                    where_(zone, name),
                    new.len()
                )));
            }
            // Only reachable when skipping ahead in a circular file: these bytes are
            // overwritten later in this same loop.
            new.resize(off, 0);
        }
        if circular.is_some() && new.len() > off + take {
            // The tail still holds older bytes inside the circular window: keep it.
            new[off..off + take].copy_from_slice(chunk);
        } else {
            new.truncate(off);
            new.extend_from_slice(chunk);
        }
        tx.prepare_cached(
            "INSERT OR REPLACE INTO db_file_data (zoneid, name, partidx, data)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![zone, name, part, new])?;
        pos += take as u64;
        bytes = rest;
    }
    let stat = FileStat {
        size: row.stat.size + data.len() as u64,
        // Strictly later than before, so a stat taken before this append never matches.
        modified_ms: clock.now_ms().max(row.stat.modified_ms + 1),
        ..row.stat
    };
    tx.prepare_cached(
        "UPDATE db_wave_file SET size = ?3, modts = ?4 WHERE zoneid = ?1 AND name = ?2",
    )?
    .execute(params![zone, name, stat.size as i64, stat.modified_ms])?;
    tx.commit()?;
    Ok(stat)
}

impl SqliteFiles {
    /// Opens (or creates) `filestore.db` with the system clock; creates the two tables only when
    /// absent, in exactly the app's schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_clock(path, Arc::new(SystemClock))
    }

    /// As `open`, with the clock that stamps `createdts`/`modts`.
    pub fn open_with_clock(
        path: impl AsRef<Path>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let conn = open_connection(path.as_ref())?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS db_wave_file (
                 zoneid varchar(36) NOT NULL,
                 name varchar(200) NOT NULL,
                 size bigint NOT NULL,
                 createdts bigint NOT NULL,
                 modts bigint NOT NULL,
                 opts json NOT NULL,
                 meta json NOT NULL,
                 PRIMARY KEY (zoneid, name)
             );
             CREATE TABLE IF NOT EXISTS db_file_data (
                 zoneid varchar(36) NOT NULL,
                 name varchar(200) NOT NULL,
                 partidx int NOT NULL,
                 data blob NOT NULL,
                 PRIMARY KEY(zoneid, name, partidx)
             );",
        )?;
        let wal = match WalCheckpointer::start(path.as_ref()) {
            Ok(wal) => {
                conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES)?;
                Some(wal)
            }
            Err(e) => {
                tracing::warn!(error = %e, "checkpointing the WAL on the writing thread instead");
                None
            }
        };
        Ok(Self {
            conn: Mutex::new(conn),
            clock,
            wal,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // rusqlite rolls an open transaction back when a panic drops it: the connection is fine.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FileStore for SqliteFiles {
    fn stat(&self, zone: &str, name: &str) -> Result<Option<FileStat>, StoreError> {
        let conn = self.lock();
        Ok(load_row(&conn, zone, name)?.map(|r| r.stat))
    }

    fn read(&self, zone: &str, name: &str, offset: u64, len: u32) -> Result<Vec<u8>, StoreError> {
        if len as usize > MAX_CHUNK {
            return Err(StoreError::Invalid(format!(
                "read of {len} bytes is over the {MAX_CHUNK}-byte limit"
            )));
        }
        let mut conn = self.lock();
        // A deferred transaction: size and parts come from one snapshot even while the app
        // appends through its own connection.
        let tx = conn.transaction()?;
        let row = require_row(&tx, zone, name)?;
        super::check_held(zone, name, offset, row.first_held())?;
        let start = offset;
        if start >= row.stat.size || len == 0 {
            return Ok(Vec::new());
        }
        let end = row.stat.size.min(start + u64::from(len));
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut pos = start;
        while pos < end {
            let lp = pos / PART_SIZE;
            let off = (pos % PART_SIZE) as usize;
            let take = (PART_SIZE - off as u64).min(end - pos) as usize;
            let part = row.part_index(lp);
            let data = load_part(&tx, zone, name, part)?;
            match data {
                Some(d) if d.len() >= off + take => out.extend_from_slice(&d[off..off + take]),
                other => {
                    return Err(StoreError::Io(format!(
                        "{}: part {part} is {} but byte {pos} of {} should be in it",
                        where_(zone, name),
                        other.map_or("missing".to_owned(), |d| format!("{} bytes", d.len())),
                        row.stat.size
                    )))
                }
            }
            pos += take as u64;
        }
        Ok(out)
    }

    fn create(&self, zone: &str, name: &str, opts: FileOpts) -> Result<FileStat, StoreError> {
        check_zone_name(zone, name)?;
        let circular_max_size = match opts.circular_max_size {
            Some(0) => return Err(StoreError::Invalid("circular file of max size 0".into())),
            Some(max) => Some(round_circular_max(max)),
            None => None,
        };
        let now = self.clock.now_ms();
        let stat = FileStat {
            size: 0,
            created_ms: now,
            modified_ms: now,
            circular_max_size,
        };
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if load_row(&tx, zone, name)?.is_some() {
            return Err(StoreError::AlreadyExists(where_(zone, name)));
        }
        // Parts orphaned by a writer that did not use transactions must not leak into the file.
        delete_rows(&tx, zone, name)?;
        tx.prepare_cached(
            "INSERT INTO db_wave_file (zoneid, name, size, createdts, modts, opts, meta)
             VALUES (?1, ?2, 0, ?3, ?3, ?4, '{}')",
        )?
        .execute(params![
            zone,
            name,
            now,
            opts_json(FileOpts { circular_max_size })
        ])
        .map_err(|e| {
            if is_constraint(&e) {
                StoreError::AlreadyExists(where_(zone, name))
            } else {
                e.into()
            }
        })?;
        tx.commit()?;
        Ok(stat)
    }

    fn append(&self, zone: &str, name: &str, data: &[u8]) -> Result<FileStat, StoreError> {
        if data.len() > MAX_CHUNK {
            return Err(StoreError::Invalid(format!(
                "append of {} bytes is over the {MAX_CHUNK}-byte limit",
                data.len()
            )));
        }
        if let Some(wal) = &self.wal {
            wal.before_append();
        }
        let result = self.append_now(zone, name, data);
        if let (Some(wal), Ok(_)) = (&self.wal, &result) {
            wal.appended(data.len() as u64);
        }
        result
    }

    /// Besides the stat, the file's parts must agree with its size (`check_parts`), so a
    /// writer caught between writing parts and updating the size is seen as a change.
    fn delete_if_unchanged(
        &self,
        zone: &str,
        name: &str,
        expected: &FileStat,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = require_row(&tx, zone, name)?;
        if row.stat != *expected {
            return Err(StoreError::Conflict(format!(
                "{} changed: now {:?}, expected {:?}",
                where_(zone, name),
                row.stat,
                expected
            )));
        }
        check_parts(&tx, zone, name, &row.stat)?;
        delete_rows(&tx, zone, name)?;
        tx.commit()?;
        Ok(())
    }

    fn delete(&self, zone: &str, name: &str) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if delete_rows(&tx, zone, name)? == 0 {
            return Err(StoreError::NotFound(where_(zone, name)));
        }
        tx.commit()?;
        Ok(())
    }

    /// The renamed file keeps the source's stat (as a POSIX rename keeps the mtime). Like
    /// `delete_if_unchanged`, a target whose parts disagree with its size is a `Conflict`.
    fn rename_if_unchanged(
        &self,
        zone: &str,
        source: &str,
        target: &str,
        expected: Option<&FileStat>,
    ) -> Result<(), StoreError> {
        check_zone_name(zone, target)?;
        if source == target {
            return Err(StoreError::Invalid(format!(
                "rename of {} onto itself",
                where_(zone, source)
            )));
        }
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        require_row(&tx, zone, source)?;
        let current = load_row(&tx, zone, target)?.map(|r| r.stat);
        if current.as_ref() != expected {
            return Err(StoreError::Conflict(format!(
                "{} changed: now {current:?}, expected {expected:?}",
                where_(zone, target)
            )));
        }
        if let Some(stat) = &current {
            check_parts(&tx, zone, target, stat)?;
        }
        delete_rows(&tx, zone, target)?;
        tx.prepare_cached("UPDATE db_wave_file SET name = ?3 WHERE zoneid = ?1 AND name = ?2")?
            .execute(params![zone, source, target])?;
        tx.prepare_cached("UPDATE db_file_data SET name = ?3 WHERE zoneid = ?1 AND name = ?2")?
            .execute(params![zone, source, target])?;
        tx.commit()?;
        Ok(())
    }

    fn list_files(&self) -> Result<Vec<(String, String, FileStat)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT zoneid, name, size, createdts, modts, opts FROM db_wave_file
             ORDER BY zoneid, name",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let zone: String = r.get(0)?;
            let name: String = r.get(1)?;
            let row = to_row(&zone, &name, raw_row(r, 2)?)?;
            out.push((zone, name, row.stat));
        }
        Ok(out)
    }

    fn meta(&self, zone: &str, name: &str) -> Result<Meta, StoreError> {
        let conn = self.lock();
        let raw: Option<Vec<u8>> = conn
            .prepare_cached("SELECT meta FROM db_wave_file WHERE zoneid = ?1 AND name = ?2")?
            .query_row(params![zone, name], |r| {
                Ok(r.get_ref(0)?
                    .as_bytes_or_null()?
                    .unwrap_or_default()
                    .to_vec())
            })
            .optional()?;
        let raw = raw.ok_or_else(|| StoreError::NotFound(where_(zone, name)))?;
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() || trimmed == b"null" {
            return Ok(Meta::new());
        }
        serde_json::from_slice(trimmed)
            .map_err(|e| StoreError::Io(format!("{}: bad meta JSON: {e}", where_(zone, name))))
    }

    /// Writes the meta with the storage class the row had (the app may read it as bytes only,
    /// as AgentMux does with `db_block.data`).
    fn set_meta(&self, zone: &str, name: &str, meta: &Meta) -> Result<(), StoreError> {
        let json = serde_json::to_vec(meta)
            .map_err(|e| StoreError::Invalid(format!("{}: meta: {e}", where_(zone, name))))?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let blob: Option<bool> = tx
            .prepare_cached(
                "SELECT typeof(meta) = 'blob' FROM db_wave_file WHERE zoneid = ?1 AND name = ?2",
            )?
            .query_row(params![zone, name], |r| r.get(0))
            .optional()?;
        let blob = blob.ok_or_else(|| StoreError::NotFound(where_(zone, name)))?;
        let value = if blob {
            ValueRef::Blob(&json)
        } else {
            // serde_json writes UTF-8.
            ValueRef::Text(&json)
        };
        tx.prepare_cached("UPDATE db_wave_file SET meta = ?3 WHERE zoneid = ?1 AND name = ?2")?
            .execute(params![zone, name, ToSqlOutput::Borrowed(value)])?;
        tx.commit()?;
        Ok(())
    }
}

impl SqliteFiles {
    /// [`FileStore::append`] itself, under the connection's lock.
    fn append_now(&self, zone: &str, name: &str, data: &[u8]) -> Result<FileStat, StoreError> {
        let mut conn = self.lock();
        if name == SCRATCH_FILE {
            // The restore scratch file pays for durability once, at the rename that publishes
            // it. This connection runs in WAL mode: a commit appends its frames to the WAL, and
            // at `synchronous = NORMAL` it is not fsynced. The publishing rename commits at FULL
            // on this same connection, which fsyncs the WAL *file* after appending its own
            // frames, so every frame written before it (these appends) reaches the disk with it;
            // and a WAL commit frame is only valid on replay if every frame before it since the
            // WAL header checksums (the checksums are chained), so a committed rename can never
            // come back without the scratch parts it renames. A checkpoint in between copies
            // frames into the database only after syncing the WAL (NORMAL keeps that sync; OFF
            // would not, which is why it is not used). A crash before the rename may lose the
            // last scratch appends: recovery deletes the scratch file anyway (restore intent).
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            let result = append_parts(&mut conn, &*self.clock, zone, name, data);
            conn.pragma_update(None, "synchronous", "FULL")?;
            return result;
        }
        append_parts(&mut conn, &*self.clock, zone, name, data)
    }

    /// Opens an existing file store read-only (see `SqliteObjects::open_read_only`); its clock
    /// is never used, since nothing is written.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = super::sqlite_objects::open_read_only_connection(path.as_ref())?;
        Ok(Self {
            conn: Mutex::new(conn),
            clock: Arc::new(SystemClock),
            wal: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(files: &SqliteFiles) -> i64 {
        files
            .lock()
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn scratch_appends_leave_the_connection_at_full_durability_and_the_rename_publishes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("filestore.db");
        let files = SqliteFiles::open(&path).unwrap();
        const FULL: i64 = 2;
        assert_eq!(synchronous(&files), FULL);
        files
            .create("z", SCRATCH_FILE, FileOpts::default())
            .unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        files.append("z", SCRATCH_FILE, &data[..70_000]).unwrap();
        files.append("z", SCRATCH_FILE, &data[70_000..]).unwrap();
        assert_eq!(
            synchronous(&files),
            FULL,
            "back to FULL after a scratch append"
        );
        files
            .rename_if_unchanged("z", SCRATCH_FILE, "output", None)
            .unwrap();
        drop(files);
        let reopened = SqliteFiles::open(&path).unwrap();
        let mut got = Vec::new();
        while (got.len() as u64) < data.len() as u64 {
            let chunk = reopened
                .read("z", "output", got.len() as u64, 65_536)
                .unwrap();
            assert!(!chunk.is_empty());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, data);
        assert!(reopened.stat("z", SCRATCH_FILE).unwrap().is_none());
    }

    #[test]
    fn appends_are_checkpointed_on_the_wal_thread_and_the_wal_stays_bounded() {
        use crate::store::wal_checkpointer::{CHECKPOINT_EVERY, WAL_BOUND};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("filestore.db");
        let wal_path = dir.path().join("filestore.db-wal");
        let files = SqliteFiles::open(&path).unwrap();
        let autocheckpoint: u32 = files
            .lock()
            .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))
            .unwrap();
        assert_eq!(autocheckpoint, BACKSTOP_PAGES);
        files.create("z", "output", FileOpts::default()).unwrap();
        // Distinct bytes in every chunk, so no two parts are alike.
        let chunk = |k: u32| -> Vec<u8> {
            (0..MAX_CHUNK as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) ^ k) as u8)
                .collect()
        };
        // Made first: the appends come back to back, as a restore's do.
        let chunks: Vec<Vec<u8>> = (0..(2 * WAL_BOUND + CHECKPOINT_EVERY) / MAX_CHUNK as u64)
            .map(|k| chunk(k as u32))
            .collect();
        let mut largest_wal = 0;
        for c in &chunks {
            files.append("z", "output", c).unwrap();
            largest_wal = largest_wal.max(std::fs::metadata(&wal_path).unwrap().len());
        }
        let k = chunks.len() as u64;
        let finished = files.wal.as_ref().unwrap().finished();
        assert!(
            finished >= 2,
            "{finished} checkpoints ran on the WAL thread"
        );
        // Without the bound the WAL grows with every append (the writer never sees it all
        // copied): to 34 MB of the 36 MiB written when that was tried.
        assert!(
            largest_wal <= WAL_BOUND + 2 * MAX_CHUNK as u64,
            "the WAL reached {largest_wal} bytes"
        );
        assert_eq!(
            files.stat("z", "output").unwrap().unwrap().size,
            k * MAX_CHUNK as u64
        );
        drop(files);
        let reopened = SqliteFiles::open(&path).unwrap();
        let last = reopened
            .read("z", "output", (k - 1) * MAX_CHUNK as u64, 65_536)
            .unwrap();
        assert_eq!(last, chunk(k as u32 - 1)[..65_536]);
    }
}
