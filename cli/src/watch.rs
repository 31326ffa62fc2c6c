//! Notices when the policy file changes on disk, by polling: size and mtime are cheap to check
//! every second, and the content hash confirms a real change (a `touch` or a rewrite with the
//! same bytes is not a new policy). Polling needs no extra dependency and works the same on
//! every filesystem, including network mounts where inotify is silent.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    size: u64,
    modified: Option<SystemTime>,
    sha256: [u8; 32],
}

/// Watches one file.
#[derive(Debug)]
pub struct PolicyWatch {
    path: PathBuf,
    seen: Option<Seen>,
}

impl PolicyWatch {
    /// Starts from the file as it is now (the policy just loaded from it).
    pub fn new(path: &Path) -> Self {
        let mut w = PolicyWatch {
            path: path.to_path_buf(),
            seen: None,
        };
        w.seen = w.read();
        w
    }

    fn read(&self) -> Option<Seen> {
        let meta = std::fs::metadata(&self.path).ok()?;
        let bytes = std::fs::read(&self.path).ok()?;
        Some(Seen {
            size: bytes.len() as u64,
            modified: meta.modified().ok(),
            sha256: Sha256::digest(&bytes).into(),
        })
    }

    /// True once per change of the file's content. A missing or unreadable file is not a change
    /// (it may be mid-replace); the next poll looks again.
    pub fn changed(&mut self) -> bool {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return false;
        };
        if let Some(seen) = &self.seen {
            if seen.size == meta.len() && seen.modified == meta.modified().ok() {
                return false;
            }
        }
        let Some(now) = self.read() else {
            return false;
        };
        let content_changed = self.seen.as_ref().is_none_or(|s| s.sha256 != now.sha256);
        self.seen = Some(now);
        content_changed
    }

    /// The watched path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_change_is_reported_once_and_a_touch_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.wasm");
        std::fs::write(&f, b"one").unwrap();
        let mut w = PolicyWatch::new(&f);
        assert!(!w.changed(), "nothing happened yet");

        std::fs::write(&f, b"two!").unwrap();
        assert!(w.changed());
        assert!(!w.changed(), "reported once");

        // Same bytes, new mtime: not a new policy.
        let t = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(t)
            .unwrap();
        assert!(!w.changed());

        std::fs::remove_file(&f).unwrap();
        assert!(!w.changed(), "a missing file is not a change");
        std::fs::write(&f, b"three").unwrap();
        assert!(w.changed());
    }
}
