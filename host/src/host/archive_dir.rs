//! `session-archiver:policy/archive-dir`: the archive directory capability, delegated to
//! [`ArchiveDir`](crate::archive_dir::ArchiveDir); the `writer` and `reader` resources live in
//! the store's `ResourceTable`.

use wasmtime::component::Resource;

use super::{check_chunk, Access, HostError, HostState};
use crate::archive_dir::{self, ArchiveReader, ArchiveWriter};
use crate::bindings::session_archiver::policy::archive_dir::{
    Entry, Error, Host, HostReader, HostWriter,
};
use crate::store::StoreError;

/// The host side of a guest's `writer`: `None` once committed or aborted, so a later call is an
/// `invalid` error rather than a use of a consumed writer.
pub struct WriterResource(Option<Box<dyn ArchiveWriter>>, String);

impl WriterResource {
    /// The backend writer; `None` once committed or aborted.
    pub(crate) fn writer_mut(&mut self) -> Option<&mut Box<dyn ArchiveWriter>> {
        self.0.as_mut()
    }

    /// Whether the writer is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.0.is_some()
    }

    /// The archive's name.
    pub(crate) fn name(&self) -> &str {
        &self.1
    }
}

/// The host side of a guest's `reader`.
pub struct ReaderResource(Box<dyn ArchiveReader>);

/// In a prune, the session whose archive `name` is: its lock is held for the call.
fn hold(s: &mut HostState, import: &str, name: &str) -> Result<(), HostError> {
    match archive_dir::archive_id(name) {
        Some(id) => s.hold_session(import, id),
        None => Ok(()),
    }
}

fn to_wit(e: archive_dir::Entry) -> Entry {
    Entry {
        name: e.name,
        size: e.size,
        modified_ms: e.modified_ms,
    }
}

/// Names are validated here as well as in the backend: the guest is untrusted and a backend
/// written later must not be the only gate. Only archive names (`<session id>.jsonl.gz`) pass, so
/// no policy can touch a file in the directory that is not this tool's.
fn check_name(name: &str) -> Result<(), HostError> {
    Ok(archive_dir::validate_archive_name(name)?)
}

pub(crate) fn consumed() -> HostError {
    HostError::invalid("writer used after commit or abort")
}

impl HostWriter for HostState {
    fn write(&mut self, w: Resource<WriterResource>, chunk: Vec<u8>) -> Result<(), HostError> {
        self.call(|s| {
            check_chunk(chunk.len(), "archive writer chunk")?;
            let name = s.table.get(&w)?.1.clone();
            s.charge_write(
                "archive-dir.writer.write",
                || format!("archive {name}"),
                chunk.len(),
            )?;
            let writer = s.table.get_mut(&w)?.0.as_mut().ok_or_else(consumed)?;
            Ok(writer.write(&chunk)?)
        })
    }

    fn commit(&mut self, w: Resource<WriterResource>) -> Result<Entry, HostError> {
        self.call(|s| {
            let writer = s.table.get_mut(&w)?.0.take().ok_or_else(consumed)?;
            Ok(to_wit(writer.commit()?))
        })
    }

    fn abort(&mut self, w: Resource<WriterResource>) -> wasmtime::Result<()> {
        self.call(|s| {
            if let Some(writer) = s.table.get_mut(&w)?.0.take() {
                writer.abort();
            }
            Ok(())
        })
    }

    fn drop(&mut self, w: Resource<WriterResource>) -> wasmtime::Result<()> {
        // Dropping an uncommitted writer discards its temp file (the backend's Drop does it).
        self.call(|s| {
            s.table.delete(w)?;
            s.usage.open_archives = s.usage.open_archives.saturating_sub(1);
            Ok(())
        })
    }
}

impl HostReader for HostState {
    fn read(&mut self, r: Resource<ReaderResource>, max: u32) -> Result<Vec<u8>, HostError> {
        self.call(|s| {
            check_chunk(max as usize, "archive reader max")?;
            let data = s.table.get_mut(&r)?.0.read(max as usize)?;
            s.usage.archive_read = s.usage.archive_read.saturating_add(data.len() as u64);
            Ok(data)
        })
    }

    fn size(&mut self, r: Resource<ReaderResource>) -> wasmtime::Result<u64> {
        self.call(|s| Ok(s.table.get(&r)?.0.size()))
    }

    fn drop(&mut self, r: Resource<ReaderResource>) -> wasmtime::Result<()> {
        self.call(|s| {
            s.table.delete(r)?;
            s.usage.open_archives = s.usage.open_archives.saturating_sub(1);
            Ok(())
        })
    }
}

impl Host for HostState {
    fn list(&mut self) -> Result<Vec<Entry>, HostError> {
        self.call(|s| {
            let shown = s.scope.list_archives("archive-dir.list")?;
            let entries: Vec<_> = s
                .stores
                .archive_dir
                .list()?
                .into_iter()
                .filter(|e| shown.is_none_or(|names| names.contains(&e.name)))
                .collect();
            s.listed = entries
                .iter()
                .map(|e| (e.name.clone(), e.identity.clone()))
                .collect();
            Ok(entries.into_iter().map(to_wit).collect())
        })
    }

    fn stat(&mut self, name: String) -> Result<Option<Entry>, HostError> {
        self.call(|s| {
            check_name(&name)?;
            s.scope.archive("archive-dir.stat", &name, Access::Read)?;
            hold(s, "archive-dir.stat", &name)?;
            Ok(s.stores.archive_dir.stat(&name)?.map(to_wit))
        })
    }

    fn create(&mut self, name: String) -> Result<Resource<WriterResource>, HostError> {
        self.call(|s| {
            check_name(&name)?;
            s.scope
                .archive("archive-dir.create", &name, Access::Write)?;
            s.check_open("archive-dir.create")?;
            let writer = s.stores.archive_dir.create(&name)?;
            let handle = s.table.push(WriterResource(Some(writer), name))?;
            s.usage.open_archives += 1;
            Ok(handle)
        })
    }

    fn open(&mut self, name: String) -> Result<Resource<ReaderResource>, HostError> {
        self.call(|s| {
            check_name(&name)?;
            s.scope.archive("archive-dir.open", &name, Access::Read)?;
            s.check_open("archive-dir.open")?;
            let reader = s.stores.archive_dir.open(&name)?;
            let handle = s.table.push(ReaderResource(reader))?;
            s.usage.open_archives += 1;
            Ok(handle)
        })
    }

    fn remove(&mut self, name: String) -> Result<(), HostError> {
        self.call(|s| {
            check_name(&name)?;
            s.scope
                .archive("archive-dir.remove", &name, Access::Write)?;
            hold(s, "archive-dir.remove", &name)?;
            Ok(s.stores.archive_dir.remove(&name)?)
        })
    }

    fn remove_if_unchanged(&mut self, name: String, expected: Entry) -> Result<(), HostError> {
        self.call(|s| {
            check_name(&name)?;
            s.scope
                .archive("archive-dir.remove-if-unchanged", &name, Access::Write)?;
            hold(s, "archive-dir.remove-if-unchanged", &name)?;
            // The policy cannot name a file's identity: the one its listing showed is used.
            let identity = s.listed.get(&name).cloned().flatten();
            let expected = archive_dir::Entry {
                name: expected.name,
                size: expected.size,
                modified_ms: expected.modified_ms,
                identity,
            };
            Ok(s.stores.archive_dir.remove_if_unchanged(&name, &expected)?)
        })
    }

    fn path(&mut self, name: String) -> Result<String, HostError> {
        self.call(|s| {
            check_name(&name)?;
            s.scope.archive("archive-dir.path", &name, Access::Read)?;
            Ok(s.stores.archive_dir.path(&name)?)
        })
    }

    fn is_path_of(&mut self, path: String, name: String) -> Result<bool, HostError> {
        self.call(|s| {
            check_name(&name)?;
            s.scope
                .archive("archive-dir.is-path-of", &name, Access::Read)?;
            Ok(s.stores.archive_dir.is_path_of(&path, &name)?)
        })
    }

    fn convert_error(&mut self, err: HostError) -> wasmtime::Result<Error> {
        Ok(match err.into_store_error()? {
            StoreError::NotFound(m) => Error::NotFound(m),
            StoreError::InvalidName(m) => Error::InvalidName(m),
            StoreError::Invalid(m) => Error::Invalid(m),
            StoreError::Io(m) => Error::Io(m),
            StoreError::Conflict(m) => Error::Conflict(m),
            other => Error::Io(other.to_string()),
        })
    }
}
