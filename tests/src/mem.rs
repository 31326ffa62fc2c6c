//! Plain in-memory stores (no call log, no faults, the system clock) with handles to seed them:
//! for tests of the facade itself, where the mock host's recorder would only be in the way.

use std::sync::Arc;

use serde_json::{json, Value};
use session_archiver::archive_dir::memory::MemoryArchiveDir;
use session_archiver::host::Stores;
use session_archiver::store::memory::{MemoryFiles, MemoryObjects};
use session_archiver::store::{Clock, FileOpts, FileStore, ObjectStore, SystemClock, OUTPUT_FILE};

/// In-memory stores plus handles to seed them.
pub struct Mem {
    pub objects: MemoryObjects,
    pub files: Arc<MemoryFiles>,
    pub dir: MemoryArchiveDir,
    pub stores: Stores,
}

pub fn now_ms() -> i64 {
    SystemClock.now_ms()
}

pub fn mem_stores() -> Mem {
    let objects = MemoryObjects::new();
    let files = Arc::new(MemoryFiles::new());
    let dir = MemoryArchiveDir::new();
    let stores = Stores {
        objects: Arc::new(objects.clone()),
        files: files.clone(),
        archive_dir: Arc::new(dir.clone()),
        clock: Arc::new(SystemClock),
    };
    Mem {
        objects,
        files,
        dir,
        stores,
    }
}

impl Mem {
    /// An agent session idle for `idle_days` with `lines` JSONL lines of output.
    pub fn agent_session(&self, id: &str, idle_days: i64, lines: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..lines {
            out.extend_from_slice(
                format!("{{\"i\":{i},\"text\":\"line {i} of session {id}\"}}\n").as_bytes(),
            );
        }
        let meta = json!({
            "view": "agent",
            "session:last_activity_ms": now_ms() - idle_days * 86_400_000,
            "session:line_count": lines,
        });
        let Value::Object(meta) = meta else {
            unreachable!()
        };
        self.objects.insert(id, &meta).expect("insert");
        self.files
            .create(id, OUTPUT_FILE, FileOpts::default())
            .expect("create");
        for chunk in out.chunks(64 << 10) {
            self.files.append(id, OUTPUT_FILE, chunk).expect("append");
        }
        out
    }
}
