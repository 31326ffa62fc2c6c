//! `session-archiver:policy/clock`: the host's (test-drivable) wall clock.

use super::HostState;
use crate::bindings::session_archiver::policy::clock::Host;

impl Host for HostState {
    fn now_ms(&mut self) -> wasmtime::Result<i64> {
        Ok(self.call(|s| s.stores.clock.now_ms()))
    }
}
