//! Exit codes and the one-line error message, both derived from the error chain.

use std::process::ExitCode;

use session_archiver::data_dir::DataDirError;
use session_archiver::error::{ArchiverError, Op, PolicyError};

use crate::output::format_ms;

/// Documented in `--help` (see `cli.rs`).
pub const FAILED: u8 = 1;
pub const NOT_FOUND: u8 = 3;
pub const POLICY_UNUSABLE: u8 = 4;
pub const PARTIAL: u8 = 5;

/// No policy file was given and none was found where the default one is built.
#[derive(Debug, thiserror::Error)]
#[error(
    "no policy: inactivity.wasm is not in {searched}; run `cargo xtask build-policies` or pass --policy FILE"
)]
pub struct NoDefaultPolicy {
    pub searched: String,
}

/// `--config @FILE` could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the config file {path}: {source}")]
pub struct ConfigFileError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// A `--strict` run in which some sessions failed (their errors were already reported).
#[derive(Debug, thiserror::Error)]
#[error("{0} failed (--strict)")]
pub struct PartialFailure(pub String);

/// Whoever read our stdout went away (`archiver plan | head`): not an error worth a message.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The exit code for an error: the first error in the chain that we recognise decides.
pub fn code_for(err: &anyhow::Error) -> ExitCode {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ArchiverError>() {
            return ExitCode::from(archiver_code(e));
        }
        if let Some(e) = cause.downcast_ref::<DataDirError>() {
            return ExitCode::from(match e {
                DataDirError::Missing { .. } => NOT_FOUND,
                _ => FAILED,
            });
        }
        if cause.is::<NoDefaultPolicy>() || cause.is::<ConfigFileError>() {
            return ExitCode::from(POLICY_UNUSABLE);
        }
        if cause.is::<PartialFailure>() {
            return ExitCode::from(PARTIAL);
        }
    }
    ExitCode::from(FAILED)
}

fn archiver_code(e: &ArchiverError) -> u8 {
    match e {
        ArchiverError::Load { .. }
        | ArchiverError::NotAComponent { .. }
        | ArchiverError::WrongWorld { .. }
        | ArchiverError::Incompatible { .. } => POLICY_UNUSABLE,
        ArchiverError::Policy { error, .. } => match error {
            PolicyError::NotFound(_) => NOT_FOUND,
            PolicyError::InvalidConfig(_) => POLICY_UNUSABLE,
            _ => FAILED,
        },
        _ => FAILED,
    }
}

/// The error as one line: the contexts, then the first error we know how to say fully (its own
/// message already includes its sources, so the chain stops there).
pub fn render(err: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ArchiverError>() {
            parts.push(render_archiver(e));
            break;
        }
        let msg = cause.to_string();
        // thiserror messages often embed their source (`...: {source}`): say it once.
        if !parts.last().is_some_and(|p: &String| p.contains(&msg)) {
            parts.push(msg);
        }
    }
    // Messages from stores and policies may carry newlines; the contract is one line.
    parts.join(": ").replace('\n', " ")
}

/// A policy error says what was being done to which session, why, and which policy said so;
/// times are shown as dates.
pub fn render_archiver(e: &ArchiverError) -> String {
    let ArchiverError::Policy {
        policy,
        op,
        target,
        error,
    } = e
    else {
        return e.to_string();
    };
    let why = match error {
        PolicyError::Pruned(at) => format!("its only archive was pruned at {}", format_ms(*at)),
        other => session_archiver::archiver::describe(other),
    };
    let doing = match op {
        Op::Info => "asking the policy who it is",
        Op::ValidateConfig => "checking the config",
        Op::Archive => "archiving",
        Op::Restore => "restoring",
        Op::Export => "exporting",
        Op::Plan => "planning",
        Op::Prune => "pruning",
        Op::Recover => "recovering",
    };
    match target {
        Some(t) => format!("{doing} {t}: {why} (policy {policy})"),
        None => format!("{doing}: {why} (policy {policy})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pruned_restore_names_the_session_the_date_and_the_policy() {
        let e = ArchiverError::Policy {
            policy: "inactivity@0.1.0".into(),
            op: Op::Restore,
            target: Some("abc".into()),
            error: PolicyError::Pruned(1_767_225_600_000),
        };
        let line = render(&anyhow::Error::new(e));
        assert_eq!(
            line,
            "restoring abc: its only archive was pruned at 2026-01-01T00:00:00Z (policy inactivity@0.1.0)"
        );
    }

    #[test]
    fn not_found_and_load_errors_get_their_own_exit_codes() {
        let nf = ArchiverError::Policy {
            policy: "p@1".into(),
            op: Op::Restore,
            target: Some("x".into()),
            error: PolicyError::NotFound("x".into()),
        };
        assert_eq!(
            code_for(&anyhow::Error::new(nf).context("outer")),
            ExitCode::from(NOT_FOUND)
        );
        let load = ArchiverError::Load {
            label: "g.wasm".into(),
            msg: "garbage".into(),
        };
        assert_eq!(
            code_for(&anyhow::Error::new(load)),
            ExitCode::from(POLICY_UNUSABLE)
        );
        assert_eq!(code_for(&anyhow::anyhow!("plain")), ExitCode::from(FAILED));
    }
}
