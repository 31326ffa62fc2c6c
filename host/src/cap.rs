//! Whether the archive cap can be met at all. Pinned archives are never pruned, so when they
//! alone hold more than the cap no prune can reach it; the kit's prune then keeps every session's
//! only copy instead of chasing the cap, and `plan`, `sweep` and `status` say why the directory
//! stays over it.

use serde_json::Value;

use crate::archive_dir::archive_id;
use crate::host::Stores;
use crate::store::StoreError;

/// The cap cannot be reached: pinned archives alone exceed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CapUnreachable {
    /// Bytes held by pinned sessions' archives.
    pub pinned_bytes: u64,
    /// The cap (`max_total_bytes`).
    pub cap: u64,
}

impl std::fmt::Display for CapUnreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cap unreachable: pinned archives hold {} bytes, cap {} bytes",
            self.pinned_bytes, self.cap
        )
    }
}

/// Bytes of the archives whose session is pinned, judged as the kit's prune judges them: a
/// session with an operation in progress is not counted (its archive is undecided), and a pin
/// that is present but not `false` counts as a pin (keeping an archive is never a loss).
pub fn pinned_archive_bytes(stores: &Stores) -> Result<u64, StoreError> {
    let mut total = 0;
    for entry in stores.archive_dir.list()? {
        let Some(id) = archive_id(&entry.name) else {
            continue;
        };
        let object = match stores.objects.get(id) {
            Ok(o) => o,
            Err(StoreError::NotFound(_)) | Err(StoreError::Invalid(_)) => continue,
            Err(e) => return Err(e),
        };
        let meta = &object.meta;
        if meta
            .get("session:archive_intent")
            .is_some_and(|v| !v.is_null())
        {
            continue;
        }
        let pinned = !matches!(
            meta.get("session:archive_pinned"),
            None | Some(Value::Null) | Some(Value::Bool(false))
        );
        if pinned {
            total += entry.size;
        }
    }
    Ok(total)
}

/// `Some` when pinned archives alone hold more than `cap`.
pub fn cap_unreachable(stores: &Stores, cap: u64) -> Result<Option<CapUnreachable>, StoreError> {
    let pinned_bytes = pinned_archive_bytes(stores)?;
    Ok((pinned_bytes > cap).then_some(CapUnreachable { pinned_bytes, cap }))
}
