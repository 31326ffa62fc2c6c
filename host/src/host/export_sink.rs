//! `session-archiver:policy/export-sink`: where `policy.export` streams a session's bytes.

use std::io::Write;

use super::{check_chunk, HostError, HostState};
use crate::bindings::session_archiver::policy::export_sink::{Error, Host};
use crate::store::StoreError;

impl Host for HostState {
    fn write(&mut self, chunk: Vec<u8>) -> Result<(), HostError> {
        self.call(|s| {
            check_chunk(chunk.len(), "export chunk")?;
            let sink = s
                .sink
                .as_mut()
                .ok_or_else(|| HostError::invalid("no export is in progress"))?;
            sink.write_all(&chunk)
                .map_err(|e| HostError::Store(StoreError::Io(format!("export sink: {e}"))))?;
            s.sink_bytes += chunk.len() as u64;
            Ok(())
        })
    }

    fn convert_error(&mut self, err: HostError) -> wasmtime::Result<Error> {
        Ok(match err.into_store_error()? {
            StoreError::Invalid(m) | StoreError::InvalidName(m) => Error::Invalid(m),
            StoreError::Io(m) => Error::Io(m),
            other => Error::Io(other.to_string()),
        })
    }
}
