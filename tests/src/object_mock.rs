//! An object store for the mock host: `object_store`'s in-memory store behind a wrapper that
//! records every call in the host's [`Recorder`] (so a fault sweep can fail each in turn),
//! stamps objects with the mock clock (so archive ages are the fixture's, not the wall clock's),
//! and counts multipart uploads left neither completed nor aborted (the object store's
//! "temp files").

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};
use session_archiver::store::{Clock, StoreError};

use crate::recorder::Recorder;

struct Shared {
    mem: InMemory,
    clock: Arc<dyn Clock>,
    /// Modification time (mock clock, ms) of each key written.
    stamps: Mutex<HashMap<String, i64>>,
    /// Multipart uploads started and not yet completed or aborted.
    open: Mutex<HashSet<u64>>,
    next_upload: AtomicU64,
}

/// See the module doc. `Clone` shares the store; [`quiet`](Self::quiet) gives an unrecorded
/// handle on the same objects, for fixtures and checkers.
#[derive(Clone)]
pub struct MockObjectStore {
    shared: Arc<Shared>,
    /// `None`: unrecorded (and never faulted).
    rec: Option<Arc<Recorder>>,
}

impl std::fmt::Debug for MockObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockObjectStore")
    }
}

impl std::fmt::Display for MockObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockObjectStore")
    }
}

fn fault(e: StoreError) -> object_store::Error {
    object_store::Error::Generic {
        store: "mock",
        source: Box::new(e),
    }
}

impl MockObjectStore {
    /// An empty store recording into `rec`, stamping times from `clock`.
    pub fn new(rec: Arc<Recorder>, clock: Arc<dyn Clock>) -> Self {
        MockObjectStore {
            shared: Arc::new(Shared {
                mem: InMemory::new(),
                clock,
                stamps: Mutex::default(),
                open: Mutex::default(),
                next_upload: AtomicU64::new(1),
            }),
            rec: Some(rec),
        }
    }

    /// The same objects, unrecorded.
    pub fn quiet(&self) -> Self {
        MockObjectStore {
            shared: Arc::clone(&self.shared),
            rec: None,
        }
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.shared.open.lock().unwrap().len()
    }

    /// Fixture: stores `bytes` at `key` with modification time `modified_ms` (unrecorded).
    pub fn put_at(&self, key: &Path, bytes: &[u8], modified_ms: i64) {
        futures_executor_block_on(self.shared.mem.put(key, PutPayload::from(bytes.to_vec())))
            .expect("put fixture object");
        self.stamp(key, modified_ms);
    }

    /// Fixture: the bytes at `key`, if any (unrecorded).
    pub fn get_bytes(&self, key: &Path) -> Option<Vec<u8>> {
        let got = futures_executor_block_on(async {
            match self.shared.mem.get(key).await {
                Ok(r) => Some(r.bytes().await.expect("read fixture object").to_vec()),
                Err(_) => None,
            }
        });
        got
    }

    fn enter(&self, op: &str, args: impl FnOnce() -> String) -> Result<()> {
        match &self.rec {
            Some(rec) => rec.enter(op, args).map_err(fault),
            None => Ok(()),
        }
    }

    fn stamp(&self, key: &Path, ms: i64) {
        self.shared
            .stamps
            .lock()
            .unwrap()
            .insert(key.to_string(), ms);
    }

    fn stamped(&self, mut meta: ObjectMeta) -> ObjectMeta {
        if let Some(ms) = self
            .shared
            .stamps
            .lock()
            .unwrap()
            .get(meta.location.as_ref())
        {
            if let Some(t) = chrono::DateTime::from_timestamp_millis(*ms) {
                meta.last_modified = t;
            }
        }
        meta
    }
}

/// Runs a future of the in-memory store (which never waits on I/O) to completion.
fn futures_executor_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime for fixtures")
        .block_on(f)
}

#[async_trait]
impl ObjectStore for MockObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.enter("object-store.put", || {
            format!("{location} +{}", payload.content_length())
        })?;
        let r = self.shared.mem.put_opts(location, payload, opts).await?;
        self.stamp(location, self.shared.clock.now_ms());
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.enter("object-store.put-multipart", || location.to_string())?;
        let inner = self.shared.mem.put_multipart_opts(location, opts).await?;
        let id = self.shared.next_upload.fetch_add(1, Ordering::SeqCst);
        self.shared.open.lock().unwrap().insert(id);
        Ok(Box::new(MockUpload {
            store: self.clone(),
            inner,
            location: location.clone(),
            id,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let what = if options.head { "head" } else { "get" };
        self.enter(&format!("object-store.{what}"), || location.to_string())?;
        let mut r = self.shared.mem.get_opts(location, options).await?;
        r.meta = self.stamped(r.meta);
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let me = self.clone();
        locations
            .then(move |p| {
                let me = me.clone();
                async move {
                    let p = p?;
                    me.enter("object-store.delete", || p.to_string())?;
                    me.shared.mem.delete(&p).await?;
                    me.shared.stamps.lock().unwrap().remove(p.as_ref());
                    Ok(p)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let shown = prefix.map(|p| p.to_string()).unwrap_or_default();
        if let Err(e) = self.enter("object-store.list", || shown) {
            return stream::once(async move { Err(e) }).boxed();
        }
        let me = self.clone();
        self.shared
            .mem
            .list(prefix)
            .map(move |m| m.map(|m| me.stamped(m)))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.enter("object-store.list", || {
            prefix.map(|p| p.to_string()).unwrap_or_default()
        })?;
        let mut r = self.shared.mem.list_with_delimiter(prefix).await?;
        r.objects = r.objects.into_iter().map(|m| self.stamped(m)).collect();
        Ok(r)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.enter("object-store.copy", || format!("{from} -> {to}"))?;
        self.shared.mem.copy_opts(from, to, options).await?;
        self.stamp(to, self.shared.clock.now_ms());
        Ok(())
    }
}

/// A multipart upload: each part, the completion and the abort are calls of their own.
#[derive(Debug)]
struct MockUpload {
    store: MockObjectStore,
    inner: Box<dyn MultipartUpload>,
    location: Path,
    id: u64,
}

#[async_trait]
impl MultipartUpload for MockUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let len = data.content_length();
        if let Err(e) = self.store.enter("object-store.put-part", || {
            format!("{} +{len}", self.location)
        }) {
            return Box::pin(async move { Err(e) });
        }
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.store
            .enter("object-store.complete", || self.location.to_string())?;
        let r = self.inner.complete().await?;
        self.store
            .stamp(&self.location, self.store.shared.clock.now_ms());
        self.store.shared.open.lock().unwrap().remove(&self.id);
        Ok(r)
    }

    /// Logged, never faulted: a failed abort leaves an invisible upload that a bucket
    /// lifecycle rule ends, which no check here could tell from a lost one.
    async fn abort(&mut self) -> Result<()> {
        if let Some(rec) = &self.store.rec {
            let _ = rec.enter("object-store.abort", || self.location.to_string());
        }
        self.inner.abort().await?;
        self.store.shared.open.lock().unwrap().remove(&self.id);
        Ok(())
    }
}
