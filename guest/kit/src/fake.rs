//! A test double of the host imports: an in-memory [`Host`] for native (non-wasm) tests of the
//! kit's operations and of policies, so they run with `cargo test` and no wasmtime.
//!
//! It models the WIT contract as a guest sees it (`wit/objects.wit`, `files.wit`,
//! `archive-dir.wit`, `clock.wit`, `export-sink.wit`): conditional delete/rename compare the
//! whole stat, writers only appear on commit, circular files forget their oldest bytes, archive
//! names are one safe path component. It is the third implementation of that contract, beside
//! the host's SQLite and in-memory stores, and the only one the store contract suite
//! (`host/tests/*_contract.rs`) does not run: it lives in the guest workspace (its `Host` trait
//! is the guest's view of the imports, not the host's store traits), so a change to the
//! contract must be made here by hand too. The policies' end-to-end tests run the built
//! components against the real host stores (`tests/`), which is what catches a drift.
//!
//! On top of the contract it adds what tests need: a call log, one-shot failures, simulated
//! crashes (a panic at or after a named call, with the state as it was at that instant) and
//! appends injected right before a named call (the application writing while a policy works).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::{Map, Value};

use crate::bindings::exports::session_archiver::policy::policy as api;
use crate::decisions::Decisions;
use crate::host::{
    archive_dir, export_sink, files, objects, ArchiveRead, ArchiveWrite, Entry, FileStat, Host,
    Inflate, Inflated, InflatedMember, Level, MemberWritten, Object, Page,
};

/// One session [`FakeHost::archive_planned`] archived: its id and what `archive` returned.
pub type PlannedArchive = (String, Result<api::ArchiveOutcome, api::Error>);

/// One live file.
#[derive(Debug, Clone, Default)]
pub struct FakeFile {
    /// The bytes still held (all of them unless circular).
    pub held: Vec<u8>,
    /// Logical size.
    pub size: u64,
    /// Creation time.
    pub created_ms: i64,
    /// Last modification time.
    pub modified_ms: i64,
    /// Circular capacity.
    pub circular: Option<u64>,
    /// The file's own meta, JSON object text.
    pub meta: String,
}

impl FakeFile {
    fn stat(&self) -> FileStat {
        FileStat {
            size: self.size,
            created_ms: self.created_ms,
            modified_ms: self.modified_ms,
            circular_max_size: self.circular,
        }
    }
}

/// Everything the fake host holds.
#[derive(Debug, Default)]
pub struct State {
    /// Wall clock (ms).
    pub now: i64,
    /// Ticks for file and archive modification times, so every change gives a new stat.
    pub tick: i64,
    /// Objects: id → (meta, version).
    pub objects: BTreeMap<String, (Map<String, Value>, u64)>,
    /// Files: (zone, name) → file.
    pub files: BTreeMap<(String, String), FakeFile>,
    /// Archives: name → (bytes, modified).
    pub archives: BTreeMap<String, (Vec<u8>, i64)>,
    /// Export sink contents.
    pub sink: Vec<u8>,
    /// Every call, by name.
    pub calls: Vec<String>,
    /// Log lines.
    pub logs: Vec<String>,
    /// One-shot failures: call name → fails with an `io` error the next time.
    pub fail_next: Vec<String>,
    /// Panic at a call: a simulated crash, leaving the state as it was at that instant.
    pub crash: Option<Crash>,
    /// Before the next call of this name, append these bytes to `<zone>/output`.
    pub append_before: Option<(String, String, Vec<u8>)>,
    /// Page size cap for `objects.list`, to exercise paging.
    pub page_cap: u32,
    /// Flip a byte of the next committed archive (a disk that lies).
    pub corrupt_next_commit: bool,
    /// `members.start-inflate` offers no inflater (a host without helpers).
    pub no_inflater: bool,
}

/// Where a simulated crash happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    /// The call's name, e.g. `objects.update-meta`.
    pub call: String,
    /// How many matching calls to let through first.
    pub skip: usize,
    /// Crash after the call took effect (else before it has any).
    pub after: bool,
}

/// The fake host (cheap to clone; clones share state).
#[derive(Debug, Clone, Default)]
pub struct FakeHost {
    /// Shared state.
    pub state: Rc<RefCell<State>>,
}

/// A writer into the fake archive directory.
#[derive(Debug)]
pub struct FakeWriter {
    state: Rc<RefCell<State>>,
    name: String,
    buf: RefCell<Option<Vec<u8>>>,
}

/// A reader of a fake archive.
#[derive(Debug)]
pub struct FakeReader {
    data: Vec<u8>,
    pos: RefCell<usize>,
}

/// The fake's inflater: inflates each member at once with the kit's own `inflate_member`, as the
/// real host does on helper instances, and hands them back in order through a window of two.
#[derive(Debug)]
pub struct FakeInflater {
    host: FakeHost,
    queue: RefCell<std::collections::VecDeque<Inflated>>,
}

/// How many members the fake's inflater holds before `push` hands the oldest back.
const FAKE_INFLATE_WINDOW: usize = 2;

/// A directory that resolves to `/archives` in the fake (as a symlink would).
pub const FAKE_ARCHIVES_LINK: &str = "/home/user/.waveterm/archives";

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl FakeHost {
    /// An empty host at time `now`.
    pub fn new(now: i64) -> Self {
        let h = FakeHost::default();
        h.state.borrow_mut().now = now;
        h.state.borrow_mut().page_cap = 1000;
        h
    }

    /// Adds a session object with this meta (JSON object text).
    pub fn add_object(&self, id: &str, meta: Value) {
        let Value::Object(m) = meta else {
            panic!("meta must be an object")
        };
        self.state
            .borrow_mut()
            .objects
            .insert(id.to_string(), (m, 1));
    }

    /// The meta of an object.
    pub fn meta(&self, id: &str) -> Map<String, Value> {
        self.state.borrow().objects[id].0.clone()
    }

    /// Creates or replaces a live file with `data`.
    pub fn put_file(&self, zone: &str, name: &str, data: &[u8]) {
        let mut s = self.state.borrow_mut();
        s.tick += 1;
        let t = s.tick;
        s.files.insert(
            (zone.into(), name.into()),
            FakeFile {
                held: data.to_vec(),
                size: data.len() as u64,
                created_ms: t,
                modified_ms: t,
                circular: None,
                meta: "{}".into(),
            },
        );
    }

    /// A live file's held bytes.
    pub fn file(&self, zone: &str, name: &str) -> Option<Vec<u8>> {
        self.state
            .borrow()
            .files
            .get(&(zone.to_string(), name.to_string()))
            .map(|f| f.held.clone())
    }

    /// An archive's bytes.
    pub fn archive(&self, name: &str) -> Option<Vec<u8>> {
        self.state.borrow().archives.get(name).map(|a| a.0.clone())
    }

    /// Puts an archive file directly.
    pub fn put_archive(&self, name: &str, data: Vec<u8>, modified_ms: i64) {
        self.state
            .borrow_mut()
            .archives
            .insert(name.into(), (data, modified_ms));
    }

    /// What the host's sweep does with a plan, for native tests of a policy's decisions:
    /// archives every session a `sessions` plan selects, one after another (the host does this
    /// in parallel, each session under its lock). Returns each selected id with its outcome.
    pub fn archive_planned<D: Decisions>(&self, d: &D) -> Result<Vec<PlannedArchive>, api::Error> {
        let plan = crate::ops::plan(self, d, api::PlanScope::Sessions)?;
        Ok(plan
            .decisions
            .into_iter()
            .filter(|x| x.action == api::Action::Archive)
            .map(|x| {
                let outcome = crate::ops::archive(self, &x.target, d.level());
                (x.target, outcome)
            })
            .collect())
    }

    /// Calls made so far.
    pub fn calls(&self) -> Vec<String> {
        self.state.borrow().calls.clone()
    }

    fn enter(&self, call: &str) -> bool {
        let mut pending_append = None;
        {
            let mut s = self.state.borrow_mut();
            s.calls.push(call.to_string());
            if Self::crash_due(&mut s, call, false) {
                drop(s);
                panic!("simulated crash before {call}");
            }
            if s.append_before.as_ref().is_some_and(|(c, _, _)| c == call) {
                pending_append = s.append_before.take();
            }
        }
        if let Some((_, zone, data)) = pending_append {
            self.append_raw(&zone, "output", &data);
        }
        let mut s = self.state.borrow_mut();
        if let Some(i) = s.fail_next.iter().position(|c| c == call) {
            s.fail_next.remove(i);
            return true;
        }
        false
    }

    fn leave(&self, call: &str) {
        let mut s = self.state.borrow_mut();
        if Self::crash_due(&mut s, call, true) {
            drop(s);
            panic!("simulated crash after {call}");
        }
    }

    /// Arms a crash at the `skip`+1-th call named `call`, before or after it takes effect.
    pub fn crash_at(&self, call: &str, skip: usize, after: bool) {
        self.state.borrow_mut().crash = Some(Crash {
            call: call.into(),
            skip,
            after,
        });
    }

    fn crash_due(s: &mut State, call: &str, after: bool) -> bool {
        let Some(c) = s.crash.as_mut() else {
            return false;
        };
        if c.call != call || c.after != after {
            return false;
        }
        if c.skip > 0 {
            c.skip -= 1;
            return false;
        }
        s.crash = None;
        true
    }

    fn append_raw(&self, zone: &str, name: &str, data: &[u8]) -> Option<FileStat> {
        let mut s = self.state.borrow_mut();
        s.tick += 1;
        let t = s.tick;
        let f = s.files.get_mut(&(zone.to_string(), name.to_string()))?;
        f.held.extend_from_slice(data);
        f.size += data.len() as u64;
        if let Some(max) = f.circular {
            let excess = f.held.len().saturating_sub(max as usize);
            f.held.drain(..excess);
        }
        f.modified_ms = t;
        Some(f.stat())
    }
}

impl FakeHost {
    /// Both `update-meta`s; with `expect`, only at that version (as the host checks it).
    fn merge_meta(
        &self,
        id: &str,
        patch: &str,
        expect: Option<u64>,
    ) -> Result<Object, objects::Error> {
        let Ok(Value::Object(p)) = serde_json::from_str::<Value>(patch) else {
            return Err(objects::Error::Invalid("patch is not a JSON object".into()));
        };
        let mut s = self.state.borrow_mut();
        let (m, v) = s
            .objects
            .get_mut(id)
            .ok_or_else(|| objects::Error::NotFound(id.into()))?;
        if let Some(e) = expect.filter(|e| e != v) {
            return Err(objects::Error::Conflict(format!(
                "{id} at version {v}, not {e}"
            )));
        }
        for (k, val) in p {
            if val.is_null() {
                m.remove(&k);
            } else {
                m.insert(k, val);
            }
        }
        *v += 1;
        Ok(Object {
            id: id.into(),
            meta: Value::Object(m.clone()).to_string(),
            version: *v,
        })
    }
}

macro_rules! fail {
    ($self:ident, $call:literal, $err:expr) => {
        if $self.enter($call) {
            return Err($err(format!("injected failure of {}", $call)));
        }
    };
}

impl Inflate for FakeInflater {
    fn push(&self, member: &[u8], raw_len: u64) -> Result<Option<Inflated>, archive_dir::Error> {
        let host = &self.host;
        fail!(host, "members.inflater.push", archive_dir::Error::Io);
        if member.is_empty() || raw_len == 0 {
            return Err(archive_dir::Error::Invalid("empty member".into()));
        }
        let done = match crate::ops::inflate_member(member, raw_len) {
            Ok(m) => Inflated::Member(InflatedMember {
                bytes: m.bytes,
                crc32: m.crc32,
            }),
            Err(crate::ops::Error::Corrupt(m)) => Inflated::Corrupt(m),
            Err(e) => return Err(archive_dir::Error::Io(format!("{e:?}"))),
        };
        let mut q = self.queue.borrow_mut();
        q.push_back(done);
        Ok(if q.len() >= FAKE_INFLATE_WINDOW {
            q.pop_front()
        } else {
            None
        })
    }
    fn next(&self) -> Result<Option<Inflated>, archive_dir::Error> {
        let host = &self.host;
        fail!(host, "members.inflater.next", archive_dir::Error::Io);
        Ok(self.queue.borrow_mut().pop_front())
    }
}

impl ArchiveWrite for FakeWriter {
    fn write(&self, chunk: &[u8]) -> Result<(), archive_dir::Error> {
        if chunk.len() > 4 << 20 {
            return Err(archive_dir::Error::Invalid("chunk over 4 MiB".into()));
        }
        match self.buf.borrow_mut().as_mut() {
            Some(b) => {
                b.extend_from_slice(chunk);
                Ok(())
            }
            None => Err(archive_dir::Error::Invalid(
                "writer used after commit or abort".into(),
            )),
        }
    }
    fn commit(&self) -> Result<Entry, archive_dir::Error> {
        let host = FakeHost {
            state: self.state.clone(),
        };
        if host.enter("commit") {
            return Err(archive_dir::Error::Io("injected failure of commit".into()));
        }
        let data = self
            .buf
            .borrow_mut()
            .take()
            .ok_or_else(|| archive_dir::Error::Invalid("already committed".into()))?;
        let size = data.len() as u64;
        {
            let mut s = self.state.borrow_mut();
            s.tick += 1;
            let t = s.tick;
            let mut data = data;
            if std::mem::take(&mut s.corrupt_next_commit) && data.len() > 20 {
                let mid = data.len() / 2;
                data[mid] ^= 0x55;
            }
            s.archives.insert(self.name.clone(), (data, t));
        }
        let modified_ms = self.state.borrow().archives[&self.name].1;
        host.leave("commit");
        Ok(Entry {
            name: self.name.clone(),
            size,
            modified_ms,
        })
    }
    fn abort(&self) {
        self.buf.borrow_mut().take();
    }
}

impl ArchiveRead for FakeReader {
    fn read(&self, max: u32) -> Result<Vec<u8>, archive_dir::Error> {
        if max > 4 << 20 {
            return Err(archive_dir::Error::Invalid("read over 4 MiB".into()));
        }
        let mut pos = self.pos.borrow_mut();
        let end = (*pos + max as usize).min(self.data.len());
        let out = self.data[*pos..end].to_vec();
        *pos = end;
        Ok(out)
    }
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

impl Host for FakeHost {
    type Writer = FakeWriter;
    type Reader = FakeReader;
    type Inflater = FakeInflater;

    fn now_ms(&self) -> i64 {
        self.state.borrow().now
    }
    fn log(&self, level: Level, message: &str) {
        self.state
            .borrow_mut()
            .logs
            .push(format!("{level:?}: {message}"));
    }
    fn list_objects(&self, after: Option<&str>, limit: u32) -> Result<Page, objects::Error> {
        fail!(self, "objects.list", objects::Error::Io);
        if limit == 0 {
            return Err(objects::Error::Invalid("limit 0".into()));
        }
        let s = self.state.borrow();
        let limit = limit.min(s.page_cap) as usize;
        let mut objs: Vec<Object> = s
            .objects
            .iter()
            .filter(|(id, _)| after.is_none_or(|a| id.as_str() > a))
            .take(limit + 1)
            .map(|(id, (m, v))| Object {
                id: id.clone(),
                meta: Value::Object(m.clone()).to_string(),
                version: *v,
            })
            .collect();
        let next = if objs.len() > limit {
            objs.truncate(limit);
            objs.last().map(|o| o.id.clone())
        } else {
            None
        };
        Ok(Page {
            objects: objs,
            next,
        })
    }
    fn get_object(&self, id: &str) -> Result<Object, objects::Error> {
        fail!(self, "objects.get", objects::Error::Io);
        let s = self.state.borrow();
        let (m, v) = s
            .objects
            .get(id)
            .ok_or_else(|| objects::Error::NotFound(id.into()))?;
        Ok(Object {
            id: id.into(),
            meta: Value::Object(m.clone()).to_string(),
            version: *v,
        })
    }
    fn update_meta(&self, id: &str, patch: &str) -> Result<Object, objects::Error> {
        fail!(self, "objects.update-meta", objects::Error::Io);
        let o = self.merge_meta(id, patch, None)?;
        self.leave("objects.update-meta");
        Ok(o)
    }
    fn update_meta_if(
        &self,
        id: &str,
        patch: &str,
        version: u64,
    ) -> Result<Object, objects::Error> {
        fail!(self, "objects.update-meta-if", objects::Error::Io);
        let o = self.merge_meta(id, patch, Some(version))?;
        self.leave("objects.update-meta-if");
        Ok(o)
    }
    fn stat_file(&self, zone: &str, name: &str) -> Result<Option<FileStat>, files::Error> {
        fail!(self, "files.stat", files::Error::Io);
        Ok(self
            .state
            .borrow()
            .files
            .get(&(zone.to_string(), name.to_string()))
            .map(FakeFile::stat))
    }
    fn read_file(
        &self,
        zone: &str,
        name: &str,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, files::Error> {
        fail!(self, "files.read", files::Error::Io);
        if len > 4 << 20 {
            return Err(files::Error::Invalid("read over 4 MiB".into()));
        }
        let s = self.state.borrow();
        let f = s
            .files
            .get(&(zone.to_string(), name.to_string()))
            .ok_or_else(|| files::Error::NotFound(name.into()))?;
        let first = f.size - f.held.len() as u64;
        if offset < first {
            return Err(files::Error::Conflict(format!(
                "{zone}/{name}: offset {offset} fell out of the ring (first held {first})"
            )));
        }
        let start = offset;
        if start >= f.size {
            return Ok(Vec::new());
        }
        let i = (start - first) as usize;
        let end = (i + len as usize).min(f.held.len());
        Ok(f.held[i..end].to_vec())
    }
    fn create_file(
        &self,
        zone: &str,
        name: &str,
        circular_max_size: Option<u64>,
    ) -> Result<FileStat, files::Error> {
        fail!(self, "files.create", files::Error::Io);
        let key = (zone.to_string(), name.to_string());
        if self.state.borrow().files.contains_key(&key) {
            return Err(files::Error::AlreadyExists(name.into()));
        }
        self.put_file(zone, name, b"");
        if let Some(f) = self.state.borrow_mut().files.get_mut(&key) {
            f.circular = circular_max_size;
        }
        self.leave("files.create");
        Ok(self.state.borrow().files[&key].stat())
    }
    fn append_file(&self, zone: &str, name: &str, data: &[u8]) -> Result<FileStat, files::Error> {
        fail!(self, "files.append", files::Error::Io);
        if data.len() > 4 << 20 {
            return Err(files::Error::Invalid("append over 4 MiB".into()));
        }
        let st = self
            .append_raw(zone, name, data)
            .ok_or_else(|| files::Error::NotFound(name.into()))?;
        self.leave("files.append");
        Ok(st)
    }
    fn delete_file_if_unchanged(
        &self,
        zone: &str,
        name: &str,
        expected: &FileStat,
    ) -> Result<(), files::Error> {
        fail!(self, "files.delete-if-unchanged", files::Error::Io);
        {
            let mut s = self.state.borrow_mut();
            let key = (zone.to_string(), name.to_string());
            let f = s
                .files
                .get(&key)
                .ok_or_else(|| files::Error::NotFound(name.into()))?;
            if f.stat() != *expected {
                return Err(files::Error::Conflict(format!("{name} changed")));
            }
            s.files.remove(&key);
        }
        self.leave("files.delete-if-unchanged");
        Ok(())
    }
    fn delete_file(&self, zone: &str, name: &str) -> Result<(), files::Error> {
        fail!(self, "files.delete", files::Error::Io);
        let removed = self
            .state
            .borrow_mut()
            .files
            .remove(&(zone.to_string(), name.to_string()));
        removed
            .map(|_| ())
            .ok_or_else(|| files::Error::NotFound(name.into()))
    }
    fn rename_file_if_unchanged(
        &self,
        zone: &str,
        source: &str,
        target: &str,
        expected: Option<&FileStat>,
    ) -> Result<(), files::Error> {
        fail!(self, "files.rename-if-unchanged", files::Error::Io);
        {
            let mut s = self.state.borrow_mut();
            let src = (zone.to_string(), source.to_string());
            let dst = (zone.to_string(), target.to_string());
            if !s.files.contains_key(&src) {
                return Err(files::Error::NotFound(source.into()));
            }
            if s.files.get(&dst).map(FakeFile::stat).as_ref() != expected {
                return Err(files::Error::Conflict(format!("{target} changed")));
            }
            let f = s.files.remove(&src).expect("checked above");
            s.files.insert(dst, f);
        }
        self.leave("files.rename-if-unchanged");
        Ok(())
    }
    fn get_file_meta(&self, zone: &str, name: &str) -> Result<String, files::Error> {
        fail!(self, "files.get-meta", files::Error::Io);
        let meta = self
            .state
            .borrow()
            .files
            .get(&(zone.to_string(), name.to_string()))
            .map(|f| f.meta.clone())
            .ok_or_else(|| files::Error::NotFound(name.into()))?;
        self.leave("files.get-meta");
        Ok(meta)
    }
    fn set_file_meta(&self, zone: &str, name: &str, meta: &str) -> Result<(), files::Error> {
        fail!(self, "files.set-meta", files::Error::Io);
        if !matches!(serde_json::from_str::<Value>(meta), Ok(Value::Object(_))) {
            return Err(files::Error::Invalid("meta is not a JSON object".into()));
        }
        self.state
            .borrow_mut()
            .files
            .get_mut(&(zone.to_string(), name.to_string()))
            .ok_or_else(|| files::Error::NotFound(name.into()))?
            .meta = meta.to_string();
        self.leave("files.set-meta");
        Ok(())
    }
    fn list_archives(&self) -> Result<Vec<Entry>, archive_dir::Error> {
        fail!(self, "archive-dir.list", archive_dir::Error::Io);
        Ok(self
            .state
            .borrow()
            .archives
            .iter()
            .map(|(n, (d, t))| Entry {
                name: n.clone(),
                size: d.len() as u64,
                modified_ms: *t,
            })
            .collect())
    }
    fn stat_archive(&self, name: &str) -> Result<Option<Entry>, archive_dir::Error> {
        fail!(self, "archive-dir.stat", archive_dir::Error::Io);
        if !valid_name(name) {
            return Err(archive_dir::Error::InvalidName(name.into()));
        }
        Ok(self.state.borrow().archives.get(name).map(|(d, t)| Entry {
            name: name.into(),
            size: d.len() as u64,
            modified_ms: *t,
        }))
    }
    fn create_archive(&self, name: &str) -> Result<FakeWriter, archive_dir::Error> {
        fail!(self, "archive-dir.create", archive_dir::Error::Io);
        if !valid_name(name) {
            return Err(archive_dir::Error::InvalidName(name.into()));
        }
        Ok(FakeWriter {
            state: self.state.clone(),
            name: name.into(),
            buf: RefCell::new(Some(Vec::new())),
        })
    }
    fn open_archive(&self, name: &str) -> Result<FakeReader, archive_dir::Error> {
        fail!(self, "archive-dir.open", archive_dir::Error::Io);
        if !valid_name(name) {
            return Err(archive_dir::Error::InvalidName(name.into()));
        }
        let data = self
            .archive(name)
            .ok_or_else(|| archive_dir::Error::NotFound(name.into()))?;
        Ok(FakeReader {
            data,
            pos: RefCell::new(0),
        })
    }
    fn remove_archive(&self, name: &str) -> Result<(), archive_dir::Error> {
        fail!(self, "archive-dir.remove", archive_dir::Error::Io);
        if !valid_name(name) {
            return Err(archive_dir::Error::InvalidName(name.into()));
        }
        let removed = self.state.borrow_mut().archives.remove(name);
        removed.ok_or_else(|| archive_dir::Error::NotFound(name.into()))?;
        self.leave("archive-dir.remove");
        Ok(())
    }
    fn remove_archive_if_unchanged(
        &self,
        name: &str,
        expected: &Entry,
    ) -> Result<(), archive_dir::Error> {
        fail!(
            self,
            "archive-dir.remove-if-unchanged",
            archive_dir::Error::Io
        );
        if !valid_name(name) {
            return Err(archive_dir::Error::InvalidName(name.into()));
        }
        let now = self
            .state
            .borrow()
            .archives
            .get(name)
            .map(|(d, m)| (d.len() as u64, *m));
        match now {
            None => return Err(archive_dir::Error::NotFound(name.into())),
            Some(now) if now != (expected.size, expected.modified_ms) => {
                return Err(archive_dir::Error::Conflict(format!("{name} changed")))
            }
            Some(_) => {}
        }
        self.state.borrow_mut().archives.remove(name);
        self.leave("archive-dir.remove-if-unchanged");
        Ok(())
    }
    fn archive_path(&self, name: &str) -> Result<String, archive_dir::Error> {
        if !valid_name(name) {
            return Err(archive_dir::Error::InvalidName(name.into()));
        }
        Ok(format!("/archives/{name}"))
    }
    /// `/archives/<name>`, or the same reached through [`FAKE_ARCHIVES_LINK`] (a symlink to
    /// `/archives` in this fake filesystem).
    fn is_archive_path_of(&self, path: &str, name: &str) -> Result<bool, archive_dir::Error> {
        if !valid_name(name) {
            return Err(archive_dir::Error::InvalidName(name.into()));
        }
        Ok(["/archives", FAKE_ARCHIVES_LINK]
            .iter()
            .any(|dir| path == format!("{dir}/{name}")))
    }
    fn export_write(&self, chunk: &[u8]) -> Result<(), export_sink::Error> {
        fail!(self, "export-sink.write", export_sink::Error::Io);
        self.state.borrow_mut().sink.extend_from_slice(chunk);
        Ok(())
    }
    /// Runs the kit's own `compress_member` for each range in turn (at level 6, the fake's
    /// stand-in for the operation's config), as the real host does on helper instances.
    fn write_members(
        &self,
        w: &FakeWriter,
        id: &str,
        offset: u64,
        length: u64,
        member_bytes: u64,
    ) -> Result<Vec<MemberWritten>, archive_dir::Error> {
        fail!(self, "members.write-members", archive_dir::Error::Io);
        if length == 0 || member_bytes == 0 {
            return Err(archive_dir::Error::Invalid("empty range or member".into()));
        }
        let mut out = Vec::new();
        let mut off = offset;
        while off < offset + length {
            let len = member_bytes.min(offset + length - off);
            let m = crate::ops::compress_member(self, id, off, len, 6).map_err(|e| match e {
                crate::ops::Error::Conflict(m) => archive_dir::Error::Conflict(m),
                other => archive_dir::Error::Io(format!("{other:?}")),
            })?;
            for chunk in m.bytes.chunks(4 << 20) {
                w.write(chunk)?;
            }
            out.push(MemberWritten {
                raw_len: m.raw_len,
                crc32: m.crc32,
                gz_len: m.bytes.len() as u64,
            });
            off += len;
        }
        Ok(out)
    }
    /// Splits the stored archive by the members' sizes and runs the kit's own `verify_member`
    /// on each, as the real host does on helper instances.
    fn verify_members(
        &self,
        name: &str,
        members: &[MemberWritten],
    ) -> Result<Option<String>, archive_dir::Error> {
        fail!(self, "members.verify-members", archive_dir::Error::Io);
        let data = self
            .archive(name)
            .ok_or_else(|| archive_dir::Error::NotFound(name.to_string()))?;
        let mut rest = &data[..];
        for (i, m) in members.iter().enumerate() {
            if (rest.len() as u64) < m.gz_len {
                return Ok(Some(format!("archive {name} ends inside member {i}")));
            }
            let (bytes, tail) = rest.split_at(m.gz_len as usize);
            if let Err(e) = crate::ops::verify_member(bytes, m.raw_len, m.crc32) {
                return Ok(Some(format!("member {i} of {name}: {e:?}")));
            }
            rest = tail;
        }
        Ok((!rest.is_empty()).then(|| format!("archive {name} has bytes after its members")))
    }
    fn start_inflate(&self) -> Result<Option<FakeInflater>, archive_dir::Error> {
        fail!(self, "members.start-inflate", archive_dir::Error::Io);
        if self.state.borrow().no_inflater {
            return Ok(None);
        }
        Ok(Some(FakeInflater {
            host: self.clone(),
            queue: RefCell::new(Default::default()),
        }))
    }
}
