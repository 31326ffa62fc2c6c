//! Archives in an object store: an S3 bucket and prefix (`s3://bucket/prefix`, any
//! S3-compatible server), or any other [`object_store`] store (its in-memory one backs tests).
//!
//! The guarantees are the directory's, built from what object stores offer:
//! - nothing is visible under an archive's name until `commit`: an archive smaller than one part
//!   is one PUT (atomic), a larger one a multipart upload completed only by `commit` (S3 shows
//!   nothing of an upload before it completes); a writer dropped or aborted aborts its upload;
//! - bytes are streamed both ways: a writer holds at most one part ([`PART_SIZE`] plus one
//!   chunk), a reader one response chunk plus what the caller asked for;
//! - `remove_if_unchanged` removes only the object the caller listed. `object_store` has no
//!   conditional DELETE, so it checks the object (size, time and ETag, the entry's identity)
//!   with a HEAD immediately before the DELETE; the window between the two is documented in
//!   README's known limits (archive names are per session, and a session is only written by
//!   the machine that owns it, under its local session lock).
//!
//! Sharing: several machines may archive into one bucket and prefix. Archive names are per
//! session, and with an owner filter ([`ObjectArchiveDir::owned_by`], set by the data
//! directory) `list` shows only archives of this machine's own sessions: another machine's
//! archive would otherwise be an orphan here (no session refers to it), the first thing a prune
//! deletes. Objects of other owners count as foreign (`foreign_count`) and are never touched.
//!
//! Confinement: every key is `<prefix>/<name>` with a name `validate_archive_name` admitted (one
//! component of `[A-Za-z0-9._-]`), so nothing outside the bucket and prefix is ever read,
//! written or removed, and objects under the prefix that are not archives are never touched.
//!
//! The traits are synchronous; the async calls run on a small tokio runtime the backend owns.
//! Call it from plain threads (or a tokio `spawn_blocking` thread), never from async code.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};

use super::{archive_id, validate_archive_name, ArchiveDir, ArchiveReader, ArchiveWriter, Entry};
use crate::store::{StoreError, MAX_CHUNK};

/// Bytes a writer buffers before uploading them as one part: S3's minimum part size (every
/// part but the last must be at least 5 MiB). An archive smaller than this is a single PUT.
pub const PART_SIZE: usize = 5 << 20;

/// The URL scheme that selects the S3 backend (`s3://bucket/prefix`).
pub const S3_SCHEME: &str = "s3://";

/// Whether `location` (an `--archive-dir` value) names an object store rather than a directory.
pub fn is_object_url(location: &str) -> bool {
    location.starts_with(S3_SCHEME)
}

/// How to reach an S3-compatible server, on top of the usual `AWS_*` environment variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, ...), which
/// these override when set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// The server's URL (e.g. `http://127.0.0.1:9000` for a local server); default: AWS.
    pub endpoint: Option<String>,
    /// The bucket's region (default: `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// Access key id and secret, for an embedder that does not keep them in the environment
    /// (the CLI reads them from `AWS_*` only, never from its command line).
    pub credentials: Option<(String, String)>,
}

/// An archive directory in an object store, under one prefix. `Clone` shares the store.
#[derive(Clone)]
pub struct ObjectArchiveDir {
    inner: Arc<Inner>,
    /// `None`: every archive under the prefix is ours.
    owns: Option<OwnerFilter>,
    part_size: usize,
}

/// Whether a session id is this archiver's own (see [`ObjectArchiveDir::owned_by`]).
pub type OwnerFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

struct Inner {
    store: Arc<dyn ObjectStore>,
    /// `None` only while dropping (see `Drop`).
    runtime: Option<tokio::runtime::Runtime>,
    /// Where archives live in the store (empty: the bucket's root).
    prefix: ObjectPath,
    /// What `path` reports before `/<name>`, e.g. `s3://bucket/prefix`.
    url: String,
}

impl std::fmt::Debug for ObjectArchiveDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectArchiveDir")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A runtime dropped inside async code panics; shutting it down in the background never
        // does (an embedding async app may drop the archiver anywhere).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// An object store failure on `what` of `name`: `NotFound` stays the caller's not-found.
fn os_err(what: &str, name: &str, e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound(format!("archive {name}")),
        e => StoreError::Io(format!("{what} {name}: {e}")),
    }
}

/// For create/write/commit, whose WIT errors have no not-found.
fn io_err(what: &str, name: &str, e: object_store::Error) -> StoreError {
    StoreError::Io(format!("{what} {name}: {e}"))
}

/// Splits `s3://bucket/prefix/...` into the bucket and the prefix (no leading or trailing `/`).
fn parse_s3_url(url: &str) -> Result<(&str, &str), StoreError> {
    let bad = |why: &str| StoreError::Invalid(format!("archive location {url:?}: {why}"));
    let rest = url
        .strip_prefix(S3_SCHEME)
        .ok_or_else(|| bad("not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("no bucket (expected s3://bucket/prefix)"));
    }
    Ok((bucket, prefix.trim_matches('/')))
}

impl ObjectArchiveDir {
    /// Archives in `store` under `prefix` (`a/b`; empty for the root); `path` reports
    /// `<url>/<name>`. Starts the backend's runtime; touches nothing in the store.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        url: impl Into<String>,
    ) -> Result<Self, StoreError> {
        let prefix = prefix.trim_matches('/');
        let prefix = ObjectPath::parse(prefix).map_err(|e| {
            StoreError::Invalid(format!("archive prefix {prefix:?} is not a valid key: {e}"))
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("archiver-object-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(format!("start the object store's runtime: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                runtime: Some(runtime),
                prefix,
                url: url.into().trim_end_matches('/').to_owned(),
            }),
            owns: None,
            part_size: PART_SIZE,
        })
    }

    /// Lists only archives of sessions `owns` accepts (this machine's, when several share the
    /// prefix); others count as foreign and are never offered to a policy, so never pruned.
    pub fn owned_by(mut self, owns: OwnerFilter) -> Self {
        self.owns = Some(owns);
        self
    }

    /// Uploads parts of `bytes` instead of [`PART_SIZE`] (tests use small parts to exercise
    /// multipart uploads with small archives; real S3 refuses parts under 5 MiB but the last).
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// The S3 bucket and prefix `url` names (`s3://bucket/prefix`), reached as `options` and the
    /// `AWS_*` environment variables say. Lists the prefix once, so a missing bucket or bad
    /// credentials fail here rather than in the middle of a sweep.
    #[cfg(feature = "s3")]
    pub fn s3(url: &str, options: &S3Options) -> Result<Self, StoreError> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let (bucket, prefix) = parse_s3_url(url)?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        if let Some((id, secret)) = &options.credentials {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        // A plain-http endpoint is a local or private server the user named on purpose.
        if builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .is_some_and(|e| e.starts_with("http://"))
        {
            builder = builder.with_allow_http(true);
        }
        let store = builder.build().map_err(|e| {
            StoreError::Invalid(format!("archive location {url}: configuring S3: {e}"))
        })?;
        let shown = if prefix.is_empty() {
            format!("{S3_SCHEME}{bucket}")
        } else {
            format!("{S3_SCHEME}{bucket}/{prefix}")
        };
        let dir = Self::new(Arc::new(store), prefix, shown)?;
        dir.inner
            .block_on(dir.inner.store.list_with_delimiter(Some(&dir.inner.prefix)))
            .map_err(|e| StoreError::Io(format!("list {url}: {e}")))?;
        Ok(dir)
    }

    /// Without the `s3` feature there is no S3 client: says so.
    #[cfg(not(feature = "s3"))]
    pub fn s3(url: &str, _options: &S3Options) -> Result<Self, StoreError> {
        parse_s3_url(url)?;
        Err(StoreError::Invalid(format!(
            "archive location {url}: this build has no S3 support (session-archiver's `s3` feature)"
        )))
    }

    /// What `path` reports before `/<name>` (`s3://bucket/prefix`).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The store the archives are in (tests read and plant objects through it).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// The key archive `name` is stored under.
    pub fn key(&self, name: &str) -> ObjectPath {
        self.inner.key(name)
    }
}

impl Inner {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the directory")
            .block_on(f)
    }

    fn key(&self, name: &str) -> ObjectPath {
        self.prefix.clone().join(name)
    }

    /// The entry of an object. Times are whole seconds: a listing reports milliseconds but a
    /// HEAD's `Last-Modified` only seconds, and `remove_if_unchanged` compares the two.
    fn entry(&self, name: &str, meta: &ObjectMeta) -> Entry {
        let ms = meta.last_modified.timestamp_millis();
        Entry {
            name: name.to_owned(),
            size: meta.size,
            modified_ms: ms - ms.rem_euclid(1000),
            // The ETag, which both a listing and a HEAD report (a version id only the HEAD).
            identity: meta.e_tag.clone(),
        }
    }

    /// The archives directly under the prefix and how many other things are there.
    fn scan(&self, owns: Option<&OwnerFilter>) -> Result<(Vec<Entry>, u64), StoreError> {
        let listing = self
            .block_on(self.store.list_with_delimiter(Some(&self.prefix)))
            .map_err(|e| StoreError::Io(format!("list {}: {e}", self.url)))?;
        let mut out = Vec::new();
        let mut foreign = listing.common_prefixes.len() as u64;
        for meta in &listing.objects {
            let ours = |id: &str| owns.is_none_or(|owns| owns(id));
            match meta
                .location
                .filename()
                .filter(|n| archive_id(n).is_some_and(ours))
            {
                Some(name) => out.push(self.entry(name, meta)),
                None => foreign += 1,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((out, foreign))
    }

    fn head(&self, name: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self.block_on(self.store.head(&self.key(name))) {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_err("stat", name, e)),
        }
    }
}

impl ArchiveDir for ObjectArchiveDir {
    fn list(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self.inner.scan(self.owns.as_ref())?.0)
    }

    fn foreign_count(&self) -> Result<u64, StoreError> {
        Ok(self.inner.scan(self.owns.as_ref())?.1)
    }

    fn stat(&self, name: &str) -> Result<Option<Entry>, StoreError> {
        validate_archive_name(name)?;
        Ok(self.inner.head(name)?.map(|m| self.inner.entry(name, &m)))
    }

    fn create(&self, name: &str) -> Result<Box<dyn ArchiveWriter>, StoreError> {
        validate_archive_name(name)?;
        Ok(Box::new(ObjectWriter {
            inner: Arc::clone(&self.inner),
            name: name.to_owned(),
            key: self.inner.key(name),
            buf: Vec::new(),
            part_size: self.part_size,
            upload: None,
            written: 0,
            finished: false,
        }))
    }

    fn open(&self, name: &str) -> Result<Box<dyn ArchiveReader>, StoreError> {
        validate_archive_name(name)?;
        let got = self
            .inner
            .block_on(self.inner.store.get(&self.inner.key(name)))
            .map_err(|e| os_err("open", name, e))?;
        let size = got.meta.size;
        Ok(Box::new(ObjectReader {
            inner: Arc::clone(&self.inner),
            name: name.to_owned(),
            stream: got.into_stream(),
            pending: Default::default(),
            size,
        }))
    }

    /// S3 deletes a missing key without complaint: a HEAD first gives the caller its not-found.
    fn remove(&self, name: &str) -> Result<(), StoreError> {
        validate_archive_name(name)?;
        if self.inner.head(name)?.is_none() {
            return Err(StoreError::NotFound(format!("archive {name}")));
        }
        self.inner
            .block_on(self.inner.store.delete(&self.inner.key(name)))
            .map_err(|e| os_err("remove", name, e))
    }

    /// Checks the object with a HEAD immediately before the DELETE (no conditional DELETE in
    /// `object_store`): an object re-written since the caller listed it has a new ETag (and
    /// usually size and time) and is left alone. A write landing between the HEAD and the DELETE is not caught;
    /// README's known limits say when that can happen.
    fn remove_if_unchanged(&self, name: &str, expected: &Entry) -> Result<(), StoreError> {
        validate_archive_name(name)?;
        let now = self
            .inner
            .head(name)?
            .map(|m| self.inner.entry(name, &m))
            .ok_or_else(|| StoreError::NotFound(format!("archive {name}")))?;
        if !expected.same_file(&now) {
            return Err(super::changed(name, expected, &now));
        }
        self.inner
            .block_on(self.inner.store.delete(&self.inner.key(name)))
            .map_err(|e| os_err("remove", name, e))
    }

    fn path(&self, name: &str) -> Result<String, StoreError> {
        validate_archive_name(name)?;
        Ok(format!("{}/{name}", self.inner.url))
    }

    /// Inside this bucket and prefix and the session's own name: exactly what `path` reports.
    fn is_path_of(&self, path: &str, name: &str) -> Result<bool, StoreError> {
        Ok(self.path(name)? == path)
    }

    /// Nothing to clean under the prefix: writers make no temp objects (an unfinished upload
    /// is invisible). Uploads a killed process left incomplete are not listed by
    /// `object_store`; a bucket lifecycle rule (`AbortIncompleteMultipartUpload`) removes them
    /// (README).
    fn clean_temps(&self, _min_age_ms: i64) -> Result<u32, StoreError> {
        Ok(0)
    }
}

/// Buffers up to one part; the first full part starts a multipart upload, `commit` completes
/// it (or makes the whole archive one PUT when it never reached a part).
struct ObjectWriter {
    inner: Arc<Inner>,
    name: String,
    key: ObjectPath,
    buf: Vec<u8>,
    /// A part is uploaded once `buf` holds this many bytes.
    part_size: usize,
    upload: Option<Box<dyn MultipartUpload>>,
    /// Bytes uploaded so far (parts, or the single PUT).
    written: u64,
    /// Set once committed or aborted.
    finished: bool,
}

impl ObjectWriter {
    fn check_open(&self) -> Result<(), StoreError> {
        if self.finished {
            return Err(StoreError::Invalid(format!(
                "writer for {} already finished",
                self.name
            )));
        }
        Ok(())
    }

    /// Uploads the buffer as the next part, starting the upload first if needed.
    fn flush_part(&mut self) -> Result<(), StoreError> {
        if self.upload.is_none() {
            let upload = self
                .inner
                .block_on(self.inner.store.put_multipart(&self.key))
                .map_err(|e| io_err("start upload of", &self.name, e))?;
            self.upload = Some(upload);
        }
        self.written += self.buf.len() as u64;
        let part = PutPayload::from(std::mem::take(&mut self.buf));
        let upload = self.upload.as_mut().expect("started above");
        let fut = upload.put_part(part);
        self.inner
            .block_on(fut)
            .map_err(|e| io_err("upload part of", &self.name, e))
    }

    fn finish(&mut self) -> Result<Entry, StoreError> {
        self.check_open()?;
        let put = match self.upload.is_some() {
            false => {
                self.written = self.buf.len() as u64;
                let body = PutPayload::from(std::mem::take(&mut self.buf));
                self.inner
                    .block_on(self.inner.store.put(&self.key, body))
                    .map_err(|e| io_err("put", &self.name, e))?
            }
            true => {
                if !self.buf.is_empty() {
                    self.flush_part()?;
                }
                let upload = self.upload.as_mut().expect("checked above");
                let put = self
                    .inner
                    .block_on(upload.complete())
                    .map_err(|e| io_err("complete upload of", &self.name, e))?;
                self.upload = None;
                put
            }
        };
        self.finished = true;
        // The archive is in place: a failed HEAD must not turn a done commit into an error.
        let now_s = {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            ms - ms.rem_euclid(1000)
        };
        Ok(match self.inner.head(&self.name) {
            Ok(Some(meta)) => self.inner.entry(&self.name, &meta),
            _ => Entry {
                name: self.name.clone(),
                size: self.written,
                modified_ms: now_s,
                identity: put.e_tag,
            },
        })
    }

    fn discard(&mut self) {
        self.finished = true;
        self.buf = Vec::new();
        if let Some(mut upload) = self.upload.take() {
            // Best effort: an upload left behind is invisible, and a lifecycle rule ends it.
            let _ = self.inner.block_on(upload.abort());
        }
    }
}

impl ArchiveWriter for ObjectWriter {
    fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        if chunk.len() > MAX_CHUNK {
            return Err(StoreError::Invalid(format!(
                "chunk of {} bytes is over the {MAX_CHUNK}-byte limit",
                chunk.len()
            )));
        }
        self.check_open()?;
        self.buf.extend_from_slice(chunk);
        if self.buf.len() >= self.part_size {
            self.flush_part()?;
        }
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<Entry, StoreError> {
        let result = self.finish();
        if result.is_err() {
            self.discard();
        }
        result
    }

    fn abort(mut self: Box<Self>) {
        self.discard();
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        self.discard();
    }
}

/// Streams one GET's body.
struct ObjectReader {
    inner: Arc<Inner>,
    name: String,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    /// What the last response chunk held beyond the last read.
    pending: Bytes,
    size: u64,
}

impl ArchiveReader for ObjectReader {
    fn read(&mut self, max: usize) -> Result<Vec<u8>, StoreError> {
        if max > MAX_CHUNK {
            return Err(StoreError::Invalid(format!(
                "read of {max} bytes is over the {MAX_CHUNK}-byte limit"
            )));
        }
        let mut out = Vec::with_capacity(max.min(self.size as usize));
        while out.len() < max {
            if self.pending.is_empty() {
                match self.inner.block_on(self.stream.next()) {
                    Some(Ok(b)) => self.pending = b,
                    Some(Err(e)) => return Err(io_err("read", &self.name, e)),
                    None => break,
                }
                continue;
            }
            let n = (max - out.len()).min(self.pending.len());
            out.extend_from_slice(&self.pending.split_to(n));
        }
        Ok(out)
    }

    fn size(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn dir(part: usize) -> ObjectArchiveDir {
        ObjectArchiveDir::new(
            Arc::new(InMemory::new()),
            "team/archives",
            "memory://b/team/archives",
        )
        .unwrap()
        .with_part_size(part)
    }

    fn read_all(d: &ObjectArchiveDir, name: &str) -> Vec<u8> {
        let mut r = d.open(name).unwrap();
        let mut all = Vec::new();
        loop {
            let c = r.read(7).unwrap();
            if c.is_empty() {
                return all;
            }
            all.extend(c);
        }
    }

    #[test]
    fn nothing_is_visible_until_commit_whether_one_put_or_a_multipart_upload() {
        for part in [1 << 20, 10] {
            let d = dir(part);
            let mut w = d.create("s1.jsonl.gz").unwrap();
            let data: Vec<u8> = (0..100u8).collect();
            for c in data.chunks(9) {
                w.write(c).unwrap();
            }
            assert_eq!(d.stat("s1.jsonl.gz").unwrap(), None, "part size {part}");
            assert!(d.list().unwrap().is_empty(), "part size {part}");
            let e = w.commit().unwrap();
            assert_eq!(e.size, 100);
            assert_eq!(d.stat("s1.jsonl.gz").unwrap(), Some(e.clone()));
            assert_eq!(d.list().unwrap(), vec![e]);
            assert_eq!(read_all(&d, "s1.jsonl.gz"), data, "part size {part}");
        }
    }

    #[test]
    fn a_dropped_or_aborted_writer_leaves_nothing_and_an_older_archive_as_it_was() {
        let d = dir(10);
        let mut w = d.create("s1.jsonl.gz").unwrap();
        w.write(b"old").unwrap();
        w.commit().unwrap();
        let mut w = d.create("s1.jsonl.gz").unwrap();
        w.write(&[1; 35]).unwrap();
        drop(w);
        let mut w = d.create("s1.jsonl.gz").unwrap();
        w.write(&[2; 35]).unwrap();
        w.abort();
        assert_eq!(read_all(&d, "s1.jsonl.gz"), b"old");
    }

    #[test]
    fn paths_name_the_bucket_and_prefix_and_confine_to_them() {
        let d = dir(10);
        assert_eq!(
            d.path("s1.jsonl.gz").unwrap(),
            "memory://b/team/archives/s1.jsonl.gz"
        );
        assert!(d
            .is_path_of("memory://b/team/archives/s1.jsonl.gz", "s1.jsonl.gz")
            .unwrap());
        for other in [
            "memory://b/team/archives/s2.jsonl.gz",
            "memory://b/team/other/s1.jsonl.gz",
            "memory://c/team/archives/s1.jsonl.gz",
            "/team/archives/s1.jsonl.gz",
        ] {
            assert!(!d.is_path_of(other, "s1.jsonl.gz").unwrap(), "{other}");
        }
        assert!(d.path("../x.jsonl.gz").is_err());
    }

    #[test]
    fn only_archives_directly_under_the_prefix_are_listed_and_others_are_counted_foreign() {
        let d = dir(10);
        let store = Arc::clone(d.store());
        let put = |k: &str| {
            d.inner
                .block_on(store.put(&ObjectPath::from(k), PutPayload::from_static(b"x")))
                .unwrap();
        };
        put("team/archives/a.jsonl.gz");
        put("team/archives/notes.txt");
        put("team/archives/sub/b.jsonl.gz");
        put("team/other.jsonl.gz");
        put("elsewhere/c.jsonl.gz");
        let names: Vec<_> = d.list().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a.jsonl.gz"]);
        assert_eq!(d.foreign_count().unwrap(), 2);
    }

    #[test]
    fn remove_if_unchanged_refuses_an_object_rewritten_since_the_listing() {
        let d = dir(10);
        let mut w = d.create("s1.jsonl.gz").unwrap();
        w.write(b"first").unwrap();
        let listed = w.commit().unwrap();
        let mut w = d.create("s1.jsonl.gz").unwrap();
        w.write(b"second, longer").unwrap();
        w.commit().unwrap();
        let err = d.remove_if_unchanged("s1.jsonl.gz", &listed).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert_eq!(read_all(&d, "s1.jsonl.gz"), b"second, longer");
        // Same size within the same second: only the ETag tells the new object apart.
        let listed = d.stat("s1.jsonl.gz").unwrap().unwrap();
        let mut w = d.create("s1.jsonl.gz").unwrap();
        w.write(b"third, longer!").unwrap();
        let replaced = w.commit().unwrap();
        assert_eq!(replaced.size, listed.size);
        let stale = Entry {
            identity: listed.identity.clone(),
            ..replaced.clone()
        };
        assert_ne!(stale, replaced, "a new object has a new ETag");
        let err = d.remove_if_unchanged("s1.jsonl.gz", &stale).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let now = d.stat("s1.jsonl.gz").unwrap().unwrap();
        assert_eq!(now, replaced);
        d.remove_if_unchanged("s1.jsonl.gz", &now).unwrap();
        assert_eq!(d.stat("s1.jsonl.gz").unwrap(), None);
        assert!(matches!(
            d.remove("s1.jsonl.gz"),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn s3_urls_split_into_bucket_and_prefix() {
        assert_eq!(parse_s3_url("s3://b/x/y/").unwrap(), ("b", "x/y"));
        assert_eq!(parse_s3_url("s3://b").unwrap(), ("b", ""));
        assert!(parse_s3_url("s3:///x").is_err());
        assert!(parse_s3_url("/tmp/x").is_err());
    }
}
