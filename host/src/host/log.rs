//! `session-archiver:policy/log`: guest diagnostics forwarded to `tracing`, tagged with the
//! policy's name and truncated so a guest cannot flood the host's log.

use super::HostState;
use crate::bindings::session_archiver::policy::log::{Host, Level};

/// Longest message kept, in bytes.
pub const MAX_LOG_BYTES: usize = 4096;

/// Cuts `msg` to at most [`MAX_LOG_BYTES`] on a char boundary, marking the cut.
pub fn truncate(msg: &str) -> std::borrow::Cow<'_, str> {
    if msg.len() <= MAX_LOG_BYTES {
        return msg.into();
    }
    let mut end = MAX_LOG_BYTES;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [truncated {} bytes]", &msg[..end], msg.len() - end).into()
}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.call(|s| {
            let msg = truncate(&message);
            let policy = &*s.policy;
            match level {
                Level::Trace => tracing::trace!(target: "policy", policy, "{msg}"),
                Level::Debug => tracing::debug!(target: "policy", policy, "{msg}"),
                Level::Info => tracing::info!(target: "policy", policy, "{msg}"),
                Level::Warn => tracing::warn!(target: "policy", policy, "{msg}"),
                Level::Error => tracing::error!(target: "policy", policy, "{msg}"),
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let msg = "é".repeat(3000); // 6000 bytes
        let cut = truncate(&msg);
        assert!(cut.len() < 4200, "{}", cut.len());
        assert!(cut.contains("truncated"));
        assert_eq!(truncate("short"), "short");
    }
}
