//! `run --every D`: periodic sweeps with live policy swaps.
//!
//! Signals only set flags; the loop looks at them between sweeps and while waiting, so a stop
//! never interrupts a sweep in flight, and a swap happens between operations (the library also
//! lets operations in flight finish on the old policy).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
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
) -> Result<()> {
    let flags = install_signals()?;
    let (paths, layout) = setup::paths(g)?;
    let live = setup::live_guard(g, &paths);
    let policy_path = setup::policy_path(g)?;
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
                    swap(&s.archiver, &watch);
                }
            } else if last_watch.elapsed() >= watch_interval {
                last_watch = Instant::now();
                if watch.changed() {
                    tracing::info!("{} changed on disk", watch.path().display());
                    if let State::Open(s) = &state {
                        swap(&s.archiver, &watch);
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

fn swap(archiver: &Archiver, watch: &PolicyWatch) {
    let old = archiver.current_policy().id();
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
