//! In-memory object and file stores with the SQLite stores' semantics (paging, merge rule,
//! circular files, the stat-change rule), for the mock host and tests.
//!
//! Both are handles to shared state: cloning one gives another view of the same store, so a test
//! can keep a handle while the host under test owns another.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::sqlite_files::round_circular_max;
use super::sqlite_objects::{merge_meta, MAX_PAGE};
use super::{
    version_conflict, Clock, FileOpts, FileStat, FileStore, Meta, Object, ObjectStore, Page,
    StoreError, SystemClock, MAX_CHUNK,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps are only changed after every check passed, so a panic cannot leave them half-done.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An in-memory `ObjectStore`; `Clone` shares the same objects.
#[derive(Debug, Clone, Default)]
pub struct MemoryObjects {
    objects: Arc<Mutex<BTreeMap<String, (Meta, u64)>>>,
}

impl MemoryObjects {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many objects the store holds.
    pub fn len(&self) -> usize {
        lock(&self.objects).len()
    }

    /// True when the store holds no objects.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl MemoryObjects {
    /// Both `update_meta`s: with `expect`, the version is checked under the same lock.
    fn update(&self, id: &str, patch: &Meta, expect: Option<u64>) -> Result<Object, StoreError> {
        let mut objects = lock(&self.objects);
        let (meta, version) = objects
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(format!("object {id}")))?;
        if let Some(expected) = expect.filter(|e| e != version) {
            return Err(version_conflict(id, expected, *version));
        }
        merge_meta(meta, patch);
        *version += 1;
        Ok(Object {
            id: id.to_owned(),
            meta: meta.clone(),
            version: *version,
        })
    }
}

impl ObjectStore for MemoryObjects {
    fn list(&self, after: Option<&str>, limit: u32) -> Result<Page, StoreError> {
        if limit == 0 {
            return Err(StoreError::Invalid("page limit 0".into()));
        }
        let limit = limit.min(MAX_PAGE) as usize;
        let objects = lock(&self.objects);
        let range = match after {
            Some(a) => {
                objects.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
            }
            None => objects.range::<str, _>(..),
        };
        let mut page: Vec<Object> = range
            .take(limit + 1)
            .map(|(id, (meta, version))| Object {
                id: id.clone(),
                meta: meta.clone(),
                version: *version,
            })
            .collect();
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|o| o.id.clone())
        } else {
            None
        };
        Ok(Page {
            objects: page,
            next,
        })
    }

    fn get(&self, id: &str) -> Result<Object, StoreError> {
        let objects = lock(&self.objects);
        let (meta, version) = objects
            .get(id)
            .ok_or_else(|| StoreError::NotFound(format!("object {id}")))?;
        Ok(Object {
            id: id.to_owned(),
            meta: meta.clone(),
            version: *version,
        })
    }

    fn update_meta(&self, id: &str, patch: &Meta) -> Result<Object, StoreError> {
        self.update(id, patch, None)
    }

    fn update_meta_if(&self, id: &str, patch: &Meta, version: u64) -> Result<Object, StoreError> {
        self.update(id, patch, Some(version))
    }

    fn insert(&self, id: &str, meta: &Meta) -> Result<Object, StoreError> {
        if id.is_empty() {
            return Err(StoreError::Invalid("empty object id".into()));
        }
        let mut objects = lock(&self.objects);
        if objects.contains_key(id) {
            return Err(StoreError::AlreadyExists(format!("object {id}")));
        }
        objects.insert(id.to_owned(), (meta.clone(), 1));
        Ok(Object {
            id: id.to_owned(),
            meta: meta.clone(),
            version: 1,
        })
    }
}

/// One in-memory file: the bytes still held and its stat.
#[derive(Debug, Clone)]
struct MemFile {
    /// Logical bytes `[stat.size - held.len(), stat.size)`.
    held: Vec<u8>,
    stat: FileStat,
    /// The file's own meta.
    meta: Meta,
}

type FileKey = (String, String);

/// An in-memory `FileStore`; `Clone` shares the same files.
#[derive(Clone)]
pub struct MemoryFiles {
    files: Arc<Mutex<HashMap<FileKey, MemFile>>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryFiles")
            .field("files", &lock(&self.files).len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryFiles {
    fn default() -> Self {
        Self::new()
    }
}

fn key(zone: &str, name: &str) -> FileKey {
    (zone.to_owned(), name.to_owned())
}

fn not_found(zone: &str, name: &str) -> StoreError {
    StoreError::NotFound(format!("file {zone}/{name}"))
}

impl MemoryFiles {
    /// An empty store stamping times from the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store stamping times from `clock` (tests drive time).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            files: Arc::default(),
            clock,
        }
    }
}

impl FileStore for MemoryFiles {
    fn stat(&self, zone: &str, name: &str) -> Result<Option<FileStat>, StoreError> {
        Ok(lock(&self.files).get(&key(zone, name)).map(|f| f.stat))
    }

    fn read(&self, zone: &str, name: &str, offset: u64, len: u32) -> Result<Vec<u8>, StoreError> {
        if len as usize > MAX_CHUNK {
            return Err(StoreError::Invalid(format!(
                "read of {len} bytes is over the {MAX_CHUNK}-byte limit"
            )));
        }
        let files = lock(&self.files);
        let f = files
            .get(&key(zone, name))
            .ok_or_else(|| not_found(zone, name))?;
        let first_held = f.stat.size - f.held.len() as u64;
        super::check_held(zone, name, offset, first_held)?;
        let start = offset;
        if start >= f.stat.size {
            return Ok(Vec::new());
        }
        let end = f.stat.size.min(start + u64::from(len));
        Ok(f.held[(start - first_held) as usize..(end - first_held) as usize].to_vec())
    }

    fn create(&self, zone: &str, name: &str, opts: FileOpts) -> Result<FileStat, StoreError> {
        if zone.is_empty() || name.is_empty() {
            return Err(StoreError::Invalid(format!(
                "empty zone or file name ({zone:?}/{name:?})"
            )));
        }
        let circular_max_size = match opts.circular_max_size {
            Some(0) => return Err(StoreError::Invalid("circular file of max size 0".into())),
            Some(max) => Some(round_circular_max(max)),
            None => None,
        };
        let mut files = lock(&self.files);
        if files.contains_key(&key(zone, name)) {
            return Err(StoreError::AlreadyExists(format!("file {zone}/{name}")));
        }
        let now = self.clock.now_ms();
        let stat = FileStat {
            size: 0,
            created_ms: now,
            modified_ms: now,
            circular_max_size,
        };
        files.insert(
            key(zone, name),
            MemFile {
                held: Vec::new(),
                stat,
                meta: Meta::new(),
            },
        );
        Ok(stat)
    }

    fn append(&self, zone: &str, name: &str, data: &[u8]) -> Result<FileStat, StoreError> {
        if data.len() > MAX_CHUNK {
            return Err(StoreError::Invalid(format!(
                "append of {} bytes is over the {MAX_CHUNK}-byte limit",
                data.len()
            )));
        }
        let mut files = lock(&self.files);
        let f = files
            .get_mut(&key(zone, name))
            .ok_or_else(|| not_found(zone, name))?;
        if data.is_empty() {
            return Ok(f.stat);
        }
        f.held.extend_from_slice(data);
        if let Some(max) = f.stat.circular_max_size {
            let excess = f.held.len().saturating_sub(max as usize);
            f.held.drain(..excess);
        }
        f.stat.size += data.len() as u64;
        f.stat.modified_ms = self.clock.now_ms().max(f.stat.modified_ms + 1);
        Ok(f.stat)
    }

    fn delete_if_unchanged(
        &self,
        zone: &str,
        name: &str,
        expected: &FileStat,
    ) -> Result<(), StoreError> {
        let mut files = lock(&self.files);
        let k = key(zone, name);
        let f = files.get(&k).ok_or_else(|| not_found(zone, name))?;
        if f.stat != *expected {
            return Err(StoreError::Conflict(format!(
                "file {zone}/{name} changed: now {:?}, expected {expected:?}",
                f.stat
            )));
        }
        files.remove(&k);
        Ok(())
    }

    fn delete(&self, zone: &str, name: &str) -> Result<(), StoreError> {
        lock(&self.files)
            .remove(&key(zone, name))
            .map(drop)
            .ok_or_else(|| not_found(zone, name))
    }

    fn rename_if_unchanged(
        &self,
        zone: &str,
        source: &str,
        target: &str,
        expected: Option<&FileStat>,
    ) -> Result<(), StoreError> {
        if zone.is_empty() || target.is_empty() {
            return Err(StoreError::Invalid(format!(
                "empty zone or file name ({zone:?}/{target:?})"
            )));
        }
        if source == target {
            return Err(StoreError::Invalid(format!(
                "rename of file {zone}/{source} onto itself"
            )));
        }
        let mut files = lock(&self.files);
        if !files.contains_key(&key(zone, source)) {
            return Err(not_found(zone, source));
        }
        let current = files.get(&key(zone, target)).map(|f| f.stat);
        if current.as_ref() != expected {
            return Err(StoreError::Conflict(format!(
                "file {zone}/{target} changed: now {current:?}, expected {expected:?}"
            )));
        }
        let file = files
            .remove(&key(zone, source))
            .ok_or_else(|| not_found(zone, source))?;
        files.insert(key(zone, target), file);
        Ok(())
    }

    fn list_files(&self) -> Result<Vec<(String, String, FileStat)>, StoreError> {
        let mut all: Vec<_> = lock(&self.files)
            .iter()
            .map(|((z, n), f)| (z.clone(), n.clone(), f.stat))
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        Ok(all)
    }

    fn meta(&self, zone: &str, name: &str) -> Result<Meta, StoreError> {
        lock(&self.files)
            .get(&key(zone, name))
            .map(|f| f.meta.clone())
            .ok_or_else(|| not_found(zone, name))
    }

    fn set_meta(&self, zone: &str, name: &str, meta: &Meta) -> Result<(), StoreError> {
        let mut files = lock(&self.files);
        let f = files
            .get_mut(&key(zone, name))
            .ok_or_else(|| not_found(zone, name))?;
        f.meta = meta.clone();
        Ok(())
    }
}
