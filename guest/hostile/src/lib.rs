//! `hostile`: a test-only policy that misbehaves on purpose, for the host's sandbox tests.
//!
//! Every export reads `{"mode": ...}` from its config and then:
//! - `loop`: spins forever (the host's fuel/epoch limit must stop it);
//! - `alloc`: allocates without bound, touching every page (the memory limit must stop it);
//! - `trap`: panics, which is a trap (`panic = "abort"`);
//! - `trap-mid-archive`: starts an archive writer, writes a chunk, then traps before deleting or
//!   recording anything (the host must drop the uncommitted temporary file);
//! - `bad-args`: calls imports with out-of-range arguments and returns `invalid` listing what each
//!   call answered (the host must answer with errors, not crash);
//! - `garbage`: returns well-typed nonsense (absurd numbers, a path-like archive name, a huge
//!   reason string);
//! - `ok`: behaves, returning trivial results.
//!
//! An optional `"only": "<export>"` (e.g. `{"mode":"trap","only":"archive"}`) confines the
//! misbehaviour to that one export, the others behaving as `ok`, so a host can build an archiver
//! (which calls `validate-config` first) and still reach the misbehaving call.
//!
//! `info` returns the name `hostile`, or traps when built with the cargo feature `trap-info`.

use archiver_kit::bindings::exports::session_archiver::policy::policy::{self as api, Guest};

/// What the policy does, from its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Spin forever.
    Loop,
    /// Allocate without bound.
    Alloc,
    /// Panic.
    Trap,
    /// Write part of an archive, then panic.
    TrapMidArchive,
    /// Abuse the imports' argument limits.
    BadArgs,
    /// Return nonsense values.
    Garbage,
    /// Behave.
    Ok,
}

/// The mode in force for `export` (the WIT export's name): the config's `mode`, or `ok` when the
/// config confines it to another export with `only`.
pub fn mode_for(config: &str, export: &str) -> Result<Mode, api::Error> {
    let m = mode(config)?;
    let v: serde_json::Value = serde_json::from_str(config).unwrap_or_default();
    match v.get("only") {
        None => Ok(m),
        Some(serde_json::Value::String(only)) if only == export => Ok(m),
        Some(serde_json::Value::String(_)) => Ok(Mode::Ok),
        Some(_) => Err(api::Error::InvalidConfig(
            "`only` must be an export name".into(),
        )),
    }
}

/// Reads the mode from config JSON text.
pub fn mode(config: &str) -> Result<Mode, api::Error> {
    let v: serde_json::Value = serde_json::from_str(config)
        .map_err(|e| api::Error::InvalidConfig(format!("config: {e}")))?;
    let m = v
        .get("mode")
        .and_then(|m| m.as_str())
        .ok_or_else(|| api::Error::InvalidConfig("`mode` must be a string".into()))?;
    Ok(match m {
        "loop" => Mode::Loop,
        "alloc" => Mode::Alloc,
        "trap" => Mode::Trap,
        "trap-mid-archive" => Mode::TrapMidArchive,
        "bad-args" => Mode::BadArgs,
        "garbage" => Mode::Garbage,
        "ok" => Mode::Ok,
        other => {
            return Err(api::Error::InvalidConfig(format!(
                "`mode`: unknown mode {other:?}"
            )))
        }
    })
}

/// Runs the misbehaviour of `mode`; returns only for `bad-args` (its report), `garbage` and `ok`.
fn misbehave(mode: Mode, id: Option<&str>) -> Result<(), api::Error> {
    match mode {
        Mode::Loop => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Mode::Alloc => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut block = vec![0u8; 1 << 20];
                for page in block.iter_mut().step_by(4096) {
                    *page = 1;
                }
                hoard.push(std::hint::black_box(block));
            }
        }
        Mode::Trap => panic!("hostile policy: trap mode"),
        Mode::TrapMidArchive => {
            trap_mid_archive(id.unwrap_or("hostile"));
        }
        Mode::BadArgs => Err(api::Error::Invalid(bad_args(id.unwrap_or("hostile")))),
        Mode::Garbage | Mode::Ok => Ok(()),
    }
}

#[cfg(target_arch = "wasm32")]
fn trap_mid_archive(id: &str) -> ! {
    use archiver_kit::bindings::session_archiver::policy::archive_dir;
    if let Ok(w) = archive_dir::create(&format!("{id}.jsonl.gz")) {
        let _ = w.write(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255, 1, 2, 3]);
        // Leak the handle so no destructor tidies up before the trap.
        std::mem::forget(w);
    }
    panic!("hostile policy: trap in the middle of an archive");
}

#[cfg(target_arch = "wasm32")]
fn bad_args(id: &str) -> String {
    use archiver_kit::bindings::session_archiver::policy::{
        archive_dir, export_sink, files, objects,
    };
    let mut report = Vec::new();
    report.push(format!(
        "files.read len 1 GiB -> {:?}",
        files::read(id, "output", 0, 1 << 30)
    ));
    report.push(format!(
        "files.read offset max -> {:?}",
        files::read(id, "output", u64::MAX, 1)
    ));
    report.push(format!(
        "archive-dir.create ../x -> {:?}",
        archive_dir::create("../x").map(|_| ())
    ));
    report.push(format!(
        "archive-dir.open /etc/passwd -> {:?}",
        archive_dir::open("/etc/passwd").map(|_| ())
    ));
    report.push(format!(
        "archive-dir.path empty -> {:?}",
        archive_dir::path("")
    ));
    report.push(format!(
        "objects.list limit 0 -> {:?}",
        objects::list(None, 0).map(|p| p.objects.len())
    ));
    report.push(format!(
        "objects.update-meta not an object -> {:?}",
        objects::update_meta(id, "[1,2]").map(|_| ())
    ));
    // The session's own archive name: every call stays inside the operation's scope, so each
    // abused argument gets its own error instead of the host's scope refusal. Only when the
    // session has no archive yet: the writer is committed (to abuse it after commit) and
    // removed, which must not destroy a real archive.
    let own = format!("{id}.jsonl.gz");
    let free = matches!(archive_dir::stat(&own), Ok(None));
    match free.then(|| archive_dir::create(&own)).transpose() {
        Ok(None) => report.push("writer: skipped (the session has an archive)".into()),
        Ok(Some(w)) => {
            report.push(format!(
                "writer.write 5 MiB -> {:?}",
                w.write(&vec![0u8; 5 << 20])
            ));
            report.push(format!("writer.commit -> {:?}", w.commit().map(|e| e.size)));
            report.push(format!(
                "writer.write after commit -> {:?}",
                w.write(b"late")
            ));
            report.push(format!(
                "writer.commit twice -> {:?}",
                w.commit().map(|e| e.size)
            ));
            let _ = archive_dir::remove(&own);
        }
        Err(e) => report.push(format!("archive-dir.create -> {e:?}")),
    }
    if let Ok(r) = archive_dir::open(&format!("{id}.jsonl.gz")) {
        report.push(format!(
            "reader.read 1 GiB -> {:?}",
            r.read(1 << 30).map(|b| b.len())
        ));
    }
    report.push(format!(
        "export-sink.write 5 MiB -> {:?}",
        export_sink::write(&vec![b'x'; 5 << 20])
    ));
    format!("bad-args: {}", report.join("; "))
}

// Natively there are no imports to abuse; the modes that need them are wasm-only.
#[cfg(not(target_arch = "wasm32"))]
fn trap_mid_archive(_id: &str) -> ! {
    panic!("hostile policy: trap in the middle of an archive (native: no archive written)");
}

#[cfg(not(target_arch = "wasm32"))]
fn bad_args(_id: &str) -> String {
    "bad-args: no imports natively".into()
}

fn absurd_failure() -> api::Failure {
    api::Failure {
        target: "../../etc/passwd".into(),
        error: api::Error::Pruned(i64::MIN),
    }
}

fn prune_report(mode: Mode) -> api::PruneReport {
    match mode {
        Mode::Garbage => api::PruneReport {
            pruned: u32::MAX,
            tombstoned: u32::MAX,
            bytes_freed: u64::MAX,
            failed: vec![absurd_failure(); 3],
        },
        _ => api::PruneReport {
            pruned: 0,
            tombstoned: 0,
            bytes_freed: 0,
            failed: Vec::new(),
        },
    }
}

/// The component's exports.
pub struct Component;

impl Guest for Component {
    fn info() -> api::PolicyInfo {
        if cfg!(feature = "trap-info") {
            panic!("hostile policy built with trap-info: info traps");
        }
        api::PolicyInfo {
            name: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Test-only policy that misbehaves on purpose; its config `mode` chooses how.".into(),
        }
    }

    fn validate_config(config: String) -> Result<String, api::Error> {
        let m = mode_for(&config, "validate-config")?;
        misbehave(m, None)?;
        Ok(match m {
            Mode::Garbage => "{ this is not json".into(),
            _ => config,
        })
    }

    fn archive(config: String, id: String) -> Result<api::ArchiveOutcome, api::Error> {
        let m = mode_for(&config, "archive")?;
        misbehave(m, Some(&id))?;
        Ok(match m {
            Mode::Garbage => api::ArchiveOutcome {
                raw_bytes: u64::MAX,
                archive_bytes: u64::MAX,
                archive_name: Some("../../etc/passwd".into()),
                archived_at: i64::MIN,
                crc32: u32::MAX,
            },
            _ => api::ArchiveOutcome {
                raw_bytes: 0,
                archive_bytes: 0,
                archive_name: None,
                archived_at: 0,
                crc32: 0,
            },
        })
    }

    fn restore(config: String, id: String) -> Result<api::RestoreOutcome, api::Error> {
        let m = mode_for(&config, "restore")?;
        misbehave(m, Some(&id))?;
        Ok(match m {
            Mode::Garbage => api::RestoreOutcome {
                archived_bytes: u64::MAX,
                newer_bytes: u64::MAX,
            },
            _ => api::RestoreOutcome {
                archived_bytes: 0,
                newer_bytes: 0,
            },
        })
    }

    fn export(config: String, id: String) -> Result<api::ExportOutcome, api::Error> {
        let m = mode_for(&config, "export")?;
        misbehave(m, Some(&id))?;
        Ok(match m {
            // Claims bytes it never wrote to the sink.
            Mode::Garbage => api::ExportOutcome {
                bytes: u64::MAX,
                lines: u64::MAX,
                source: api::Source::ArchiveAndLive,
            },
            _ => api::ExportOutcome {
                bytes: 0,
                lines: 0,
                source: api::Source::Empty,
            },
        })
    }

    fn plan(config: String, _scope: api::PlanScope) -> Result<api::SweepPlan, api::Error> {
        let m = mode_for(&config, "plan")?;
        misbehave(m, None)?;
        Ok(match m {
            Mode::Garbage => api::SweepPlan {
                scanned: u32::MAX,
                decisions: vec![api::Decision {
                    target: "../../etc/passwd".into(),
                    action: api::Action::Prune,
                    reason: "x".repeat(1 << 20),
                    bytes: u64::MAX,
                }],
                skipped: vec![api::SkipCount {
                    reason: String::new(),
                    count: u32::MAX,
                }],
                archive_bytes: u64::MAX,
                archive_cap: 0,
            },
            _ => api::SweepPlan {
                scanned: 0,
                decisions: Vec::new(),
                skipped: Vec::new(),
                archive_bytes: 0,
                archive_cap: 0,
            },
        })
    }

    fn prune(config: String) -> Result<api::PruneReport, api::Error> {
        let m = mode_for(&config, "prune")?;
        misbehave(m, None)?;
        Ok(prune_report(m))
    }

    fn compress_member(
        config: String,
        id: String,
        _offset: u64,
        _length: u64,
    ) -> Result<api::Member, api::Error> {
        let m = mode_for(&config, "compress-member")?;
        misbehave(m, Some(&id))?;
        Ok(api::Member {
            raw_len: 0,
            crc32: 0,
            bytes: Vec::new(),
        })
    }

    fn verify_member(
        config: String,
        _member: Vec<u8>,
        _raw_len: u64,
        _crc32: u32,
    ) -> Result<(), api::Error> {
        let m = mode_for(&config, "verify-member")?;
        misbehave(m, None)?;
        Ok(())
    }

    fn inflate_member(
        config: String,
        _member: Vec<u8>,
        _raw_len: u64,
    ) -> Result<api::Inflated, api::Error> {
        let m = mode_for(&config, "inflate-member")?;
        misbehave(m, None)?;
        Ok(api::Inflated {
            bytes: Vec::new(),
            crc32: 0,
        })
    }

    fn recover(config: String, id: String) -> Result<api::RecoverReport, api::Error> {
        let m = mode_for(&config, "recover")?;
        misbehave(m, Some(&id))?;
        Ok(match m {
            Mode::Garbage => api::RecoverReport {
                examined: 0,
                finished: u32::MAX,
                rolled_back: u32::MAX,
                failed: vec![absurd_failure()],
            },
            _ => api::RecoverReport {
                examined: 0,
                finished: 0,
                rolled_back: 0,
                failed: Vec::new(),
            },
        })
    }
}

// Only in wasm: the export names (`session-archiver:policy/...`) do not link into a native cdylib.
#[cfg(target_arch = "wasm32")]
archiver_kit::bindings::export!(Component);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_is_read_from_config() {
        for (text, want) in [
            ("loop", Mode::Loop),
            ("alloc", Mode::Alloc),
            ("trap", Mode::Trap),
            ("trap-mid-archive", Mode::TrapMidArchive),
            ("bad-args", Mode::BadArgs),
            ("garbage", Mode::Garbage),
            ("ok", Mode::Ok),
        ] {
            assert_eq!(mode(&format!(r#"{{"mode":"{text}"}}"#)), Ok(want));
        }
    }

    #[test]
    fn a_missing_or_unknown_mode_is_invalid_config() {
        assert!(matches!(mode("{}"), Err(api::Error::InvalidConfig(_))));
        assert!(
            matches!(mode(r#"{"mode":"nap"}"#), Err(api::Error::InvalidConfig(m)) if m.contains("nap"))
        );
        assert!(matches!(mode("nope"), Err(api::Error::InvalidConfig(_))));
    }

    #[test]
    fn ok_and_garbage_modes_return_values_of_the_right_shape() {
        let ok = Component::archive(r#"{"mode":"ok"}"#.into(), "s".into()).unwrap();
        assert_eq!(ok.raw_bytes, 0);
        let g = Component::archive(r#"{"mode":"garbage"}"#.into(), "s".into()).unwrap();
        assert_eq!(g.raw_bytes, u64::MAX);
        assert_eq!(
            Component::validate_config(r#"{"mode":"garbage"}"#.into()).unwrap(),
            "{ this is not json"
        );
        assert_eq!(
            Component::prune(r#"{"mode":"garbage"}"#.into())
                .unwrap()
                .pruned,
            u32::MAX
        );
    }

    #[test]
    fn only_confines_the_mode_to_one_export() {
        let c = r#"{"mode":"trap","only":"archive"}"#;
        assert_eq!(mode_for(c, "archive"), Ok(Mode::Trap));
        assert_eq!(mode_for(c, "validate-config"), Ok(Mode::Ok));
        assert_eq!(Component::validate_config(c.into()).unwrap(), c);
        assert!(matches!(
            mode_for(r#"{"mode":"ok","only":3}"#, "archive"),
            Err(api::Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn trap_mode_panics() {
        assert!(
            std::panic::catch_unwind(|| Component::prune(r#"{"mode":"trap"}"#.into())).is_err()
        );
    }

    #[cfg(not(feature = "trap-info"))]
    #[test]
    fn info_names_the_policy_hostile() {
        assert_eq!(Component::info().name, "hostile");
    }
}
