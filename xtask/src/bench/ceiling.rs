//! The deflate ceiling: miniz_oxide's level-6 deflate alone, timed in the same rounds as the
//! archive rows. `guest/deflate-probe` is a plain core module (built by `build-policies` into
//! `target/policies/probe/`) that deflates bytes the way the kit's gzip encoder does; here it
//! runs on the runtime's own engine (Cranelift, epoch interruption: the real per-core ceiling of
//! a policy), on an engine without epoch checks (what they cost), natively (the same crate
//! compiled by LLVM: the Cranelift factor) and on several instances at once (the multi-core
//! ceiling). Instantiating and copying the input in are not timed: only the deflate call is.

use std::path::Path;
use std::sync::Barrier;
use std::time::Instant;

use anyhow::{anyhow, ensure, Context, Result};
use wasmtime::{Config, Engine, Instance, Module, OptLevel, Store, TypedFunc};

/// The level every row deflates at (the policies' default, flate2's and gzip's `-6`).
const LEVEL: u8 = 6;

/// Epoch ticks a probe call may run: far past any run (the runtime ticks every 10 ms), so the
/// deadline never traps, while the compiled code still checks it as a policy's does.
const NEVER: u64 = 1 << 40;

/// wasmtime's own error type (its `anyhow` feature is off workspace-wide) → anyhow, saying what failed.
fn wasm<T>(r: wasmtime::Result<T>, what: impl std::fmt::Display) -> Result<T> {
    r.map_err(|e| anyhow!("{what}: {e:#}"))
}

/// The probe module compiled for one engine.
pub(crate) struct Sandbox {
    engine: Engine,
    module: Module,
    epochs: bool,
}

/// A fresh instance with the input copied in, ready for the timed call.
struct Ready {
    store: Store<()>,
    deflate: TypedFunc<(u32, u32, i32), u32>,
    ptr: u32,
    len: u32,
}

impl Ready {
    /// The deflate call (the only timed part); the compressed length.
    fn run(&mut self) -> Result<usize> {
        let args = (self.ptr, self.len, i32::from(LEVEL));
        let n = wasm(
            self.deflate.call(&mut self.store, args),
            "the probe's `deflate`",
        )?;
        ensure!(n > 0, "the probe module failed to deflate");
        Ok(n as usize)
    }
}

impl Sandbox {
    /// The probe on `engine`, which must have epoch interruption on exactly when `epochs` is.
    pub(crate) fn new(engine: &Engine, probe: &Path, epochs: bool) -> Result<Self> {
        let bytes = std::fs::read(probe).with_context(|| {
            format!(
                "reading {} (built by `cargo xtask build-policies`)",
                probe.display()
            )
        })?;
        let module = wasm(
            Module::new(engine, &bytes),
            format_args!("compiling {}", probe.display()),
        )?;
        Ok(Sandbox {
            engine: engine.clone(),
            module,
            epochs,
        })
    }

    /// The runtime's settings with epoch interruption off (`host/src/runtime.rs` builds the
    /// real one; the component model is irrelevant to a core module).
    pub(crate) fn engine_without_epochs() -> Result<Engine> {
        let mut config = Config::new();
        config.epoch_interruption(false);
        config.cranelift_opt_level(OptLevel::Speed);
        wasm(Engine::new(&config), "the engine without epochs")
    }

    fn ready(&self, data: &[u8]) -> Result<Ready> {
        let mut store = Store::new(&self.engine, ());
        if self.epochs {
            store.set_epoch_deadline(NEVER);
        }
        let instance = wasm(
            Instance::new(&mut store, &self.module, &[]),
            "instantiating the deflate probe",
        )?;
        let alloc = wasm(
            instance.get_typed_func::<u32, u32>(&mut store, "alloc"),
            "the probe's `alloc`",
        )?;
        let deflate = wasm(
            instance.get_typed_func::<(u32, u32, i32), u32>(&mut store, "deflate"),
            "the probe's `deflate`",
        )?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .context("the probe exports no memory")?;
        let len = u32::try_from(data.len()).context("input too large for wasm32")?;
        let ptr = wasm(alloc.call(&mut store, len), "the probe's `alloc`")?;
        memory
            .write(&mut store, ptr as usize, data)
            .context("copying the input into the probe's memory")?;
        Ok(Ready {
            store,
            deflate,
            ptr,
            len,
        })
    }

    /// Seconds for one deflate of `data` in a fresh instance, and the compressed length.
    pub(crate) fn deflate(&self, data: &[u8]) -> Result<(f64, usize)> {
        let mut r = self.ready(data)?;
        let t = Instant::now();
        let n = r.run()?;
        Ok((t.elapsed().as_secs_f64(), n))
    }

    /// Seconds for `threads` instances (one store each, this one engine) to deflate a
    /// `1/threads` slice of `data` each, all at once; and their compressed lengths' sum.
    pub(crate) fn deflate_parallel(&self, data: &[u8], threads: usize) -> Result<(f64, usize)> {
        let slices: Vec<&[u8]> = data
            .chunks(data.len().div_ceil(threads.max(1)).max(1))
            .collect();
        // Every instance is set up before the clock starts.
        let start = Barrier::new(slices.len() + 1);
        std::thread::scope(|s| {
            let workers: Vec<_> = slices
                .iter()
                .map(|slice| {
                    let start = &start;
                    s.spawn(move || -> Result<usize> {
                        let ready = self.ready(slice);
                        // Wait even when setting up failed, or the others would wait forever.
                        start.wait();
                        ready?.run()
                    })
                })
                .collect();
            start.wait();
            let t = Instant::now();
            let mut total = 0;
            for w in workers {
                total += w.join().expect("a probe thread panicked")?;
            }
            Ok((t.elapsed().as_secs_f64(), total))
        })
    }
}

/// Seconds for the same deflate natively (the probe crate linked into this process), and the
/// compressed length.
pub(crate) fn native_deflate(data: &[u8]) -> Result<(f64, usize)> {
    let t = Instant::now();
    let n = deflate_probe::deflate_stream(data, LEVEL, |_| {})
        .map_err(|e| anyhow::anyhow!("native deflate: {}", e.0))?;
    Ok((t.elapsed().as_secs_f64(), n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_archiver::runtime::{CacheSetting, Runtime, RuntimeOptions};

    /// The probe `build-policies` writes; the tests need it built, as the bench does.
    fn probe_module() -> std::path::PathBuf {
        let path = crate::cmd::workspace_root()
            .join(crate::policies::PROBE_DIR)
            .join("deflate-probe.wasm");
        assert!(
            path.is_file(),
            "{} is missing: run `cargo xtask build-policies` first",
            path.display()
        );
        path
    }

    /// A few MiB of the bench's kind of bytes (agent JSONL), so several 1 MiB pieces.
    fn session() -> Vec<u8> {
        session_archiver_demo::session_jsonl(7, 3 << 20)
            .flatten()
            .collect()
    }

    #[test]
    fn the_sandboxed_probe_deflates_to_the_native_length_with_and_without_epochs() {
        let runtime = Runtime::new(RuntimeOptions {
            cache: CacheSetting::Disabled,
            ..RuntimeOptions::default()
        })
        .unwrap();
        let data = session();
        let (_, native) = native_deflate(&data).unwrap();
        assert!(native > 0 && native < data.len() / 2, "{native} bytes");
        // The runtime's engine ticks every 10 ms: the deadline must outlast the call.
        let epochs = Sandbox::new(runtime.engine(), &probe_module(), true).unwrap();
        assert_eq!(epochs.deflate(&data).unwrap().1, native);
        let engine = Sandbox::engine_without_epochs().unwrap();
        let plain = Sandbox::new(&engine, &probe_module(), false).unwrap();
        assert_eq!(plain.deflate(&data).unwrap().1, native);
    }

    #[test]
    fn parallel_instances_each_deflate_their_own_slice() {
        let engine = Sandbox::engine_without_epochs().unwrap();
        let plain = Sandbox::new(&engine, &probe_module(), false).unwrap();
        let data = session();
        let half = data.len().div_ceil(2);
        let expected: usize = data
            .chunks(half)
            .map(|slice| native_deflate(slice).unwrap().1)
            .sum();
        assert_eq!(plain.deflate_parallel(&data, 2).unwrap().1, expected);
    }
}
