//! `run --every D`: periodic sweeps with live policy swaps.
//!
//! Signals only set flags; the loop looks at them between sweeps and while waiting, so a stop
//! never interrupts a sweep in flight, and a swap happens between operations (the library also
//! lets operations in flight finish on the old policy).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use session_archiver::archiver::Archiver;
use session_archiver::data_dir::{DataDirPaths, Layout};
use session_archiver::live_app::LiveAppError;
use session_archiver::policy::PolicyId;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::cli::Global;
use crate::output::{bytes, ratio};
use crate::setup::{self, Session};
use crate::watch::PolicyWatch;

/// How often the loop wakes to look at the flags while waiting.
const TICK: Duration = Duration::from_millis(50);

/// `name@version (sha256 prefix)`, the form of the swap log.
fn short(p: &PolicyId) -> String {
    format!(
        "{}@{} ({})",
        p.name,
        p.version,
        &p.sha256[..12.min(p.sha256.len())]
    )
}

struct Flags {
    stop: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

fn install_signals() -> Result<Flags> {
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    // A second SIGINT while the first is pending exits at once (someone means it).
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, stop.clone())
        .context("installing the SIGINT handler")?;
    signal_hook::flag::register(SIGINT, stop.clone()).context("installing the SIGINT handler")?;
    signal_hook::flag::register(SIGTERM, stop.clone()).context("installing the SIGTERM handler")?;
    signal_hook::flag::register(SIGHUP, hup.clone()).context("installing the SIGHUP handler")?;
    Ok(Flags { stop, hup })
}

pub fn run(
    g: &Global,
    every: Duration,
    max_sweeps: Option<u64>,
    watch_interval: Duration,
    allow_insecure: bool,
) -> Result<()> {
    let flags = install_signals()?;
    let policy_path = setup::policy_path(g)?;
    if let Err(why) = check_policy_file(&policy_path, allow_insecure) {
        tracing::error!("policy refused: {why}");
        bail!("policy refused: {why}");
    }
    let (paths, layout) = setup::paths(g)?;
    let live = setup::live_guard(g, &paths);
    // The stores are opened for writing only once the app is seen stopped: not even opening them
    // (journal mode, schema check) happens under a live app. A policy or store error at that
    // point ends `run`, as it would at start.
    let mut state = match live.ensure_not_live() {
        Ok(()) => State::Open(open_session(g, paths, layout, live, every)?),
        Err(LiveAppError::InUse(found)) => {
            tracing::info!(
                "running: a sweep every {}; {found}: sweeps are skipped until it stops",
                humantime::format_duration(every)
            );
            State::Waiting(paths, layout, live)
        }
        Err(e) => return Err(e.into()),
    };
    let mut watch = PolicyWatch::new(&policy_path);

    let mut sweeps = 0u64;
    let mut last_watch = Instant::now();
    loop {
        if flags.stop.load(Ordering::Relaxed) {
            break;
        }
        let started = Instant::now();
        sweeps += 1;
        let live = match &state {
            State::Open(s) => s.live.as_ref(),
            State::Waiting(_, _, live) => Some(live),
        };
        match live.map_or(Ok(()), setup::LiveGuard::ensure_not_live) {
            Err(e) => tracing::warn!("sweep {sweeps} skipped: {e}"),
            Ok(()) => {
                if let State::Waiting(paths, layout, live) = state {
                    state = State::Open(open_session(g, paths, layout, live, every)?);
                }
                if let State::Open(s) = &state {
                    // Meta records archive paths under the directory's path: a directory moved
                    // or replaced since start must not receive more archives. Stopping
                    // (non-zero) is the safe answer; a restart opens whatever the path leads to.
                    s.archiver
                        .stores()
                        .archive_dir
                        .check_still_at_path()
                        .with_context(|| format!("stopping before sweep {sweeps}"))?;
                    sweep_once(&s.archiver, sweeps);
                }
            }
        }
        if max_sweeps.is_some_and(|m| sweeps >= m) {
            break;
        }
        let next = started + every;
        loop {
            if flags.stop.load(Ordering::Relaxed) {
                break;
            }
            if flags.hup.swap(false, Ordering::Relaxed) {
                tracing::info!("SIGHUP: reloading {}", watch.path().display());
                // Record the file as seen, so the poll does not load it a second time.
                watch.changed();
                if let State::Open(s) = &state {
                    swap(&s.archiver, &watch, allow_insecure);
                }
            } else if last_watch.elapsed() >= watch_interval {
                last_watch = Instant::now();
                if watch.changed() {
                    tracing::info!("{} changed on disk", watch.path().display());
                    if let State::Open(s) = &state {
                        swap(&s.archiver, &watch, allow_insecure);
                    }
                }
            }
            let now = Instant::now();
            if now >= next {
                break;
            }
            std::thread::sleep(TICK.min(next - now).min(watch_interval));
        }
    }
    if flags.stop.load(Ordering::Relaxed) {
        tracing::info!("stopping on signal after {sweeps} sweeps");
    } else {
        tracing::info!("done: {sweeps} sweeps");
    }
    Ok(())
}

/// One sweep; a failure is logged and the loop goes on (the next sweep may succeed).
fn sweep_once(archiver: &Archiver, n: u64) {
    let started = Instant::now();
    match archiver.sweep(|_| {}) {
        Ok(served) => {
            let s = &served.value;
            let (pruned, freed) = s
                .prune
                .as_ref()
                .map_or((0, 0), |p| (p.pruned, p.bytes_freed));
            let skipped: u32 = s.skipped.values().sum();
            tracing::info!(
                "sweep {n}: policy {}: archived {} ({} -> {}, {}), skipped {skipped}, failed {}, \
                 pruned {pruned} (freed {}), recovered {} in {:.1} s",
                short(&served.policy),
                s.archived,
                bytes(s.bytes_archived),
                bytes(s.bytes_written),
                ratio(s.bytes_written, s.bytes_archived),
                s.failed.len(),
                bytes(freed),
                s.recovered,
                started.elapsed().as_secs_f64()
            );
            for f in &s.failed {
                tracing::warn!(
                    "sweep {n}: {}",
                    crate::exit::render_archiver(&f.error).replace('\n', " ")
                );
            }
        }
        Err(e) => tracing::error!(
            "sweep {n} failed: {}",
            crate::exit::render_archiver(&e).replace('\n', " ")
        ),
    }
}

/// Before the first sweep the app let through, `run` holds only where the data is; after it, the
/// open session.
enum State {
    Waiting(DataDirPaths, Layout, setup::LiveGuard),
    Open(Session),
}

/// Opens the stores (the caller has just seen the app stopped) and logs what runs.
fn open_session(
    g: &Global,
    paths: DataDirPaths,
    layout: Layout,
    live: setup::LiveGuard,
    every: Duration,
) -> Result<Session> {
    let s = setup::open_guarded_by(g, paths, layout, live)?;
    tracing::info!(
        "running: a sweep every {} with policy {} from {}; SIGHUP or a change of the file swaps it",
        humantime::format_duration(every),
        short(&s.archiver.current_policy().id()),
        s.policy_path.display()
    );
    Ok(s)
}

/// Refuses a policy file that group or others can write, or that sits in a directory they can
/// write (without the sticky bit): its code runs on every session, so only its owner may change
/// it. `allow` (`--allow-insecure-policy-file`) turns the refusal into a warning.
fn check_policy_file(path: &Path, allow: bool) -> Result<(), String> {
    let mut problems = Vec::new();
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o022 != 0 => problems.push(format!(
            "{} is writable by group or others (mode {:o})",
            path.display(),
            m.permissions().mode() & 0o7777
        )),
        Ok(_) => {}
        // Missing or unreadable: the load reports it.
        Err(_) => return Ok(()),
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(m) = std::fs::metadata(dir) {
        let mode = m.permissions().mode();
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            problems.push(format!(
                "its directory {} is writable by group or others (mode {:o})",
                dir.display(),
                mode & 0o7777
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let why = problems.join("; ");
    if allow {
        tracing::warn!("loading an insecure policy file (--allow-insecure-policy-file): {why}");
        return Ok(());
    }
    Err(format!(
        "{why}; make it writable only by its owner, or pass --allow-insecure-policy-file"
    ))
}

fn swap(archiver: &Archiver, watch: &PolicyWatch, allow_insecure: bool) {
    let old = archiver.current_policy().id();
    if let Err(why) = check_policy_file(watch.path(), allow_insecure) {
        tracing::warn!(
            "policy rejected: {} could not replace {}, which keeps serving: {why}",
            watch.path().display(),
            short(&old)
        );
        return;
    }
    match archiver.swap_policy(watch.path()) {
        Ok(o) => tracing::info!(
            "policy swapped: {} -> {}{}",
            short(&o.old),
            short(&o.new),
            if o.from_cache {
                " (compiled code from the cache)"
            } else {
                ""
            }
        ),
        Err(e) => tracing::warn!(
            "policy rejected: {} could not replace {}, which keeps serving: {}",
            watch.path().display(),
            short(&old),
            crate::exit::render_archiver(&e).replace('\n', " ")
        ),
    }
}
