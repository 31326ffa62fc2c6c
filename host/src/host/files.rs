//! `session-archiver:policy/files`: session files, delegated to [`FileStore`].
//!
//! [`FileStore`]: crate::store::FileStore

use super::scope::OUTPUT;
use super::{check_chunk, Access, HostError, HostState};
use crate::bindings::session_archiver::policy::files::{self, Error, FileStat};
use crate::store::{self, FileOpts, StoreError};

fn to_wit(s: store::FileStat) -> FileStat {
    FileStat {
        size: s.size,
        created_ms: s.created_ms,
        modified_ms: s.modified_ms,
        circular_max_size: s.circular_max_size,
    }
}

fn from_wit(s: &FileStat) -> store::FileStat {
    store::FileStat {
        size: s.size,
        created_ms: s.created_ms,
        modified_ms: s.modified_ms,
        circular_max_size: s.circular_max_size,
    }
}

/// Zone and name must be non-empty; the store checks the rest.
fn check_names(zone: &str, name: &str) -> Result<(), HostError> {
    if zone.is_empty() || name.is_empty() {
        return Err(HostError::invalid(format!(
            "zone {zone:?} and name {name:?} must both be non-empty"
        )));
    }
    Ok(())
}

impl files::Host for HostState {
    fn stat(&mut self, zone: String, name: String) -> Result<Option<FileStat>, HostError> {
        self.call(|s| {
            check_names(&zone, &name)?;
            s.scope.file("files.stat", &zone, &name, Access::Read)?;
            Ok(s.stores.files.stat(&zone, &name)?.map(to_wit))
        })
    }

    fn read(
        &mut self,
        zone: String,
        name: String,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, HostError> {
        self.call(|s| {
            check_names(&zone, &name)?;
            check_chunk(len as usize, "files.read length")?;
            s.scope.file("files.read", &zone, &name, Access::Read)?;
            let data = s.stores.files.read(&zone, &name, offset, len)?;
            s.usage.file_read = s.usage.file_read.saturating_add(data.len() as u64);
            Ok(data)
        })
    }

    fn create(
        &mut self,
        zone: String,
        name: String,
        circular_max_size: Option<u64>,
    ) -> Result<FileStat, HostError> {
        self.call(|s| {
            check_names(&zone, &name)?;
            if circular_max_size == Some(0) {
                return Err(HostError::invalid(format!(
                    "circular file {zone}/{name} with a max size of 0"
                )));
            }
            s.scope.file("files.create", &zone, &name, Access::Write)?;
            Ok(to_wit(s.stores.files.create(
                &zone,
                &name,
                FileOpts { circular_max_size },
            )?))
        })
    }

    fn append(&mut self, zone: String, name: String, data: Vec<u8>) -> Result<FileStat, HostError> {
        self.call(|s| {
            check_names(&zone, &name)?;
            check_chunk(data.len(), "files.append chunk")?;
            s.scope.file("files.append", &zone, &name, Access::Write)?;
            s.charge_write("files.append", || format!("file {zone}/{name}"), data.len())?;
            Ok(to_wit(s.stores.files.append(&zone, &name, &data)?))
        })
    }

    fn delete_if_unchanged(
        &mut self,
        zone: String,
        name: String,
        expected: FileStat,
    ) -> Result<(), HostError> {
        self.call(|s| {
            check_names(&zone, &name)?;
            s.scope
                .file("files.delete-if-unchanged", &zone, &name, Access::Write)?;
            Ok(s.stores
                .files
                .delete_if_unchanged(&zone, &name, &from_wit(&expected))?)
        })
    }

    fn delete(&mut self, zone: String, name: String) -> Result<(), HostError> {
        self.call(|s| {
            check_names(&zone, &name)?;
            if name == OUTPUT {
                // Appends may land at any moment: live output goes only through
                // `delete-if-unchanged` or the restore rename, which lose none of them.
                return Err(s.scope.refuse(
                    "files.delete",
                    format!("file {zone}/{name}"),
                    "the live output may only be removed with delete-if-unchanged",
                ));
            }
            s.scope.file("files.delete", &zone, &name, Access::Write)?;
            Ok(s.stores.files.delete(&zone, &name)?)
        })
    }

    fn rename_if_unchanged(
        &mut self,
        zone: String,
        source: String,
        target: String,
        expected: Option<FileStat>,
    ) -> Result<(), HostError> {
        self.call(|s| {
            check_names(&zone, &source)?;
            check_names(&zone, &target)?;
            if source == target {
                return Err(HostError::invalid(format!(
                    "rename of {zone:?}/{source:?} onto itself"
                )));
            }
            s.scope
                .file("files.rename-if-unchanged", &zone, &source, Access::Write)?;
            s.scope
                .file("files.rename-if-unchanged", &zone, &target, Access::Write)?;
            let expected = expected.as_ref().map(from_wit);
            Ok(s.stores
                .files
                .rename_if_unchanged(&zone, &source, &target, expected.as_ref())?)
        })
    }

    fn get_meta(&mut self, zone: String, name: String) -> Result<String, HostError> {
        self.call(|s| {
            check_names(&zone, &name)?;
            s.scope.file("files.get-meta", &zone, &name, Access::Read)?;
            let meta = s.stores.files.meta(&zone, &name)?;
            Ok(serde_json::Value::Object(meta).to_string())
        })
    }

    fn set_meta(&mut self, zone: String, name: String, meta: String) -> Result<(), HostError> {
        self.call(|s| {
            check_names(&zone, &name)?;
            s.scope
                .file("files.set-meta", &zone, &name, Access::Write)?;
            check_chunk(meta.len(), "file meta")?;
            let meta = match serde_json::from_str::<serde_json::Value>(&meta) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => {
                    return Err(HostError::invalid(format!(
                        "meta for {zone:?}/{name:?} must be a JSON object"
                    )))
                }
            };
            Ok(s.stores.files.set_meta(&zone, &name, &meta)?)
        })
    }

    fn convert_error(&mut self, err: HostError) -> wasmtime::Result<Error> {
        Ok(match err.into_store_error()? {
            StoreError::NotFound(m) => Error::NotFound(m),
            StoreError::Invalid(m) | StoreError::InvalidName(m) => Error::Invalid(m),
            StoreError::Conflict(m) => Error::Conflict(m),
            StoreError::AlreadyExists(m) => Error::AlreadyExists(m),
            StoreError::Io(m) => Error::Io(m),
            other => Error::Io(other.to_string()),
        })
    }
}
