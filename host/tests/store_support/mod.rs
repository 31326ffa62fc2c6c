//! Helpers shared by the store contract tests (`object_store_contract`, `file_store_contract`,
//! `archive_dir_contract`) and the SQLite app-compatibility checks (`sqlite_app_compat`): a clock
//! that stands still, deterministic bytes, and the macros that run each generic contract test
//! once per backend.
#![allow(dead_code, unused_macros)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;
use session_archiver::store::{Clock, Meta};

/// The file store's part size: the app keeps a file's bytes in rows of 64 KiB.
pub const PART: usize = 64 * 1024;

/// A clock that stands still unless a test moves it: proves modts advances without real time.
pub struct FrozenClock(pub AtomicI64);

impl Clock for FrozenClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Where the frozen clock stands.
pub const T0: i64 = 1_700_000_000_000;

/// A clock standing at [`T0`].
pub fn frozen() -> Arc<FrozenClock> {
    Arc::new(FrozenClock(AtomicI64::new(T0)))
}

/// A JSON object as meta; panics on anything else.
pub fn meta(v: Value) -> Meta {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// Deterministic bytes that differ at every offset a test is likely to confuse.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The wall clock, in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs each named generic test once per backend, as `<module>::<test>`.
macro_rules! contract {
    ($module:ident, $make:ident, [$($test:ident),* $(,)?]) => {
        mod $module {
            $(
                #[test]
                fn $test() {
                    let (_dir, store) = super::$make();
                    super::$test(&*store);
                }
            )*
        }
    };
}

macro_rules! archive_contract {
    ($module:ident, $make:ident, [$($test:ident),* $(,)?]) => {
        mod $module {
            $(
                #[test]
                fn $test() {
                    super::$test(&super::$make());
                }
            )*
        }
    };
}
