//! One module per subcommand; each returns `Ok(())` or an error for `main` to report.

mod demo;
mod policy;
mod recover;
mod run;
mod session;
mod status;
mod sweep;

use anyhow::Result;

use crate::cli::{Cli, Command, PolicyCommand};

/// Runs the parsed command line.
pub fn dispatch(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Plan { json, all } => sweep::plan(g, json, all),
        Command::Sweep { json, strict } => sweep::sweep(g, json, strict),
        Command::Archive { id, json } => session::archive(g, &id, json),
        Command::Restore { id, json } => session::restore(g, &id, json),
        Command::Export { id, output } => session::export(g, &id, output.as_deref()),
        Command::Status { json } => status::status(g, json),
        Command::Recover { id, json, strict } => recover::recover(g, id.as_deref(), json, strict),
        Command::Policy(PolicyCommand::Info { file, json }) => policy::info(g, &file, json),
        Command::Run {
            every,
            max_sweeps,
            watch_interval,
            allow_insecure_policy_file,
        } => run::run(
            g,
            every.into(),
            max_sweeps,
            watch_interval.into(),
            allow_insecure_policy_file,
        ),
        Command::Demo {
            sessions,
            scale,
            seed,
            max_age_days,
            force,
        } => demo::demo(
            g,
            demo::Params {
                sessions,
                scale,
                seed,
                max_age_days,
                force,
            },
        ),
    }
}
