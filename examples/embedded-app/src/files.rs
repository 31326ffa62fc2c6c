//! The app's file store: `filestore.db` in the Wave/AgentMux layout (`db_wave_file` headers,
//! 64 KiB parts in `db_file_data`) behind an in-process cache that behaves like the apps':
//!
//! - `stat` is answered from the cache (a file is loaded into it on first use, and every file the
//!   app creates is put there), never re-read from the database;
//! - an append goes at the cached size, into cached parts (Wave's write-back entries);
//! - a flush writes the changed parts, then the size, as separate autocommit statements
//!   (AgentMux's order), from a background thread every few seconds (Wave flushes every 5 s) or
//!   at once when asked.
//!
//! Such a cache goes wrong if anything else changes the file underneath: the next append lands
//! at the cached offset, over parts that are gone. That is why the archiver runs inside the app
//! on *this* store: [`FileStore`] is implemented on top of the cache, and the conditional delete
//! and rename take the app's lock ([`AppFiles`]' cache mutex) and update the cache in the same
//! step, so the app's next append sees exactly what the archiver did.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use session_archiver::store::{
    check_held, Clock, FileOpts, FileStat, FileStore, Meta, StoreError, MAX_CHUNK,
};

/// Bytes per `db_file_data` row (Wave's `DefaultPartDataSize`).
pub const PART_SIZE: u64 = 64 * 1024;

/// The app's schema of `filestore.db`, as Wave's migration creates it.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS db_wave_file (zoneid varchar(36) NOT NULL, name varchar(200) NOT NULL,
  size bigint NOT NULL, createdts bigint NOT NULL, modts bigint NOT NULL, opts json NOT NULL,
  meta json NOT NULL, PRIMARY KEY (zoneid, name));
CREATE TABLE IF NOT EXISTS db_file_data (zoneid varchar(36) NOT NULL, name varchar(200) NOT NULL,
  partidx int NOT NULL, data blob NOT NULL, PRIMARY KEY(zoneid, name, partidx));
";

type Key = (String, String);

fn key(zone: &str, name: &str) -> Key {
    (zone.to_string(), name.to_string())
}

fn where_(zone: &str, name: &str) -> String {
    format!("file {zone}/{name}")
}

/// One file as the app knows it.
#[derive(Debug, Clone)]
struct Cached {
    /// What `stat` answers and where the next append goes.
    stat: FileStat,
    /// Physical parts changed since the last flush, whole (Wave's dirty cache entries).
    dirty: BTreeMap<i64, Vec<u8>>,
    /// The header (size, modts) differs from the database.
    header_dirty: bool,
}

impl Cached {
    fn part_index(&self, logical_part: u64) -> i64 {
        match self.stat.circular_max_size {
            Some(max) => (logical_part % (max / PART_SIZE)) as i64,
            None => logical_part as i64,
        }
    }

    fn first_held(&self) -> u64 {
        match self.stat.circular_max_size {
            Some(max) => self.stat.size.saturating_sub(max),
            None => 0,
        }
    }
}

/// Runs between a flush's part statements and its size statement (tests watch the database
/// in that window, as another reader would).
pub type FlushHook = Box<dyn Fn(&str, &str) + Send + Sync>;

/// The app's cached file store. Also the [`FileStore`] the embedded archiver is given.
pub struct AppFiles {
    /// The app's lock and cache: every append, flush, and archiver call holds it.
    cache: Mutex<HashMap<Key, Cached>>,
    /// The app's own connection; always taken after `cache`.
    conn: Mutex<Connection>,
    clock: Arc<dyn Clock>,
    between_parts_and_size: Mutex<Option<FlushHook>>,
    flushes: AtomicU64,
    flush_errors: AtomicU64,
}

impl std::fmt::Debug for AppFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppFiles").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn parse_opts(zone: &str, name: &str, opts: &[u8]) -> Result<Option<u64>, StoreError> {
    let v: serde_json::Value = serde_json::from_slice(opts)
        .map_err(|e| StoreError::Io(format!("{}: bad opts JSON: {e}", where_(zone, name))))?;
    if v.get("circular").and_then(|c| c.as_bool()) != Some(true) {
        return Ok(None);
    }
    match v.get("maxsize").and_then(|m| m.as_u64()) {
        Some(max) if max > 0 => Ok(Some(max.div_ceil(PART_SIZE) * PART_SIZE)),
        _ => Err(StoreError::Io(format!(
            "{}: circular file without a positive maxsize",
            where_(zone, name)
        ))),
    }
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
        .query_row(params![zone, name, part], |r| r.get::<_, Vec<u8>>(0))
        .optional()?)
}

fn delete_rows(conn: &Connection, zone: &str, name: &str) -> Result<usize, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM db_wave_file WHERE zoneid = ?1 AND name = ?2")?
        .execute(params![zone, name])?;
    conn.prepare_cached("DELETE FROM db_file_data WHERE zoneid = ?1 AND name = ?2")?
        .execute(params![zone, name])?;
    Ok(n)
}

impl AppFiles {
    /// Opens (or creates) `filestore.db` at `path` in WAL mode; `clock` stamps times.
    pub fn open(path: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<Arc<Self>, StoreError> {
        let conn = Connection::open(path.as_ref())?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Arc::new(AppFiles {
            cache: Mutex::new(HashMap::new()),
            conn: Mutex::new(conn),
            clock,
            between_parts_and_size: Mutex::new(None),
            flushes: AtomicU64::new(0),
            flush_errors: AtomicU64::new(0),
        }))
    }

    /// Starts the background flush thread (the app's write-back timer). It stops when the
    /// returned handle is dropped, after one last flush.
    pub fn start_flusher(self: &Arc<Self>, every: Duration) -> Flusher {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let weak: Weak<AppFiles> = Arc::downgrade(self);
        let thread_stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name("app-flush".into())
            .spawn(move || loop {
                let (flag, cv) = &*thread_stop;
                let stopped = {
                    let guard = lock(flag);
                    let (guard, _) = cv
                        .wait_timeout_while(guard, every, |s| !*s)
                        .unwrap_or_else(|p| p.into_inner());
                    *guard
                };
                let Some(files) = weak.upgrade() else { break };
                if files.flush_all().is_err() {
                    files.flush_errors.fetch_add(1, Ordering::Relaxed);
                }
                if stopped {
                    break;
                }
            })
            .expect("spawn the flush thread");
        Flusher {
            stop,
            handle: Some(handle),
        }
    }

    /// Sets (or clears) the hook run between a flush's part statements and its size statement.
    pub fn set_flush_hook(&self, hook: Option<FlushHook>) {
        *lock(&self.between_parts_and_size) = hook;
    }

    /// Files flushed so far (one per file with changes, per flush).
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Background flushes that failed.
    pub fn flush_errors(&self) -> u64 {
        self.flush_errors.load(Ordering::Relaxed)
    }

    /// The cache entry of a file, loaded from the database on first use.
    fn entry<'c>(
        &self,
        cache: &'c mut HashMap<Key, Cached>,
        zone: &str,
        name: &str,
    ) -> Result<Option<&'c mut Cached>, StoreError> {
        let k = key(zone, name);
        if !cache.contains_key(&k) {
            let conn = lock(&self.conn);
            let row = conn
                .prepare_cached(
                    "SELECT size, createdts, modts, opts FROM db_wave_file
                     WHERE zoneid = ?1 AND name = ?2",
                )?
                .query_row(params![zone, name], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get_ref(3)?.as_bytes()?.to_vec(),
                    ))
                })
                .optional()?;
            let Some((size, created_ms, modified_ms, opts)) = row else {
                return Ok(None);
            };
            let stat = FileStat {
                size: u64::try_from(size).map_err(|_| {
                    StoreError::Io(format!("{}: negative size {size}", where_(zone, name)))
                })?,
                created_ms,
                modified_ms,
                circular_max_size: parse_opts(zone, name, &opts)?,
            };
            cache.insert(
                k.clone(),
                Cached {
                    stat,
                    dirty: BTreeMap::new(),
                    header_dirty: false,
                },
            );
        }
        Ok(cache.get_mut(&k))
    }

    /// A part's current bytes: the cached (dirty) copy, else the database's.
    fn part(&self, c: &Cached, zone: &str, name: &str, part: i64) -> Result<Vec<u8>, StoreError> {
        match c.dirty.get(&part) {
            Some(d) => Ok(d.clone()),
            None => Ok(load_part(&lock(&self.conn), zone, name, part)?.unwrap_or_default()),
        }
    }

    /// The app's append: at the cached size, into the cache; written out by the next flush.
    pub fn append_buffered(
        &self,
        zone: &str,
        name: &str,
        data: &[u8],
    ) -> Result<FileStat, StoreError> {
        let mut cache = lock(&self.cache);
        self.append_locked(&mut cache, zone, name, data)
    }

    fn append_locked(
        &self,
        cache: &mut HashMap<Key, Cached>,
        zone: &str,
        name: &str,
        data: &[u8],
    ) -> Result<FileStat, StoreError> {
        if data.len() > MAX_CHUNK {
            return Err(StoreError::Invalid(format!(
                "append of {} bytes is over the {MAX_CHUNK}-byte limit",
                data.len()
            )));
        }
        let c = self
            .entry(cache, zone, name)?
            .ok_or_else(|| StoreError::NotFound(where_(zone, name)))?;
        if data.is_empty() {
            return Ok(c.stat);
        }
        let circular = c.stat.circular_max_size.is_some();
        let mut pos = c.stat.size;
        let mut bytes = data;
        if let Some(max) = c.stat.circular_max_size {
            if bytes.len() as u64 > max {
                let skip = bytes.len() - max as usize;
                pos += skip as u64;
                bytes = &bytes[skip..];
            }
        }
        while !bytes.is_empty() {
            let off = (pos % PART_SIZE) as usize;
            let take = (PART_SIZE as usize - off).min(bytes.len());
            let (chunk, rest) = bytes.split_at(take);
            let part = c.part_index(pos / PART_SIZE);
            let mut new = self.part(c, zone, name, part)?;
            if new.len() < off {
                if !circular {
                    return Err(StoreError::Io(format!(
                        "{}: part {part} is {} bytes, the cached size says {off}",
                        where_(zone, name),
                        new.len()
                    )));
                }
                new.resize(off, 0);
            }
            if circular && new.len() > off + take {
                new[off..off + take].copy_from_slice(chunk);
            } else {
                new.truncate(off);
                new.extend_from_slice(chunk);
            }
            c.dirty.insert(part, new);
            pos += take as u64;
            bytes = rest;
        }
        c.stat.size += data.len() as u64;
        c.stat.modified_ms = self.clock.now_ms().max(c.stat.modified_ms + 1);
        c.header_dirty = true;
        Ok(c.stat)
    }

    /// Writes one file's changes: each dirty part in its own statement, then the size.
    fn flush_entry(&self, zone: &str, name: &str, c: &mut Cached) -> Result<(), StoreError> {
        if c.dirty.is_empty() && !c.header_dirty {
            return Ok(());
        }
        let conn = lock(&self.conn);
        while let Some((&part, data)) = c.dirty.first_key_value() {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO db_file_data (zoneid, name, partidx, data)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![zone, name, part, data])?;
            c.dirty.remove(&part);
        }
        if let Some(hook) = &*lock(&self.between_parts_and_size) {
            hook(zone, name);
        }
        conn.prepare_cached(
            "UPDATE db_wave_file SET size = ?3, modts = ?4 WHERE zoneid = ?1 AND name = ?2",
        )?
        .execute(params![zone, name, c.stat.size as i64, c.stat.modified_ms])?;
        c.header_dirty = false;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn flush_file_locked(
        &self,
        cache: &mut HashMap<Key, Cached>,
        zone: &str,
        name: &str,
    ) -> Result<(), StoreError> {
        if let Some(c) = cache.get_mut(&key(zone, name)) {
            self.flush_entry(zone, name, c)?;
        }
        Ok(())
    }

    /// Flushes every file with cached changes (what the background thread does).
    pub fn flush_all(&self) -> Result<(), StoreError> {
        let mut cache = lock(&self.cache);
        for ((zone, name), c) in cache.iter_mut() {
            self.flush_entry(zone, name, c)?;
        }
        Ok(())
    }
}

/// The background flush thread; dropping it stops the thread after a last flush.
pub struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        let (flag, cv) = &*self.stop;
        *lock(flag) = true;
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The embedding contract, on top of the cache: every call holds the app's lock, answers from
/// the cache, and changes the cache in the same step as the database.
impl FileStore for AppFiles {
    fn stat(&self, zone: &str, name: &str) -> Result<Option<FileStat>, StoreError> {
        let mut cache = lock(&self.cache);
        Ok(self.entry(&mut cache, zone, name)?.map(|c| c.stat))
    }

    /// Served from cached parts where the app has unflushed bytes.
    fn read(&self, zone: &str, name: &str, offset: u64, len: u32) -> Result<Vec<u8>, StoreError> {
        if len as usize > MAX_CHUNK {
            return Err(StoreError::Invalid(format!(
                "read of {len} bytes is over the {MAX_CHUNK}-byte limit"
            )));
        }
        let mut cache = lock(&self.cache);
        let c = self
            .entry(&mut cache, zone, name)?
            .ok_or_else(|| StoreError::NotFound(where_(zone, name)))?;
        check_held(zone, name, offset, c.first_held())?;
        let start = offset;
        if start >= c.stat.size || len == 0 {
            return Ok(Vec::new());
        }
        let end = c.stat.size.min(start + u64::from(len));
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut pos = start;
        while pos < end {
            let off = (pos % PART_SIZE) as usize;
            let take = (PART_SIZE - off as u64).min(end - pos) as usize;
            let part = c.part_index(pos / PART_SIZE);
            let data = self.part(c, zone, name, part)?;
            let Some(bytes) = data.get(off..off + take) else {
                return Err(StoreError::Io(format!(
                    "{}: part {part} is {} bytes but byte {pos} of {} should be in it",
                    where_(zone, name),
                    data.len(),
                    c.stat.size
                )));
            };
            out.extend_from_slice(bytes);
            pos += take as u64;
        }
        Ok(out)
    }

    fn create(&self, zone: &str, name: &str, opts: FileOpts) -> Result<FileStat, StoreError> {
        if zone.is_empty() || name.is_empty() {
            return Err(StoreError::Invalid(format!(
                "empty zone or file name ({zone:?}/{name:?})"
            )));
        }
        let circular_max_size = match opts.circular_max_size {
            Some(0) => return Err(StoreError::Invalid("circular file of max size 0".into())),
            Some(max) => Some(max.div_ceil(PART_SIZE) * PART_SIZE),
            None => None,
        };
        let mut cache = lock(&self.cache);
        if self.entry(&mut cache, zone, name)?.is_some() {
            return Err(StoreError::AlreadyExists(where_(zone, name)));
        }
        let now = self.clock.now_ms();
        let opts_json = match circular_max_size {
            Some(max) => format!(r#"{{"maxsize":{max},"circular":true,"ijson":false}}"#),
            None => r#"{"maxsize":0,"circular":false,"ijson":false}"#.to_string(),
        };
        {
            let mut conn = lock(&self.conn);
            let tx = conn.transaction()?;
            delete_rows(&tx, zone, name)?;
            tx.execute(
                "INSERT INTO db_wave_file (zoneid, name, size, createdts, modts, opts, meta)
                 VALUES (?1, ?2, 0, ?3, ?3, ?4, '{}')",
                params![zone, name, now, opts_json],
            )?;
            tx.commit()?;
        }
        let stat = FileStat {
            size: 0,
            created_ms: now,
            modified_ms: now,
            circular_max_size,
        };
        cache.insert(
            key(zone, name),
            Cached {
                stat,
                dirty: BTreeMap::new(),
                header_dirty: false,
            },
        );
        Ok(stat)
    }

    /// The app's append followed by a flush of that file, so it is durable on return.
    fn append(&self, zone: &str, name: &str, data: &[u8]) -> Result<FileStat, StoreError> {
        let mut cache = lock(&self.cache);
        let stat = self.append_locked(&mut cache, zone, name, data)?;
        self.flush_file_locked(&mut cache, zone, name)?;
        Ok(stat)
    }

    /// Compares against the cached stat (unflushed appends included) under the app's lock; the
    /// file's unflushed parts are dropped with it (the caller has read them).
    fn delete_if_unchanged(
        &self,
        zone: &str,
        name: &str,
        expected: &FileStat,
    ) -> Result<(), StoreError> {
        let mut cache = lock(&self.cache);
        let c = self
            .entry(&mut cache, zone, name)?
            .ok_or_else(|| StoreError::NotFound(where_(zone, name)))?;
        if c.stat != *expected {
            return Err(StoreError::Conflict(format!(
                "{} changed: now {:?}, expected {expected:?}",
                where_(zone, name),
                c.stat
            )));
        }
        {
            let mut conn = lock(&self.conn);
            let tx = conn.transaction()?;
            delete_rows(&tx, zone, name)?;
            tx.commit()?;
        }
        cache.remove(&key(zone, name));
        Ok(())
    }

    fn delete(&self, zone: &str, name: &str) -> Result<(), StoreError> {
        let mut cache = lock(&self.cache);
        let cached = cache.remove(&key(zone, name)).is_some();
        let mut conn = lock(&self.conn);
        let tx = conn.transaction()?;
        let n = delete_rows(&tx, zone, name)?;
        tx.commit()?;
        if n == 0 && !cached {
            return Err(StoreError::NotFound(where_(zone, name)));
        }
        Ok(())
    }

    /// The source is flushed first; the target's cache entry is replaced by the source's in
    /// the same step as the database rename, so the app's next append goes after the last
    /// renamed byte.
    fn rename_if_unchanged(
        &self,
        zone: &str,
        source: &str,
        target: &str,
        expected: Option<&FileStat>,
    ) -> Result<(), StoreError> {
        if source == target {
            return Err(StoreError::Invalid(format!(
                "rename of {} onto itself",
                where_(zone, source)
            )));
        }
        let mut cache = lock(&self.cache);
        if self.entry(&mut cache, zone, source)?.is_none() {
            return Err(StoreError::NotFound(where_(zone, source)));
        }
        self.flush_file_locked(&mut cache, zone, source)?;
        let current = self.entry(&mut cache, zone, target)?.map(|c| c.stat);
        if current.as_ref() != expected {
            return Err(StoreError::Conflict(format!(
                "{} changed: now {current:?}, expected {expected:?}",
                where_(zone, target)
            )));
        }
        {
            let mut conn = lock(&self.conn);
            let tx = conn.transaction()?;
            delete_rows(&tx, zone, target)?;
            tx.execute(
                "UPDATE db_wave_file SET name = ?3 WHERE zoneid = ?1 AND name = ?2",
                params![zone, source, target],
            )?;
            tx.execute(
                "UPDATE db_file_data SET name = ?3 WHERE zoneid = ?1 AND name = ?2",
                params![zone, source, target],
            )?;
            tx.commit()?;
        }
        let moved = cache
            .remove(&key(zone, source))
            .expect("the source was loaded above");
        cache.insert(key(zone, target), moved);
        Ok(())
    }

    fn list_files(&self) -> Result<Vec<(String, String, FileStat)>, StoreError> {
        self.flush_all()?;
        let cache = lock(&self.cache);
        let conn = lock(&self.conn);
        let mut stmt = conn.prepare(
            "SELECT zoneid, name, size, createdts, modts, opts FROM db_wave_file
             ORDER BY zoneid, name",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let (zone, name): (String, String) = (r.get(0)?, r.get(1)?);
            let stat = match cache.get(&key(&zone, &name)) {
                Some(c) => c.stat,
                None => FileStat {
                    size: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    created_ms: r.get(3)?,
                    modified_ms: r.get(4)?,
                    circular_max_size: parse_opts(
                        &zone,
                        &name,
                        r.get_ref(5)?.as_bytes().map_err(rusqlite::Error::from)?,
                    )?,
                },
            };
            out.push((zone, name, stat));
        }
        Ok(out)
    }

    /// Not cached here (Wave keeps it in its cache entry too): read under the app's lock.
    fn meta(&self, zone: &str, name: &str) -> Result<Meta, StoreError> {
        let mut cache = lock(&self.cache);
        if self.entry(&mut cache, zone, name)?.is_none() {
            return Err(StoreError::NotFound(where_(zone, name)));
        }
        let conn = lock(&self.conn);
        let text: String = conn.query_row(
            "SELECT CAST(meta AS TEXT) FROM db_wave_file WHERE zoneid = ?1 AND name = ?2",
            params![zone, name],
            |r| r.get(0),
        )?;
        match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            Ok(_) => Ok(Meta::new()),
            Err(e) => Err(StoreError::Io(format!(
                "{}: bad meta: {e}",
                where_(zone, name)
            ))),
        }
    }

    fn set_meta(&self, zone: &str, name: &str, meta: &Meta) -> Result<(), StoreError> {
        let mut cache = lock(&self.cache);
        if self.entry(&mut cache, zone, name)?.is_none() {
            return Err(StoreError::NotFound(where_(zone, name)));
        }
        let text = serde_json::Value::Object(meta.clone()).to_string();
        lock(&self.conn).execute(
            "UPDATE db_wave_file SET meta = ?3 WHERE zoneid = ?1 AND name = ?2",
            params![zone, name, text],
        )?;
        Ok(())
    }
}
