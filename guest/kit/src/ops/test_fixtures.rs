//! What the operations' tests share: a simple policy, a session on the fake host, checks.
//! The tests themselves sit beside each operation and cover the seed's behaviour and each of
//! its data-loss bugs.

use serde_json::{json, Value};

use crate::decide::DAY_MS;
use crate::decisions::{ArchiveClass, ArchiveInfo, Candidate, Decisions, PrunePick, Selection};
use crate::fake::FakeHost;
use crate::gzip;
use crate::meta::{keys, Meta};
use crate::ops::OUTPUT_FILE;

/// The fake host's clock.
pub const NOW: i64 = 100 * DAY_MS;
/// The session most tests work on.
pub const ID: &str = "s1";

/// Archives every agent session; prunes oldest-first, only-copies last.
pub struct Simple {
    pub cap: u64,
}

impl Simple {
    fn select(meta: &Meta) -> Selection {
        if meta.has_intent() {
            return Selection::Recover {
                reason: "intent".into(),
            };
        }
        if meta.view() != "agent" {
            return Selection::Skip {
                code: "not-agent".into(),
                reason: "not an agent".into(),
                candidate: false,
            };
        }
        if meta.archived_at().ok().flatten().is_some() {
            return Selection::Skip {
                code: "archived".into(),
                reason: "archived".into(),
                candidate: true,
            };
        }
        Selection::Archive {
            reason: "test".into(),
        }
    }
}

impl Decisions for Simple {
    fn select_all(&self, sessions: &[Candidate], _now: i64) -> Vec<Selection> {
        sessions.iter().map(|c| Simple::select(&c.meta)).collect()
    }
    fn prune_plan(&self, archives: &[ArchiveInfo], cap: u64, _now: i64) -> Vec<PrunePick> {
        let mut total: u64 = archives.iter().map(|a| a.entry.size).sum();
        let mut order: Vec<usize> = (0..archives.len())
            .filter(|i| {
                matches!(
                    archives[*i].class,
                    ArchiveClass::Backup | ArchiveClass::Orphan | ArchiveClass::OnlyCopy
                )
            })
            .collect();
        order.sort_by_key(|i| {
            (
                archives[*i].class == ArchiveClass::OnlyCopy,
                archives[*i].entry.modified_ms,
            )
        });
        let mut picks = Vec::new();
        for i in order {
            if total <= cap {
                break;
            }
            total -= archives[i].entry.size;
            picks.push(PrunePick {
                index: i,
                reason: "cap".into(),
            });
        }
        picks
    }
    fn level(&self) -> u8 {
        6
    }
    fn cap(&self) -> u64 {
        self.cap
    }
    fn max_restore_bytes(&self) -> u64 {
        1 << 30
    }
}

/// `n` JSONL lines.
pub fn body(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("{{\"i\":{i}}}\n"))
        .collect::<String>()
        .into_bytes()
}

/// A fake host holding session [`ID`], idle 10 days, with `data` as its output.
pub fn host_with_session(data: &[u8]) -> FakeHost {
    let h = FakeHost::new(NOW);
    h.add_object(
        ID,
        json!({"view":"agent","session:last_activity_ms": NOW - 10 * DAY_MS, "session:line_count": 3}),
    );
    h.put_file(ID, OUTPUT_FILE, data);
    h
}

/// An integer meta key of [`ID`].
pub fn meta_i64(h: &FakeHost, key: &str) -> Option<i64> {
    h.meta(ID).get(key).and_then(Value::as_i64)
}

/// After a crash at any point and a recover, no byte is lost and nothing is left half done.
pub fn check_archive_consistent(h: &FakeHost, data: &[u8]) {
    let m = h.meta(ID);
    assert!(m.get(keys::INTENT).is_none(), "intent cleared: {m:?}");
    if m.get(keys::ARCHIVED_AT).is_some() {
        let gz = h
            .archive("s1.jsonl.gz")
            .expect("archived meta has its archive");
        assert_eq!(gzip::decompress(&gz, u64::MAX).unwrap(), data);
        assert_eq!(h.file(ID, OUTPUT_FILE), None);
    } else {
        assert_eq!(h.file(ID, OUTPUT_FILE).unwrap(), data, "live copy intact");
    }
}
