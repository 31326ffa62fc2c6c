//! `archiver run`: periodic sweeps, live policy swaps on a file change or SIGHUP, a broken new
//! file rejected while the old policy keeps serving, and a clean stop on SIGTERM.

mod cli_support;

use std::path::Path;

use cli_support::running::Running;
use cli_support::{archiver, demo, policy};
use sha2::{Digest, Sha256};

/// The same component with a custom section appended: still a valid policy (same name and
/// version), but different bytes, so a different sha256.
fn variant(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = b"cli-test";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(tag.as_bytes());
    assert!(section.len() < 128, "one-byte LEB128 size");
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8);
    out.extend_from_slice(&section);
    out
}

fn sha12(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))[..12].to_string()
}

/// Replaces `path` atomically, the way an installer would.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn run_swaps_a_changed_policy_file_between_sweeps_and_rejects_a_broken_one() {
    let (tmp, data) = demo();
    let original = std::fs::read(policy("inactivity")).unwrap();
    let v2 = variant(&original, "v2");
    let file = tmp.path().join("policy.wasm");
    std::fs::write(&file, &original).unwrap();

    let mut c = archiver(&data);
    c.arg("--policy").arg(&file).args([
        "run",
        "--every",
        "300ms",
        "--max-sweeps",
        "6",
        "--watch-interval",
        "20ms",
    ]);
    let mut run = Running::start(c);
    let first = run.wait_for("sweep 1:");
    assert!(first.contains(&sha12(&original)), "{first}");
    assert!(first.contains("archived "), "{first}");

    replace(&file, &v2);
    let swapped = run.wait_for("policy swapped");
    assert!(
        swapped.contains(&format!(
            "inactivity@0.1.0 ({}) -> inactivity@0.1.0 ({})",
            sha12(&original),
            sha12(&v2)
        )),
        "{swapped}"
    );
    let next = run.wait_for("sweep ");
    assert!(
        next.contains(&sha12(&v2)),
        "the sweep after the swap uses the new policy: {next}"
    );

    std::fs::write(&file, b"garbage, not a component").unwrap();
    let rejected = run.wait_for("policy rejected");
    assert!(
        rejected.contains(&sha12(&v2)) && rejected.contains("keeps serving"),
        "{rejected}"
    );
    let after = run.wait_for("sweep ");
    assert!(
        after.contains(&sha12(&v2)),
        "the old policy keeps serving: {after}"
    );

    let (code, lines) = run.finish();
    assert_eq!(code, 0, "{}", lines.join("\n"));
    let sweeps = lines.iter().filter(|l| l.contains("sweep ")).count();
    assert!(
        lines.iter().any(|l| l.contains("sweep 6:")) && sweeps >= 6,
        "{}",
        lines.join("\n")
    );
    assert!(lines.iter().any(|l| l.contains("done: 6 sweeps")));
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("sweep") && l.contains("failed 1")),
        "{}",
        lines.join("\n")
    );
}

#[test]
fn sighup_reloads_the_policy_and_sigterm_stops_between_sweeps() {
    let (tmp, data) = demo();
    let original = std::fs::read(policy("inactivity")).unwrap();
    let v3 = variant(&original, "v3");
    let file = tmp.path().join("policy.wasm");
    std::fs::write(&file, &original).unwrap();

    // An hour between sweeps and between polls: only the signals can make anything happen.
    let mut c = archiver(&data);
    c.arg("--policy")
        .arg(&file)
        .args(["run", "--every", "1h", "--watch-interval", "1h"]);
    let mut run = Running::start(c);
    run.wait_for("sweep 1:");

    std::fs::write(&file, &v3).unwrap();
    run.signal("HUP");
    let swapped = run.wait_for("policy swapped");
    assert!(swapped.contains(&sha12(&v3)), "{swapped}");

    run.signal("TERM");
    let (code, lines) = run.finish();
    assert_eq!(code, 0, "{}", lines.join("\n"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stopping on signal after 1 sweeps")),
        "{}",
        lines.join("\n")
    );
}
