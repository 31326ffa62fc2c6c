//! The host library's error type: what failed, on which session, with which policy.

use std::fmt;

use crate::bindings::guest;
use crate::store::StoreError;

/// The error a policy returned, as generated from the WIT `policy.error` variant.
pub type PolicyError = guest::Error;

/// A policy operation, for error messages and progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// `info`: the policy's name, version and config schema.
    Info,
    /// `validate-config`: check a config before it is used.
    ValidateConfig,
    /// `archive`: write one session's output to an archive file.
    Archive,
    /// `restore`: put an archived session's output back in the file store.
    Restore,
    /// `export`: stream a session's output to the caller's sink.
    Export,
    /// `plan`: decide what a sweep would archive and prune, without doing it.
    Plan,
    /// `prune`: delete the archives the policy picks to stay under the byte cap.
    Prune,
    /// `recover`: finish or roll back one session's interrupted archive or restore.
    Recover,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Info => "info",
            Op::ValidateConfig => "validate-config",
            Op::Archive => "archive",
            Op::Restore => "restore",
            Op::Export => "export",
            Op::Plan => "plan",
            Op::Prune => "prune",
            Op::Recover => "recover",
        })
    }
}

/// Which sandbox limit stopped a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitKind {
    /// The per-operation deadline, or the stall rule (no host call for too long).
    Deadline,
    /// The linear-memory cap (all of an instance's memories together).
    Memory,
    /// The cap on archive readers and writers open at once.
    OpenArchives,
    /// The cap on bytes written per operation.
    Writes,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::Deadline => "deadline",
            LimitKind::Memory => "memory",
            LimitKind::OpenArchives => "open-archives",
            LimitKind::Writes => "writes",
        })
    }
}

/// `" on <target>"` or nothing, for messages.
struct On<'a>(&'a Option<String>);

impl fmt::Display for On<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(t) => write!(f, " on {t:?}"),
            None => Ok(()),
        }
    }
}

/// Renders a WIT policy error for people ("not found: abc", "pruned at 1700000000000 ms").
pub fn describe_policy_error(e: &PolicyError) -> String {
    match e {
        PolicyError::InvalidConfig(m) => format!("invalid config: {m}"),
        PolicyError::Invalid(m) => format!("invalid argument: {m}"),
        PolicyError::NotFound(m) => format!("not found: {m}"),
        PolicyError::NotArchived(m) => format!("not archived: {m}"),
        PolicyError::Pruned(at) => format!("its only archive was pruned at {at} ms"),
        PolicyError::InvalidMeta(m) => format!("invalid meta: {m}"),
        PolicyError::Corrupt(m) => format!("corrupt archive: {m}"),
        PolicyError::TooLarge(m) => format!("too large: {m}"),
        PolicyError::Conflict(m) => format!("conflict: {m}"),
        PolicyError::Busy(m) => format!("busy: {m}"),
        PolicyError::Io(m) => format!("i/o error: {m}"),
    }
}

/// Everything the [`Archiver`](crate::archiver::Archiver) and the
/// [`Runtime`](crate::runtime::Runtime) can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiverError {
    /// The policy file could not be read, is not WebAssembly, or failed to compile.
    #[error("cannot load policy {label}: {msg}")]
    Load {
        /// The policy's path or the caller's label for it.
        label: String,
        /// What went wrong (I/O, header or compiler message).
        msg: String,
    },
    /// A core wasm module where a component is needed.
    #[error(
        "{label} is a core WebAssembly module, not a component (turn it into one with \
         wit-component, e.g. `cargo xtask build-policies`)"
    )]
    NotAComponent {
        /// The policy's path or the caller's label for it.
        label: String,
    },
    /// A component built for a different world (other imports, or no `policy` export).
    #[error("{label} targets another world, not session-archiver:policy/archive-policy: {detail}")]
    WrongWorld {
        /// The policy's path or the caller's label for it.
        label: String,
        /// What the component imports and exports instead, or the linker's message.
        detail: String,
    },
    /// A component built against another version of this project's WIT.
    #[error("{label} was built for WIT {found}, but this host implements {expected}: {detail}")]
    Incompatible {
        /// The policy's path or the caller's label for it.
        label: String,
        /// The `package@version` the component was built against.
        found: String,
        /// The `package@version` this host implements.
        expected: String,
        /// The component's imports and exports, or the linker's message.
        detail: String,
    },
    /// The policy trapped (a guest bug, a panic, misuse of an import, a host-requested halt).
    #[error("policy {policy} trapped in {op}{}: {msg}", On(target))]
    Trap {
        /// The policy's `name@version`.
        policy: String,
        /// The operation that was running.
        op: Op,
        /// The session (or other id) the operation was on, if any.
        target: Option<String>,
        /// Why it trapped: the host's reason, or wasmtime's message without the backtrace.
        msg: String,
    },
    /// The policy was stopped by a sandbox limit.
    #[error(
        "policy {policy} exceeded its {which} limit in {op}{}: {msg}",
        On(target)
    )]
    Limit {
        /// The policy's `name@version`.
        policy: String,
        /// The operation that was running.
        op: Op,
        /// The session (or other id) the operation was on, if any.
        target: Option<String>,
        /// Which limit it hit.
        which: LimitKind,
        /// The limit's value and what the policy did to hit it, for people.
        msg: String,
    },
    /// The policy called an import on something outside its operation's scope (another
    /// session's data, a write during a read-only operation, an unconditional delete of live
    /// output). The call was refused before it reached the store.
    #[error(
        "policy {policy} was refused in {op}{}: {import} on {denied}: {why}",
        On(target)
    )]
    Refused {
        /// The policy's `name@version`.
        policy: String,
        /// The operation that was running.
        op: Op,
        /// The session the operation serves.
        target: Option<String>,
        /// The import called (`files.delete`).
        import: &'static str,
        /// What it was called on (`file b/output`).
        denied: String,
        /// Why the scope refuses it.
        why: String,
    },
    /// The policy returned an error.
    #[error(
        "policy {policy} failed {op}{}: {}",
        On(target),
        describe_policy_error(error)
    )]
    Policy {
        /// The policy's `name@version`.
        policy: String,
        /// The operation that was running.
        op: Op,
        /// The session (or other id) the operation was on, if any.
        target: Option<String>,
        /// The WIT error the policy returned.
        error: PolicyError,
    },
    /// A host store failed outside any policy call.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Another operation holds this session's lock and the caller asked not to wait.
    #[error("session {id:?} is locked by another operation")]
    Locked {
        /// The locked session.
        id: String,
    },
    /// A host-side I/O failure (lock files, the compile cache directory).
    #[error("{what}: {source}")]
    Io {
        /// What the host was doing, naming the path.
        what: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

impl ArchiverError {
    /// The WIT error the policy returned, if that is what this is.
    pub fn policy_error(&self) -> Option<&PolicyError> {
        match self {
            ArchiverError::Policy { error, .. } => Some(error),
            _ => None,
        }
    }

    /// A short stable code for scripts (`--json`).
    pub fn code(&self) -> &'static str {
        match self {
            ArchiverError::Load { .. } => "load",
            ArchiverError::NotAComponent { .. } => "not-a-component",
            ArchiverError::WrongWorld { .. } => "wrong-world",
            ArchiverError::Incompatible { .. } => "incompatible",
            ArchiverError::Trap { .. } => "trap",
            ArchiverError::Limit { .. } => "limit",
            ArchiverError::Refused { .. } => "refused",
            ArchiverError::Policy { .. } => "policy",
            ArchiverError::Store(_) => "store",
            ArchiverError::Locked { .. } => "locked",
            ArchiverError::Io { .. } => "io",
        }
    }
}
