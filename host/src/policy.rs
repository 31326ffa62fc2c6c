//! A loaded policy and the slot that lets it be swapped while operations are running.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::bindings::{guest, ArchivePolicyPre};
use crate::host::HostState;

/// Who the policy says it is (`info`).
pub type PolicyInfo = guest::PolicyInfo;

/// Identifies the policy that served a result: what it says it is, and exactly which bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyId {
    /// The name the policy's `info` reports.
    pub name: String,
    /// The version the policy's `info` reports.
    pub version: String,
    /// SHA-256 of the component file, lowercase hex.
    pub sha256: String,
}

impl std::fmt::Display for PolicyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.name,
            self.version,
            &self.sha256[..12.min(self.sha256.len())]
        )
    }
}

/// A compiled, linked and checked policy: ready to instantiate once per operation. Cloning is
/// cheap (the compiled code is shared).
#[derive(Clone)]
pub struct LoadedPolicy {
    /// What `info` returned when the policy was loaded.
    pub info: PolicyInfo,
    /// SHA-256 of the component bytes, lowercase hex.
    pub sha256: String,
    /// The file it came from (`None` for `load_bytes`).
    pub path: Option<PathBuf>,
    /// The path or the caller's label, for messages.
    pub label: String,
    /// True when the compiled code came from the on-disk cache (no Cranelift compile).
    pub from_cache: bool,
    /// Pre-linked instance; shared by every operation and worker thread.
    pub pre: ArchivePolicyPre<HostState>,
}

impl LoadedPolicy {
    /// Name, version and hash, for results and errors.
    pub fn id(&self) -> PolicyId {
        PolicyId {
            name: self.info.name.clone(),
            version: self.info.version.clone(),
            sha256: self.sha256.clone(),
        }
    }

    /// `name@version`, the form used in error messages.
    pub fn display_name(&self) -> String {
        format!("{}@{}", self.info.name, self.info.version)
    }
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("info", &self.info)
            .field("sha256", &self.sha256)
            .field("label", &self.label)
            .field("from_cache", &self.from_cache)
            .finish_non_exhaustive()
    }
}

/// The current policy, swappable at any time.
///
/// Each operation takes the current `Arc` once, at its start, and runs to completion on it: a
/// swap changes what *new* operations get, never what a running one uses. Loading happens
/// before [`PolicySlot::swap`] is called, so a policy that fails to load never reaches the slot.
pub struct PolicySlot {
    current: ArcSwap<LoadedPolicy>,
}

impl PolicySlot {
    /// A slot holding `policy`.
    pub fn new(policy: LoadedPolicy) -> Self {
        PolicySlot {
            current: ArcSwap::from_pointee(policy),
        }
    }

    /// The policy new operations should use.
    pub fn current(&self) -> Arc<LoadedPolicy> {
        self.current.load_full()
    }

    /// Installs `new` and returns the policy it replaced (still alive while in-flight
    /// operations hold it).
    pub fn swap(&self, new: LoadedPolicy) -> Arc<LoadedPolicy> {
        self.current.swap(Arc::new(new))
    }
}
