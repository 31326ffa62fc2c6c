//! `archiver`: the command line of session-archiver. See `archiver --help`.

/// `println!` that returns the write error instead of panicking: a closed pipe (`| head`) must
/// end the command quietly, not crash it.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
    }};
}

mod cli;
mod commands;
mod exit;
mod output;
mod progress;
mod setup;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(&cli.global);
    match commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if exit::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", exit::render(&e));
            exit::code_for(&e)
        }
    }
}

/// Logs go to stderr (stdout is for results). By default only this binary's informational
/// lines show (sweep summaries and policy swaps in `run`) plus warnings from the library;
/// `-v`/`-q` move that, and `RUST_LOG` overrides both.
fn init_logging(g: &cli::Global) {
    let default = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) => "warn,archiver=info",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| progress::LogWriter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
