//! `session-archiver:policy/files`: session files, delegated to [`FileStore`].
//!
//! [`FileStore`]: crate::store::FileStore

use super::{check_chunk, HostError, HostState};
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
            Ok(s.stores.files.read(&zone, &name, offset, len)?)
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
            Ok(s.stores
                .files
                .delete_if_unchanged(&zone, &name, &from_wit(&expected))?)
        })
    }

    fn delete(&mut self, zone: String, name: String) -> Result<(), HostError> {
        self.call(|s| {
            check_names(&zone, &name)?;
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
            let expected = expected.as_ref().map(from_wit);
            Ok(s.stores
                .files
                .rename_if_unchanged(&zone, &source, &target, expected.as_ref())?)
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
