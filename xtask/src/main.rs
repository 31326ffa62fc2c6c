//! `cargo xtask`: the project's build tool (the usual xtask convention: plain Rust, no make).
//!
//! - `build-policies`: guest crates → `target/policies/<name>.wasm` components, import-checked.
//! - `test`: the one test command (policies, guest unit tests, host workspace tests).
//! - `demo`: builds everything, makes a demo data directory and runs the archiver on it.
//! - `bench`: the performance table (release build), optionally written into the README.

mod bench;
mod cmd;
mod demo;
mod policies;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use policies::Route;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "session-archiver's build tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build every policy in guest/ (release) into target/policies/<name>.wasm components.
    BuildPolicies {
        /// Force a toolchain route instead of detecting one (to test the Debian fallback).
        #[arg(long, value_enum)]
        route: Option<Route>,
    },
    /// Run all the tests: build the policies, guest unit tests, then the host workspace tests.
    Test {
        /// Force a toolchain route for the policy build.
        #[arg(long, value_enum)]
        route: Option<Route>,
    },
    /// Build everything, create demo data and run the archiver on it.
    Demo {
        /// Where to create the demo data (default: target/demo-data, recreated each run).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Agent sessions to create.
        #[arg(long, default_value_t = 300)]
        sessions: usize,
        /// Size multiplier (1.0: a few KB to several MB per session, a few of 20–50 MB).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Force a toolchain route for the policy build.
        #[arg(long, value_enum)]
        route: Option<Route>,
    },
    /// Benchmark (release build): throughput, memory, selection, load/swap, parallel sweep,
    /// against the seed-style native baseline and gzip/pigz; one table, also into README.md.
    Bench(bench::BenchArgs),
    /// One operation in a fresh process, for the benchmark's peak-RSS rows.
    #[command(hide = true)]
    BenchProbe(bench::ProbeArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let root = cmd::workspace_root();
    match cli.command {
        Command::BuildPolicies { route } => {
            cmd::section("build policies");
            policies::build_policies(&root, route)?;
        }
        Command::Test { route } => test(&root, route)?,
        Command::Demo {
            data_dir,
            sessions,
            scale,
            route,
        } => demo::run(&root, data_dir, sessions, scale, route)?,
        Command::Bench(args) => bench::run(&root, &args)?,
        Command::BenchProbe(args) => bench::probe(&args)?,
    }
    Ok(())
}

/// Every test suite, in dependency order, stopping at the first failure.
fn test(root: &std::path::Path, route: Option<Route>) -> Result<()> {
    let started = std::time::Instant::now();
    cmd::section("1/3 build policies");
    policies::build_policies(root, route)?;

    cmd::section("2/3 guest unit tests (native)");
    cmd::run(
        cmd::cargo()
            .args(["test", "--workspace", "--manifest-path"])
            .arg(root.join("guest/Cargo.toml"))
            .arg("--target-dir")
            .arg(root.join("guest/target")),
    )?;

    cmd::section("3/3 host workspace tests");
    cmd::run(cmd::cargo().current_dir(root).args(["test", "--workspace"]))?;

    println!(
        "\nall tests passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
