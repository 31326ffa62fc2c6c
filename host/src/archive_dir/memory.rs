//! An in-memory archive directory with the on-disk one's semantics: names pass
//! `validate_archive_name` (other files are neither listed nor touched),
//! a writer's bytes live under a hidden temp name until `commit`, a dropped writer leaves
//! nothing, and `clean_temps` removes temps a "crashed" writer left (planted with `put`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::fs::TEMP_PREFIX;
use super::{
    archive_id, validate_archive_name, validate_name, ArchiveDir, ArchiveReader, ArchiveWriter,
    Entry,
};
use crate::store::{Clock, StoreError, SystemClock, MAX_CHUNK};

#[derive(Debug, Clone)]
struct MemEntry {
    data: Arc<Vec<u8>>,
    modified_ms: i64,
    /// A number no other file of this directory ever had (the identity `Entry` reports).
    generation: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Committed archives and hidden (temp) files alike, by name.
    files: BTreeMap<String, MemEntry>,
    next_temp: u64,
    next_generation: u64,
}

impl State {
    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }
}

/// An in-memory `ArchiveDir`; `Clone` shares the same directory.
#[derive(Clone)]
pub struct MemoryArchiveDir {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
    root: String,
}

impl std::fmt::Debug for MemoryArchiveDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryArchiveDir")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryArchiveDir {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryArchiveDir {
    /// The path prefix `path` reports when none is given.
    pub const DEFAULT_ROOT: &'static str = "/memory/archives";

    /// An empty directory under [`Self::DEFAULT_ROOT`], stamping times from the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// A directory stamping modification times from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Arc::default(),
            clock,
            root: Self::DEFAULT_ROOT.to_owned(),
        }
    }

    /// Reports paths under `root` instead of `DEFAULT_ROOT`.
    pub fn with_root(mut self, root: impl Into<String>) -> Self {
        self.root = root.into().trim_end_matches('/').to_owned();
        self
    }

    /// Fixture: stores `bytes` under `name` with the given mtime, bypassing the writer. `name`
    /// must be valid (an archive name, or any other safe name to plant a user's own file), or a
    /// temp name (`.tmp-...`) to simulate a writer that died.
    pub fn put(&self, name: &str, bytes: &[u8], modified_ms: i64) -> Result<(), StoreError> {
        if !name.starts_with(TEMP_PREFIX) || name.contains(['/', '\0']) {
            validate_name(name)?;
        }
        let mut state = self.lock();
        let generation = state.generation();
        state.files.insert(
            name.to_owned(),
            MemEntry {
                data: Arc::new(bytes.to_vec()),
                modified_ms,
                generation,
            },
        );
        Ok(())
    }

    /// Fixture: the bytes under `name` (temps included), if any.
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        self.lock().files.get(name).map(|e| e.data.to_vec())
    }

    /// How many temp files exist (live writers plus ones "crashed" writers left).
    pub fn temp_count(&self) -> usize {
        self.lock()
            .files
            .keys()
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .count()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry(name: &str, e: &MemEntry) -> Entry {
        Entry {
            name: name.to_owned(),
            size: e.data.len() as u64,
            modified_ms: e.modified_ms,
            identity: Some(format!("gen-{}", e.generation)),
        }
    }
}

impl ArchiveDir for MemoryArchiveDir {
    fn list(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .lock()
            .files
            .iter()
            .filter(|(n, _)| archive_id(n).is_some())
            .map(|(n, e)| Self::entry(n, e))
            .collect())
    }

    fn foreign_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .lock()
            .files
            .keys()
            .filter(|n| !n.starts_with('.') && archive_id(n).is_none())
            .count() as u64)
    }

    fn stat(&self, name: &str) -> Result<Option<Entry>, StoreError> {
        validate_archive_name(name)?;
        Ok(self.lock().files.get(name).map(|e| Self::entry(name, e)))
    }

    fn create(&self, name: &str) -> Result<Box<dyn ArchiveWriter>, StoreError> {
        validate_archive_name(name)?;
        let mut state = self.lock();
        state.next_temp += 1;
        let temp = format!("{TEMP_PREFIX}{name}-{:016x}", state.next_temp);
        let generation = state.generation();
        state.files.insert(
            temp.clone(),
            MemEntry {
                data: Arc::default(),
                modified_ms: self.clock.now_ms(),
                generation,
            },
        );
        Ok(Box::new(MemWriter {
            dir: self.clone(),
            name: name.to_owned(),
            temp,
            buf: Some(Vec::new()),
        }))
    }

    fn open(&self, name: &str) -> Result<Box<dyn ArchiveReader>, StoreError> {
        validate_archive_name(name)?;
        let data = self
            .lock()
            .files
            .get(name)
            .map(|e| Arc::clone(&e.data))
            .ok_or_else(|| StoreError::NotFound(format!("archive {name}")))?;
        Ok(Box::new(MemReader { data, pos: 0 }))
    }

    fn remove(&self, name: &str) -> Result<(), StoreError> {
        validate_archive_name(name)?;
        self.lock()
            .files
            .remove(name)
            .map(drop)
            .ok_or_else(|| StoreError::NotFound(format!("archive {name}")))
    }

    /// The check and the removal happen under one lock.
    fn remove_if_unchanged(&self, name: &str, expected: &Entry) -> Result<(), StoreError> {
        validate_archive_name(name)?;
        let mut state = self.lock();
        let now = state
            .files
            .get(name)
            .map(|e| Self::entry(name, e))
            .ok_or_else(|| StoreError::NotFound(format!("archive {name}")))?;
        if !expected.same_file(&now) {
            return Err(super::changed(name, expected, &now));
        }
        state.files.remove(name);
        Ok(())
    }

    fn path(&self, name: &str) -> Result<String, StoreError> {
        validate_archive_name(name)?;
        Ok(format!("{}/{name}", self.root))
    }

    fn clean_temps(&self, min_age_ms: i64) -> Result<u32, StoreError> {
        let now = self.clock.now_ms();
        let mut state = self.lock();
        let before = state.files.len();
        state
            .files
            .retain(|n, e| !(n.starts_with(TEMP_PREFIX) && now - e.modified_ms >= min_age_ms));
        Ok((before - state.files.len()) as u32)
    }
}

/// Buffers the archive; the temp entry marks it in progress (and is what `clean_temps` sees).
struct MemWriter {
    dir: MemoryArchiveDir,
    name: String,
    temp: String,
    /// `None` once committed or aborted.
    buf: Option<Vec<u8>>,
}

impl MemWriter {
    fn finished(&self) -> StoreError {
        StoreError::Invalid(format!("writer for {} already finished", self.name))
    }

    fn discard(&mut self) {
        if self.buf.take().is_some() {
            self.dir.lock().files.remove(&self.temp);
        }
    }
}

impl ArchiveWriter for MemWriter {
    fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        if chunk.len() > MAX_CHUNK {
            return Err(StoreError::Invalid(format!(
                "chunk of {} bytes is over the {MAX_CHUNK}-byte limit",
                chunk.len()
            )));
        }
        let Some(buf) = self.buf.as_mut() else {
            return Err(self.finished());
        };
        buf.extend_from_slice(chunk);
        // Like a file's mtime: a writer still writing is never a stale temp.
        let now = self.dir.clock.now_ms();
        if let Some(e) = self.dir.lock().files.get_mut(&self.temp) {
            e.modified_ms = now;
        }
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<Entry, StoreError> {
        let Some(buf) = self.buf.take() else {
            return Err(self.finished());
        };
        let modified_ms = self.dir.clock.now_ms();
        let mut state = self.dir.lock();
        let entry = MemEntry {
            data: Arc::new(buf),
            modified_ms,
            generation: state.generation(),
        };
        // Like a rename of a temp that `clean_temps` already removed: the data is gone.
        if state.files.remove(&self.temp).is_none() {
            return Err(StoreError::Io(format!(
                "temp file of {} vanished before commit",
                self.name
            )));
        }
        state.files.insert(self.name.clone(), entry.clone());
        Ok(MemoryArchiveDir::entry(&self.name, &entry))
    }

    fn abort(mut self: Box<Self>) {
        self.discard();
    }
}

impl Drop for MemWriter {
    fn drop(&mut self) {
        self.discard();
    }
}

struct MemReader {
    data: Arc<Vec<u8>>,
    pos: usize,
}

impl ArchiveReader for MemReader {
    fn read(&mut self, max: usize) -> Result<Vec<u8>, StoreError> {
        if max > MAX_CHUNK {
            return Err(StoreError::Invalid(format!(
                "read of {max} bytes is over the {MAX_CHUNK}-byte limit"
            )));
        }
        let end = self.data.len().min(self.pos + max);
        let out = self.data[self.pos..end].to_vec();
        self.pos = end;
        Ok(out)
    }

    fn size(&self) -> u64 {
        self.data.len() as u64
    }
}
