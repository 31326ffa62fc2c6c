//! Mock stores: the host's in-memory stores behind a recorder that logs and breaks calls.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use session_archiver::archive_dir::memory::MemoryArchiveDir;
use session_archiver::archive_dir::object::ObjectArchiveDir;
use session_archiver::archive_dir::{ArchiveDir, ArchiveReader, ArchiveWriter, Entry};
use session_archiver::store::memory::{MemoryFiles, MemoryObjects};
use session_archiver::store::{
    Clock, FileOpts, FileStat, FileStore, Meta, Object, ObjectStore, Page, StoreError,
};

use crate::object_mock::MockObjectStore;
use crate::recorder::Recorder;

/// A clock tests move by hand.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Object store that records and may fail each call.
pub struct MockObjects {
    pub inner: MemoryObjects,
    pub rec: Arc<Recorder>,
}

impl ObjectStore for MockObjects {
    fn list(&self, after: Option<&str>, limit: u32) -> Result<Page, StoreError> {
        self.rec
            .enter("objects.list", || format!("after={after:?} limit={limit}"))?;
        self.inner.list(after, limit)
    }
    fn get(&self, id: &str) -> Result<Object, StoreError> {
        self.rec.enter("objects.get", || id.to_string())?;
        self.inner.get(id)
    }
    fn update_meta(&self, id: &str, patch: &Meta) -> Result<Object, StoreError> {
        self.rec.enter("objects.update-meta", || {
            format!("{id} {}", serde_json::Value::Object(patch.clone()))
        })?;
        self.inner.update_meta(id, patch)
    }
    fn update_meta_if(&self, id: &str, patch: &Meta, version: u64) -> Result<Object, StoreError> {
        self.rec.enter("objects.update-meta-if", || {
            format!(
                "{id} {} @{version}",
                serde_json::Value::Object(patch.clone())
            )
        })?;
        self.inner.update_meta_if(id, patch, version)
    }
    fn insert(&self, id: &str, meta: &Meta) -> Result<Object, StoreError> {
        self.rec.enter("objects.insert", || id.to_string())?;
        self.inner.insert(id, meta)
    }
}

/// File store that records and may fail each call.
pub struct MockFiles {
    pub inner: MemoryFiles,
    pub rec: Arc<Recorder>,
}

impl FileStore for MockFiles {
    fn stat(&self, zone: &str, name: &str) -> Result<Option<FileStat>, StoreError> {
        self.rec.enter("files.stat", || format!("{zone}/{name}"))?;
        self.inner.stat(zone, name)
    }
    fn read(&self, zone: &str, name: &str, offset: u64, len: u32) -> Result<Vec<u8>, StoreError> {
        self.rec
            .enter("files.read", || format!("{zone}/{name} @{offset} +{len}"))?;
        self.inner.read(zone, name, offset, len)
    }
    fn create(&self, zone: &str, name: &str, opts: FileOpts) -> Result<FileStat, StoreError> {
        self.rec
            .enter("files.create", || format!("{zone}/{name}"))?;
        self.inner.create(zone, name, opts)
    }
    fn append(&self, zone: &str, name: &str, data: &[u8]) -> Result<FileStat, StoreError> {
        self.rec
            .enter("files.append", || format!("{zone}/{name} +{}", data.len()))?;
        self.inner.append(zone, name, data)
    }
    fn delete_if_unchanged(
        &self,
        zone: &str,
        name: &str,
        expected: &FileStat,
    ) -> Result<(), StoreError> {
        self.rec.enter("files.delete-if-unchanged", || {
            format!("{zone}/{name} size={}", expected.size)
        })?;
        self.inner.delete_if_unchanged(zone, name, expected)
    }
    fn delete(&self, zone: &str, name: &str) -> Result<(), StoreError> {
        self.rec
            .enter("files.delete", || format!("{zone}/{name}"))?;
        self.inner.delete(zone, name)
    }
    fn rename_if_unchanged(
        &self,
        zone: &str,
        source: &str,
        target: &str,
        expected: Option<&FileStat>,
    ) -> Result<(), StoreError> {
        self.rec.enter("files.rename-if-unchanged", || {
            format!(
                "{zone}/{source} -> {target} expected={:?}",
                expected.map(|s| s.size)
            )
        })?;
        self.inner
            .rename_if_unchanged(zone, source, target, expected)
    }
    fn list_files(&self) -> Result<Vec<(String, String, FileStat)>, StoreError> {
        self.inner.list_files()
    }
    fn meta(&self, zone: &str, name: &str) -> Result<Meta, StoreError> {
        self.rec
            .enter("files.get-meta", || format!("{zone}/{name}"))?;
        self.inner.meta(zone, name)
    }
    fn set_meta(&self, zone: &str, name: &str, meta: &Meta) -> Result<(), StoreError> {
        self.rec.enter("files.set-meta", || {
            format!("{zone}/{name} {}", serde_json::Value::Object(meta.clone()))
        })?;
        self.inner.set_meta(zone, name, meta)
    }
}

/// Archive directory that records and may fail each call, writers and readers included.
pub struct MockArchiveDir {
    pub inner: MemoryArchiveDir,
    /// When set, every call goes to this object-store backend instead of `inner`.
    pub object: Option<ObjectBackend>,
    pub rec: Arc<Recorder>,
}

/// The object-store archive directory a mock host can run on: [`ObjectArchiveDir`] over a
/// [`MockObjectStore`] whose every call is recorded (and can be failed) too.
pub struct ObjectBackend {
    /// What the host uses.
    pub dir: ObjectArchiveDir,
    /// The same objects, unrecorded (fixtures and checkers).
    pub quiet: ObjectArchiveDir,
    pub store: MockObjectStore,
}

/// The prefix and URL of a mock host's object-store archives.
pub const OBJECT_PREFIX: &str = "archives";
/// See [`OBJECT_PREFIX`].
pub const OBJECT_URL: &str = "s3://mock-bucket/archives";

impl ObjectBackend {
    /// Parts of `part_size` bytes, so small archives exercise multipart uploads too.
    pub fn new(store: MockObjectStore, part_size: usize) -> Self {
        let dir = ObjectArchiveDir::new(Arc::new(store.clone()), OBJECT_PREFIX, OBJECT_URL)
            .expect("object archive dir")
            .with_part_size(part_size);
        let quiet = ObjectArchiveDir::new(Arc::new(store.quiet()), OBJECT_PREFIX, OBJECT_URL)
            .expect("object archive dir");
        ObjectBackend { dir, quiet, store }
    }
}

impl MockArchiveDir {
    fn backend(&self) -> &dyn ArchiveDir {
        match &self.object {
            Some(o) => &o.dir,
            None => &self.inner,
        }
    }

    /// The directory, unrecorded.
    pub fn quiet(&self) -> &dyn ArchiveDir {
        match &self.object {
            Some(o) => &o.quiet,
            None => &self.inner,
        }
    }

    /// Fixture: puts `bytes` under `name` with the given mtime (unrecorded).
    pub fn put_file(&self, name: &str, bytes: &[u8], modified_ms: i64) -> Result<(), StoreError> {
        match &self.object {
            Some(o) => {
                o.store
                    .quiet()
                    .put_at(&o.quiet.key(name), bytes, modified_ms);
                Ok(())
            }
            None => self.inner.put(name, bytes, modified_ms),
        }
    }

    /// Fixture: the bytes under `name`, if any (unrecorded).
    pub fn get_file(&self, name: &str) -> Option<Vec<u8>> {
        match &self.object {
            Some(o) => o.store.quiet().get_bytes(&o.quiet.key(name)),
            None => self.inner.get(name),
        }
    }

    /// Writers in progress or left behind: temp files, or multipart uploads never completed
    /// or aborted.
    pub fn temp_count(&self) -> usize {
        match &self.object {
            Some(o) => o.store.open_uploads(),
            None => self.inner.temp_count(),
        }
    }
}

impl ArchiveDir for MockArchiveDir {
    fn list(&self) -> Result<Vec<Entry>, StoreError> {
        self.rec.enter("archive-dir.list", String::new)?;
        self.backend().list()
    }
    fn stat(&self, name: &str) -> Result<Option<Entry>, StoreError> {
        self.rec.enter("archive-dir.stat", || name.to_string())?;
        self.backend().stat(name)
    }
    fn create(&self, name: &str) -> Result<Box<dyn ArchiveWriter>, StoreError> {
        self.rec.enter("archive-dir.create", || name.to_string())?;
        Ok(Box::new(MockWriter {
            inner: self.backend().create(name)?,
            name: name.to_string(),
            rec: self.rec.clone(),
        }))
    }
    fn open(&self, name: &str) -> Result<Box<dyn ArchiveReader>, StoreError> {
        self.rec.enter("archive-dir.open", || name.to_string())?;
        Ok(Box::new(MockReader {
            inner: self.backend().open(name)?,
            name: name.to_string(),
            rec: self.rec.clone(),
        }))
    }
    fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.rec.enter("archive-dir.remove", || name.to_string())?;
        self.backend().remove(name)
    }
    fn remove_if_unchanged(
        &self,
        name: &str,
        expected: &session_archiver::archive_dir::Entry,
    ) -> Result<(), StoreError> {
        self.rec
            .enter("archive-dir.remove-if-unchanged", || name.to_string())?;
        self.backend().remove_if_unchanged(name, expected)
    }
    fn path(&self, name: &str) -> Result<String, StoreError> {
        self.rec.enter("archive-dir.path", || name.to_string())?;
        self.backend().path(name)
    }
    fn clean_temps(&self, min_age_ms: i64) -> Result<u32, StoreError> {
        self.rec
            .enter("archive-dir.clean-temps", || min_age_ms.to_string())?;
        self.backend().clean_temps(min_age_ms)
    }
}

struct MockWriter {
    inner: Box<dyn ArchiveWriter>,
    name: String,
    rec: Arc<Recorder>,
}

impl ArchiveWriter for MockWriter {
    fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.rec.enter("archive-dir.write", || {
            format!("{} +{}", self.name, chunk.len())
        })?;
        self.inner.write(chunk)
    }
    fn commit(self: Box<Self>) -> Result<Entry, StoreError> {
        let name = self.name.clone();
        // A failed commit must leave no file: drop (= abort) the inner writer.
        self.rec.enter("archive-dir.commit", || name)?;
        self.inner.commit()
    }
    fn abort(self: Box<Self>) {
        // Abort cannot fail in the contract; it is logged but never faulted.
        let _ = self.rec.enter("archive-dir.abort", || self.name.clone());
        self.inner.abort()
    }
}

struct MockReader {
    inner: Box<dyn ArchiveReader>,
    name: String,
    rec: Arc<Recorder>,
}

impl ArchiveReader for MockReader {
    fn read(&mut self, max: usize) -> Result<Vec<u8>, StoreError> {
        self.rec
            .enter("archive-dir.read", || format!("{} max={max}", self.name))?;
        self.inner.read(max)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
}
