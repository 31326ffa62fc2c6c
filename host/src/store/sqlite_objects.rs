//! The object store on `objects.db`, the Wave/AgentMux `db_block` table.
//!
//! The app owns this database and keeps writing to it, so we never alter an existing schema, run
//! in WAL mode with a busy timeout, and change a block only by a read-merge-write of its `meta`
//! inside one `BEGIN IMMEDIATE` transaction that keeps every other byte of the block's JSON and
//! its storage class (BLOB or TEXT).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use super::block_json::splice_meta;
use super::version_conflict;
use super::{Meta, Object, ObjectStore, Page, StoreError};

/// How long a statement waits for the app's write lock before failing with `Io`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest page `list` returns; larger requests get this many.
pub const MAX_PAGE: u32 = 1000;

/// Opens `path` (creating the file if missing) the way both stores need it: busy timeout, WAL
/// journal (the app appends concurrently; WAL lets us read while it writes) and full fsync on
/// commit (appends must be durable on return). None of this touches the schema.
pub(crate) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let ctx = |e: rusqlite::Error| StoreError::Io(format!("{}: {e}", path.display()));
    let conn = Connection::open(path).map_err(ctx)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(ctx)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(ctx)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Io(format!(
            "{}: could not switch to WAL journal (got {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(ctx)?;
    Ok(conn)
}

/// True when `e` is a UNIQUE/PRIMARY KEY violation (an insert of an id that exists).
pub(crate) fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

/// `objects.db` behind one connection; every call is one short statement or transaction.
#[derive(Debug)]
pub struct SqliteObjects {
    conn: Mutex<Connection>,
}

impl SqliteObjects {
    /// Opens (or creates) `objects.db`; creates `db_block` only when it is absent.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = open_connection(path.as_ref())?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS db_block (
                 oid TEXT PRIMARY KEY,
                 version INTEGER NOT NULL DEFAULT 1,
                 data TEXT NOT NULL
             );",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Inserts many objects in one transaction (demo data and benchmarks: one fsync, not one per
    /// row). Fails with `AlreadyExists` on the first taken id, inserting none.
    pub fn insert_many<'a>(
        &self,
        objects: impl IntoIterator<Item = (&'a str, &'a Meta)>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut n = 0;
        {
            let mut stmt =
                tx.prepare_cached("INSERT INTO db_block (oid, version, data) VALUES (?1, 1, ?2)")?;
            for (id, meta) in objects {
                check_id(id)?;
                stmt.execute(params![id, new_block_json(id, meta)])
                    .map_err(|e| insert_error(id, e))?;
                n += 1;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open (rusqlite rolls back on
        // drop), so the connection is still good.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn check_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() {
        return Err(StoreError::Invalid("empty object id".into()));
    }
    Ok(())
}

fn insert_error(id: &str, e: rusqlite::Error) -> StoreError {
    if is_constraint(&e) {
        StoreError::AlreadyExists(format!("object {id}"))
    } else {
        e.into()
    }
}

/// The block JSON we write for a new object: the fields Wave always has, nothing invented.
fn new_block_json(id: &str, meta: &Meta) -> String {
    serde_json::json!({ "otype": "block", "oid": id, "version": 1, "meta": meta }).to_string()
}

/// How SQLite holds a block's `data`; a rewrite keeps it.
#[derive(Debug, Clone, Copy)]
enum StorageClass {
    Blob,
    Text,
}

/// Only the `meta` field of a block; serde skips the rest without building it, which keeps a
/// 100 000-row listing cheap.
#[derive(serde::Deserialize)]
struct MetaOnly {
    #[serde(default)]
    meta: Option<Meta>,
}

/// Extracts meta from a block's `data`. Missing or null meta is `{}`; data that is not a JSON
/// object, or a meta that is not an object, is an `Io` error naming the id (never a panic).
fn parse_meta(id: &str, data: &[u8]) -> Result<Meta, StoreError> {
    // serde would also accept a JSON array as a struct; a block is always an object.
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(StoreError::Io(format!(
            "object {id}: data is not a JSON object"
        )));
    }
    serde_json::from_slice::<MetaOnly>(data)
        .map(|m| m.meta.unwrap_or_default())
        .map_err(|e| StoreError::Io(format!("object {id}: bad data JSON: {e}")))
}

fn row_to_object(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, Vec<u8>)> {
    let id: String = row.get(0)?;
    let version: i64 = row.get(1)?;
    let data = row.get_ref(2)?.as_bytes()?.to_vec();
    Ok((id, version, data))
}

fn version_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Builds a page from up to `limit + 1` rows. Meta is parsed straight from SQLite's buffer (no
/// copy of the block text); a row whose data is unreadable is skipped and logged, not fatal.
fn collect_page(mut rows: rusqlite::Rows<'_>, limit: usize) -> Result<Page, StoreError> {
    let mut objects = Vec::with_capacity(limit);
    let mut scanned = 0;
    let mut last = None;
    while let Some(row) = rows.next()? {
        if scanned == limit {
            return Ok(Page {
                objects,
                next: last,
            });
        }
        scanned += 1;
        let id: String = row.get(0)?;
        match parse_meta(
            &id,
            row.get_ref(2)?.as_bytes().map_err(rusqlite::Error::from)?,
        ) {
            Ok(meta) => objects.push(Object {
                id: id.clone(),
                meta,
                version: version_u64(row.get(1)?),
            }),
            Err(e) => tracing::warn!(object = %id, error = %e, "skipping unreadable block"),
        }
        last = Some(id);
    }
    Ok(Page {
        objects,
        next: None,
    })
}

impl SqliteObjects {
    /// Both `update_meta`s: with `expect`, the version is checked inside the write transaction.
    fn update(&self, id: &str, patch: &Meta, expect: Option<u64>) -> Result<Object, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = tx
            .prepare_cached("SELECT oid, version, data FROM db_block WHERE oid = ?1")?
            .query_row(params![id], |r| {
                let (class, data) = match r.get_ref(2)? {
                    ValueRef::Blob(b) => (Some(StorageClass::Blob), b.to_vec()),
                    ValueRef::Text(t) => (Some(StorageClass::Text), t.to_vec()),
                    _ => (None, Vec::new()),
                };
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, data, class))
            })
            .optional()?;
        let (oid, version, data, class) =
            row.ok_or_else(|| StoreError::NotFound(format!("object {id}")))?;
        let Some(class) = class else {
            return Err(StoreError::Io(format!(
                "object {id}: data is neither text nor a blob"
            )));
        };
        if let Some(expected) = expect.filter(|&e| e != version_u64(version)) {
            return Err(version_conflict(id, expected, version_u64(version)));
        }
        let mut meta = parse_meta(&oid, &data)?;
        merge_meta(&mut meta, patch);
        let new_version = version.max(0) + 1;
        let new_data = splice_meta(&data, patch, Some(version_u64(new_version)))
            .map_err(|e| StoreError::Io(format!("object {id}: {e}")))?;
        let bound = match class {
            StorageClass::Blob => ValueRef::Blob(&new_data),
            StorageClass::Text => ValueRef::Text(&new_data),
        };
        tx.prepare_cached("UPDATE db_block SET version = ?2, data = ?3 WHERE oid = ?1")?
            .execute(params![oid, new_version, ToSqlOutput::Borrowed(bound)])?;
        tx.commit()?;
        Ok(Object {
            id: oid,
            meta,
            version: version_u64(new_version),
        })
    }
}

impl ObjectStore for SqliteObjects {
    /// A row whose data is unreadable is skipped (and logged) rather than failing the page, so
    /// one damaged block cannot stop every sweep; `get` on its id reports the error.
    fn list(&self, after: Option<&str>, limit: u32) -> Result<Page, StoreError> {
        if limit == 0 {
            return Err(StoreError::Invalid("page limit 0".into()));
        }
        let limit = limit.min(MAX_PAGE) as usize;
        let conn = self.lock();
        // One row more than the page tells whether another page exists.
        let fetch = (limit + 1) as i64;
        match after {
            Some(after) => {
                let mut stmt = conn.prepare_cached(
                    "SELECT oid, version, data FROM db_block WHERE oid > ?1 ORDER BY oid LIMIT ?2",
                )?;
                let page = collect_page(stmt.query(params![after, fetch])?, limit);
                page
            }
            None => {
                let mut stmt = conn.prepare_cached(
                    "SELECT oid, version, data FROM db_block ORDER BY oid LIMIT ?1",
                )?;
                let page = collect_page(stmt.query(params![fetch])?, limit);
                page
            }
        }
    }

    fn get(&self, id: &str) -> Result<Object, StoreError> {
        let conn = self.lock();
        let row = conn
            .prepare_cached("SELECT oid, version, data FROM db_block WHERE oid = ?1")?
            .query_row(params![id], row_to_object)
            .optional()?;
        drop(conn);
        let (id, version, data) =
            row.ok_or_else(|| StoreError::NotFound(format!("object {id}")))?;
        let meta = parse_meta(&id, &data)?;
        Ok(Object {
            id,
            meta,
            version: version_u64(version),
        })
    }

    /// Splices the patch into the block's JSON (see [`splice_meta`]) and writes it back with the
    /// storage class it had: the app may read `data` as bytes only (AgentMux refuses TEXT) or as
    /// text, and every byte it wrote outside the patched keys stays as it was.
    fn update_meta(&self, id: &str, patch: &Meta) -> Result<Object, StoreError> {
        self.update(id, patch, None)
    }

    fn update_meta_if(&self, id: &str, patch: &Meta, version: u64) -> Result<Object, StoreError> {
        self.update(id, patch, Some(version))
    }

    fn insert(&self, id: &str, meta: &Meta) -> Result<Object, StoreError> {
        check_id(id)?;
        let conn = self.lock();
        conn.prepare_cached("INSERT INTO db_block (oid, version, data) VALUES (?1, 1, ?2)")?
            .execute(params![id, new_block_json(id, meta)])
            .map_err(|e| insert_error(id, e))?;
        Ok(Object {
            id: id.to_owned(),
            meta: meta.clone(),
            version: 1,
        })
    }
}

/// The Wave/AgentMux merge rule: patch keys replace, a JSON null removes the key.
pub(crate) fn merge_meta(meta: &mut Meta, patch: &Meta) {
    for (k, v) in patch {
        if v.is_null() {
            meta.remove(k);
        } else {
            meta.insert(k.clone(), v.clone());
        }
    }
}

/// Opens an existing database read-only, for commands that must write nothing (`plan`, `status`,
/// `export`, possibly next to a live app): no journal-mode change (switching a rollback-journal
/// database to WAL is a write) and no schema change; the busy timeout still applies.
pub(crate) fn open_read_only_connection(path: &Path) -> Result<Connection, StoreError> {
    let ctx = |e: rusqlite::Error| StoreError::Io(format!("{}: {e}", path.display()));
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(ctx)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(ctx)?;
    Ok(conn)
}

impl SqliteObjects {
    /// Opens an existing object store read-only: every write through it fails, nothing in the
    /// file changes. The `db_block` table must be there.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let conn = open_read_only_connection(path)?;
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'db_block'",
            [],
            |r| r.get(0),
        )?;
        if tables == 0 {
            return Err(StoreError::Io(format!(
                "{}: no db_block table (not an object store)",
                path.display()
            )));
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }
}
