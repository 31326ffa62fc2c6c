//! `cargo xtask build-policies`: guest crates → wasm32 core modules → components, import-checked.
//! Crates marked as bench probes (`guest/deflate-probe`) are built in the same cargo run and
//! copied as core modules to [`PROBE_DIR`], never made components.
//!
//! The toolchain route is chosen on its own (rustup target, `rustup target add`, Debian's
//! `rustc-web` with build-std) because CI machines differ in what they ship; the chosen route is
//! printed so a failure can be reproduced by hand.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use wit_component::{ComponentEncoder, DecodedWasm};
use wit_parser::{Resolve, TypeOwner, WorldItem};

use crate::cmd;
use session_archiver::bindings::WIT_VERSION;

/// The wasm target every policy is built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The only WIT package a policy may import from (namespace, name), at the version the host
/// implements ([`WIT_VERSION`]).
pub const ALLOWED_PACKAGE: (&str, &str) = ("session-archiver", "policy");

/// Which toolchain builds the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Route {
    /// The active (rustup) toolchain with its prebuilt `wasm32-unknown-unknown` std.
    Rustup,
    /// Debian's `rustc-web`/`cargo-web` building std from `rust-web-src` (`-Zbuild-std`).
    Debian,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Rustup => f.write_str("rustup"),
            Route::Debian => f.write_str("debian"),
        }
    }
}

/// What to install when no route works; printed verbatim.
const INSTALL_HELP: &str = "\
no toolchain can build wasm32-unknown-unknown. Install one of:
  * rustup's target:  rustup target add wasm32-unknown-unknown
  * Debian's toolchain (used with -Zbuild-std):
      apt-get install -y rustc-web cargo-web rust-web-src lld
    (lld-22 or another lld-NN works too; it provides wasm-ld)";

/// Debian's toolchain, found on disk.
#[derive(Debug, Clone)]
struct Debian {
    rustc: PathBuf,
    cargo: PathBuf,
    /// A wasm linker to pass when the sysroot has no `rust-lld`.
    linker: Option<PathBuf>,
}

/// One cdylib crate of the guest workspace: a policy, or a bench probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyCrate {
    /// Package name, used for `target/policies/<package>.wasm`.
    pub package: String,
    /// Library target name (underscores), the stem of the core module cargo writes.
    pub lib_name: String,
    /// What the crate's core module becomes.
    pub kind: CrateKind,
}

/// A guest cdylib's role, from `[package.metadata.session-archiver] kind` (default: policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrateKind {
    /// Made a component, import-checked, written to `target/policies/<package>.wasm`.
    Policy,
    /// `kind = "probe"`: a plain core module for the bench (`guest/deflate-probe`), copied as is
    /// to [`PROBE_DIR`]`/<package>.wasm`, out of the way of anything that lists or loads policies.
    Probe,
}

/// Where probe modules go, relative to the workspace root.
pub const PROBE_DIR: &str = "target/policies/probe";

/// Builds every policy (and the bench's probe modules), returns the component paths.
pub fn build_policies(root: &Path, forced: Option<Route>) -> Result<Vec<PathBuf>> {
    let guest_manifest = root.join("guest/Cargo.toml");
    let crates = policy_crates(&guest_manifest)?;
    if !crates.iter().any(|c| c.kind == CrateKind::Policy) {
        bail!(
            "no policy crate (a [lib] with crate-type cdylib) in {}",
            guest_manifest.display()
        );
    }
    let names = |kind| {
        crates
            .iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.package.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("policies: {}", names(CrateKind::Policy));
    let probes = names(CrateKind::Probe);
    if !probes.is_empty() {
        println!("bench probes (core modules): {probes}");
    }

    let route = choose_route(forced)?;
    println!("route: {route}");
    let target_dir = match route {
        Route::Rustup => root.join("guest/target"),
        // Another compiler means other artifacts: keep them apart so neither route rebuilds
        // everything after the other ran.
        Route::Debian => root.join("guest/target-web"),
    };

    let mut build = match route {
        Route::Rustup => {
            let mut c = cmd::cargo();
            c.arg("build");
            c
        }
        Route::Debian => {
            let deb = find_debian().ok_or_else(|| {
                anyhow!("--route debian: Debian's toolchain is missing.\n{INSTALL_HELP}")
            })?;
            let mut c = Command::new(&deb.cargo);
            c.env("RUSTC", &deb.rustc).env("RUSTC_BOOTSTRAP", "1");
            // The rustup shim would otherwise pick this up for any nested `rustc` lookup.
            c.env_remove("RUSTUP_TOOLCHAIN");
            if let Some(linker) = &deb.linker {
                c.env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", linker);
            }
            c.arg("build").arg("-Zbuild-std=std,panic_abort");
            c
        }
    };
    build
        .arg("--release")
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--manifest-path")
        .arg(&guest_manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    for c in &crates {
        build.arg("-p").arg(&c.package);
    }
    cmd::run(&mut build).context("building the policies for wasm32-unknown-unknown")?;

    let out_dir = root.join("target/policies");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut outputs = Vec::new();
    for c in &crates {
        let core = target_dir
            .join(WASM_TARGET)
            .join("release")
            .join(format!("{}.wasm", c.lib_name));
        if c.kind == CrateKind::Probe {
            let dir = root.join(PROBE_DIR);
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let out = dir.join(format!("{}.wasm", c.package));
            let fresh = write_if_stale(&core, &out, |module| Ok(module.to_vec()))
                .with_context(|| format!("copying probe `{}`", c.package))?;
            println!(
                "{} {} (core module, not a policy)",
                if fresh { "built   " } else { "current " },
                out.display()
            );
            continue;
        }
        let out = out_dir.join(format!("{}.wasm", c.package));
        let fresh = write_if_stale(&core, &out, componentize)
            .with_context(|| format!("making a component of policy `{}`", c.package))?;
        let bytes = fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
        let imports = check_imports(&bytes)
            .with_context(|| format!("checking the imports of {}", out.display()))?;
        println!(
            "{} {} ({} KiB; imports: {})",
            if fresh { "built   " } else { "current " },
            out.display(),
            bytes.len() / 1024,
            imports.join(", ")
        );
        outputs.push(out);
    }
    Ok(outputs)
}

/// The guest workspace's cdylib crates, from `cargo metadata` (no hard-coded list, so a new
/// policy crate is picked up by adding it to the workspace), each with its [`CrateKind`].
pub fn policy_crates(guest_manifest: &Path) -> Result<Vec<PolicyCrate>> {
    let out = cmd::cargo()
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(guest_manifest)
        .output()
        .context("running cargo metadata on the guest workspace")?;
    if !out.status.success() {
        bail!(
            "cargo metadata on {} failed:\n{}",
            guest_manifest.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_policy_crates(&out.stdout)
}

/// Pure part of [`policy_crates`], for unit tests.
pub fn parse_policy_crates(metadata_json: &[u8]) -> Result<Vec<PolicyCrate>> {
    let meta: serde_json::Value =
        serde_json::from_slice(metadata_json).context("parsing cargo metadata output")?;
    let mut crates = Vec::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        let package = pkg["name"].as_str().unwrap_or_default();
        let kind = match &pkg["metadata"]["session-archiver"]["kind"] {
            serde_json::Value::Null => CrateKind::Policy,
            v if v == "policy" => CrateKind::Policy,
            v if v == "probe" => CrateKind::Probe,
            other => bail!(
                "guest crate `{package}`: [package.metadata.session-archiver] kind = {other} \
                 (expected \"policy\" or \"probe\")"
            ),
        };
        for target in pkg["targets"].as_array().into_iter().flatten() {
            let cdylib = target["crate_types"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t == "cdylib");
            if cdylib {
                crates.push(PolicyCrate {
                    package: package.to_string(),
                    lib_name: target["name"].as_str().unwrap_or(package).replace('-', "_"),
                    kind,
                });
            }
        }
    }
    crates.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(crates)
}

/// Picks the build route: forced, else the installed target, else `rustup target add`, else
/// Debian, else an error saying what to install.
fn choose_route(forced: Option<Route>) -> Result<Route> {
    if let Some(route) = forced {
        println!("route forced with --route {route}");
        return Ok(route);
    }
    if active_toolchain_has_wasm_target() {
        return Ok(Route::Rustup);
    }
    if cmd::probe(Command::new("rustup").arg("--version")).is_some() {
        println!("{WASM_TARGET} is not installed; trying `rustup target add {WASM_TARGET}`");
        let added = cmd::succeeds_within(
            Command::new("rustup").args(["target", "add", WASM_TARGET]),
            Duration::from_secs(180),
        );
        if added && active_toolchain_has_wasm_target() {
            return Ok(Route::Rustup);
        }
        println!("rustup could not add {WASM_TARGET}; looking for Debian's rustc-web");
    }
    if find_debian().is_some() {
        return Ok(Route::Debian);
    }
    bail!("{INSTALL_HELP}")
}

/// Whether the toolchain cargo uses has the wasm target's std installed (what `rustup target
/// list --installed` reports, read from the sysroot so it also works without rustup).
fn active_toolchain_has_wasm_target() -> bool {
    if let Some(list) = cmd::probe(Command::new("rustup").args(["target", "list", "--installed"])) {
        if list.lines().any(|l| l.trim() == WASM_TARGET) {
            return true;
        }
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    cmd::probe(Command::new(rustc).args(["--print", "target-libdir", "--target", WASM_TARGET]))
        .map(|dir| Path::new(dir.trim()).join("libstd.rlib").exists() || has_std_rlib(dir.trim()))
        .unwrap_or(false)
}

/// Whether `dir` holds a `libstd-<hash>.rlib`.
fn has_std_rlib(dir: &str) -> bool {
    fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("libstd-") && name.ends_with(".rlib")
            })
        })
        .unwrap_or(false)
}

/// Debian's `rustc-web` + `cargo-web` + `rust-web-src`, if all are installed.
fn find_debian() -> Option<Debian> {
    let rustc = PathBuf::from("/usr/bin/rustc");
    let cargo = PathBuf::from("/usr/bin/cargo");
    if !rustc.exists() || !cargo.exists() {
        return None;
    }
    let sysroot = cmd::probe(Command::new(&rustc).args(["--print", "sysroot"]))?;
    let sysroot = PathBuf::from(sysroot.trim());
    // build-std needs the library sources (rust-web-src).
    if !sysroot
        .join("lib/rustlib/src/rust/library/std/Cargo.toml")
        .exists()
    {
        return None;
    }
    let bundled_lld = sysroot
        .join("lib/rustlib")
        .join(host_triple(&rustc).unwrap_or_default())
        .join("bin/rust-lld");
    let linker = if bundled_lld.exists() {
        None
    } else {
        find_wasm_ld()
    };
    Some(Debian {
        rustc,
        cargo,
        linker,
    })
}

/// The host triple `rustc -vV` reports.
fn host_triple(rustc: &Path) -> Option<String> {
    let info = cmd::probe(Command::new(rustc).arg("-vV"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|s| s.trim().to_string())
}

/// LLVM's wasm linker from any installed `lld`/`lld-NN`, newest first.
fn find_wasm_ld() -> Option<PathBuf> {
    let plain = PathBuf::from("/usr/bin/wasm-ld");
    if plain.exists() {
        return Some(plain);
    }
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix("llvm-")?.parse::<u32>().ok()?;
            let ld = e.path().join("bin/wasm-ld");
            ld.exists().then_some((version, ld))
        })
        .collect();
    versioned.sort();
    versioned.pop().map(|(_, p)| p)
}

/// Writes `make(core module)` (a component, or the module itself for a probe) to `out` unless
/// `out` was made from this very core module (same path, size and mtime, recorded in a stamp
/// file: comparing mtimes alone would keep a component from the other route's build); returns
/// whether it wrote. The write goes through a temp file so an interrupted run never leaves a
/// torn policy.
fn write_if_stale(
    core: &Path,
    out: &Path,
    make: impl FnOnce(&[u8]) -> Result<Vec<u8>>,
) -> Result<bool> {
    let meta =
        fs::metadata(core).with_context(|| format!("no core module at {}", core.display()))?;
    let modified = meta
        .modified()?
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = format!(
        "{}\n{}\n{}\n",
        core.display(),
        meta.len(),
        modified.as_nanos()
    );
    let stamp_path = out.with_extension("wasm.source");
    if out.exists() && fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) {
        return Ok(false);
    }
    let module = fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let made = make(&module)?;
    let tmp = out.with_extension("wasm.tmp");
    fs::write(&tmp, &made).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
    fs::write(&stamp_path, stamp).with_context(|| format!("writing {}", stamp_path.display()))?;
    Ok(true)
}

/// A core module with embedded `component-type` metadata (what `wit-bindgen` emits) → a
/// validated component.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>> {
    ComponentEncoder::default()
        .module(module)?
        .validate(true)
        .encode()
}

/// Lists the component's imports and fails if any is not an interface of the
/// `session-archiver:policy` package, or if it does not export the `policy` interface: a policy must not reach anything the host did not hand
/// it, so a stray `wasi:*` import (from a dependency that touches the clock, env or stdio) is
/// a build failure, not a surprise at load time.
pub fn check_imports(component: &[u8]) -> Result<Vec<String>> {
    let (resolve, world) = match wit_component::decode(component)? {
        DecodedWasm::Component(resolve, world) => (resolve, world),
        DecodedWasm::WitPackage(..) => bail!("this is a WIT package, not a component"),
    };
    let mut names = Vec::new();
    let mut foreign = Vec::new();
    for (key, item) in &resolve.worlds[world].imports {
        let name = resolve.name_world_key(key);
        let allowed = match item {
            WorldItem::Interface { id, .. } => interface_is_ours(&resolve, *id),
            WorldItem::Type(ty) => match resolve.types[*ty].owner {
                TypeOwner::Interface(id) => interface_is_ours(&resolve, id),
                _ => false,
            },
            WorldItem::Function(_) => false,
        };
        if !allowed {
            foreign.push(name.clone());
        }
        names.push(name);
    }
    let exports_policy = resolve.worlds[world].exports.values().any(|item| {
        matches!(item, WorldItem::Interface { id, .. }
            if interface_is_ours(&resolve, *id)
                && resolve.interfaces[*id].name.as_deref() == Some("policy"))
    });
    if !exports_policy {
        bail!(
            "the component does not export {}:{}/policy@{WIT_VERSION}: is the crate a placeholder, \
             or does it miss `wit_bindgen::generate!` and `export!`?",
            ALLOWED_PACKAGE.0,
            ALLOWED_PACKAGE.1
        );
    }
    if !foreign.is_empty() {
        bail!(
            "the component imports {} outside {}:{}@{WIT_VERSION} (a policy may import only this \
             project's interfaces at the host's version, never wasi:*); look for a dependency \
             using std's clock, env, fs or stdio, or a stale WIT",
            foreign.join(", "),
            ALLOWED_PACKAGE.0,
            ALLOWED_PACKAGE.1
        );
    }
    Ok(names)
}

fn interface_is_ours(resolve: &Resolve, id: wit_parser::InterfaceId) -> bool {
    resolve.interfaces[id]
        .package
        .map(|pkg| {
            let name = &resolve.packages[pkg].name;
            (name.namespace.as_str(), name.name.as_str()) == ALLOWED_PACKAGE
                && name.version.as_ref().map(|v| v.to_string()).as_deref() == Some(WIT_VERSION)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wit_component::{embed_component_metadata, StringEncoding};
    use wit_parser::ManglingAndAbi;

    /// A component for `world` of a resolve holding the project's WIT plus `extra` WIT text,
    /// made from wit-component's dummy module (what a real guest build would embed).
    fn component_for(extra: Option<&str>, world: &str) -> Vec<u8> {
        let mut resolve = Resolve::default();
        let (ours, _) = resolve
            .push_dir(cmd::workspace_root().join("wit"))
            .expect("project WIT parses");
        let pkg = match extra {
            Some(text) => resolve
                .push_str("extra.wit", text)
                .expect("test WIT parses"),
            None => ours,
        };
        let world = resolve
            .select_world(&[pkg], Some(world))
            .expect("world exists");
        let mut module = wit_component::dummy_module(&resolve, world, ManglingAndAbi::Standard32);
        embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
            .expect("metadata embeds");
        componentize(&module).expect("dummy module componentizes")
    }

    #[test]
    fn a_component_of_the_policy_world_passes_the_import_check() {
        let component = component_for(None, "archive-policy");
        let imports = check_imports(&component).expect("only our imports");
        assert_eq!(imports.len(), 7, "{imports:?}");
        assert!(imports
            .iter()
            .all(|i| i.starts_with("session-archiver:policy/")));
        assert!(imports.contains(&"session-archiver:policy/files@0.2.0".to_string()));
        assert!(imports.contains(&"session-archiver:policy/members@0.2.0".to_string()));
    }

    #[test]
    fn a_component_built_against_an_older_wit_version_is_rejected() {
        // A policy built before the WIT moved on (0.1.0 had an in-guest `sweep`) must fail the
        // build's import check, not only the host's load.
        let old = tempfile::tempdir().expect("tempdir");
        for entry in fs::read_dir(cmd::workspace_root().join("wit")).expect("read wit/") {
            let path = entry.expect("entry").path();
            let text = fs::read_to_string(&path).expect("read wit");
            let text = text.replace(&format!("@{WIT_VERSION}"), "@0.1.0");
            fs::write(old.path().join(path.file_name().expect("name")), text).expect("write");
        }
        let mut resolve = Resolve::default();
        let (pkg, _) = resolve.push_dir(old.path()).expect("old WIT parses");
        let world = resolve
            .select_world(&[pkg], Some("archive-policy"))
            .expect("world exists");
        let mut module = wit_component::dummy_module(&resolve, world, ManglingAndAbi::Standard32);
        embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
            .expect("metadata embeds");
        let component = componentize(&module).expect("dummy module componentizes");
        let err = check_imports(&component).expect_err("an old WIT version must be refused");
        assert!(format!("{err:#}").contains(WIT_VERSION), "{err:#}");
    }

    #[test]
    fn a_component_importing_a_wasi_interface_is_rejected() {
        let wit = r#"
            package wasi:cli@0.2.0;
            interface environment {
                get-environment: func() -> list<tuple<string, string>>;
            }
            world leaky {
                import session-archiver:policy/clock@0.2.0;
                import environment;
                export session-archiver:policy/policy@0.2.0;
            }
        "#;
        let component = component_for(Some(wit), "leaky");
        let err = check_imports(&component).expect_err("wasi import must be refused");
        let msg = format!("{err:#}");
        assert!(msg.contains("wasi:cli/environment@0.2.0"), "{msg}");
        assert!(
            !msg.contains("policy/clock"),
            "our own import is not blamed: {msg}"
        );
    }

    #[test]
    fn a_bare_function_import_is_rejected() {
        let wit = r#"
            package other:thing;
            world bare {
                import session-archiver:policy/log@0.2.0;
                import sneak: func() -> u32;
                export session-archiver:policy/policy@0.2.0;
            }
        "#;
        let component = component_for(Some(wit), "bare");
        let err = check_imports(&component).expect_err("bare import must be refused");
        assert!(format!("{err:#}").contains("sneak"), "{err:#}");
    }

    #[test]
    fn a_component_that_exports_no_policy_is_rejected() {
        let wit = r#"
            package other:empty;
            world nothing {
                import session-archiver:policy/log@0.2.0;
            }
        "#;
        let component = component_for(Some(wit), "nothing");
        let err = check_imports(&component).expect_err("no policy export");
        assert!(format!("{err:#}").contains("does not export"), "{err:#}");
    }

    #[test]
    fn garbage_bytes_are_not_a_component() {
        assert!(check_imports(b"not wasm at all").is_err());
    }

    #[test]
    fn cdylib_members_are_found_in_cargo_metadata() {
        let json = br#"{"packages":[
            {"name":"archiver-kit","targets":[{"name":"archiver_kit","crate_types":["lib"]}]},
            {"name":"inactivity","targets":[{"name":"inactivity","crate_types":["cdylib","rlib"]},
                                            {"name":"select","crate_types":["bin"]}]},
            {"name":"my-budget","targets":[{"name":"my-budget","crate_types":["cdylib"]}]}
        ]}"#;
        let crates = parse_policy_crates(json).unwrap();
        assert_eq!(
            crates,
            vec![
                PolicyCrate {
                    package: "inactivity".into(),
                    lib_name: "inactivity".into(),
                    kind: CrateKind::Policy,
                },
                PolicyCrate {
                    package: "my-budget".into(),
                    lib_name: "my_budget".into(),
                    kind: CrateKind::Policy,
                },
            ]
        );
    }

    #[test]
    fn a_crate_marked_probe_is_a_probe_not_a_policy() {
        let json = br#"{"packages":[
            {"name":"deflate-probe","metadata":{"session-archiver":{"kind":"probe"}},
             "targets":[{"name":"deflate_probe","crate_types":["cdylib","rlib"]}]},
            {"name":"budget","metadata":{"session-archiver":{"kind":"policy"}},
             "targets":[{"name":"budget","crate_types":["cdylib"]}]}
        ]}"#;
        let kinds: Vec<(String, CrateKind)> = parse_policy_crates(json)
            .unwrap()
            .into_iter()
            .map(|c| (c.package, c.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("budget".into(), CrateKind::Policy),
                ("deflate-probe".into(), CrateKind::Probe),
            ]
        );
    }

    #[test]
    fn an_unknown_crate_kind_is_refused_naming_the_crate() {
        let json = br#"{"packages":[
            {"name":"oops","metadata":{"session-archiver":{"kind":"prob"}},
             "targets":[{"name":"oops","crate_types":["cdylib"]}]}
        ]}"#;
        let err = parse_policy_crates(json).expect_err("a misspelt kind must not build a policy");
        let msg = format!("{err:#}");
        assert!(msg.contains("oops") && msg.contains("\"prob\""), "{msg}");
    }

    #[test]
    fn the_guest_workspace_has_the_deflate_probe_as_its_only_probe() {
        // The bench loads target/policies/probe/deflate-probe.wasm; were the crate a policy,
        // build-policies would try to make a component of a module with no WIT in it.
        let crates = policy_crates(&cmd::workspace_root().join("guest/Cargo.toml")).unwrap();
        let probes: Vec<&str> = crates
            .iter()
            .filter(|c| c.kind == CrateKind::Probe)
            .map(|c| c.package.as_str())
            .collect();
        assert_eq!(probes, ["deflate-probe"]);
        assert!(crates
            .iter()
            .any(|c| c.package == "inactivity" && c.kind == CrateKind::Policy));
    }
}
