//! `archiver run` refuses a policy file that group or others can write (its code runs on every
//! session), says so in the log, and loads it anyway only with `--allow-insecure-policy-file`.

mod cli_support;

use std::os::unix::fs::PermissionsExt;

use cli_support::{archiver, code, demo, policy, run, stderr};

fn insecure_copy(tmp: &std::path::Path) -> std::path::PathBuf {
    let file = tmp.join("policy.wasm");
    std::fs::copy(policy("inactivity"), &file).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    file
}

#[test]
fn run_refuses_a_policy_file_writable_by_others_and_says_why() {
    let (tmp, data) = demo();
    let file = insecure_copy(tmp.path());
    let mut c = archiver(&data);
    c.arg("--policy")
        .arg(&file)
        .args(["run", "--every", "1h", "--max-sweeps", "1"]);
    let out = run(c);
    let err = stderr(&out);
    assert_ne!(code(&out), 0, "{err}");
    assert!(err.contains("writable by group or others"), "{err}");
    assert!(err.contains("policy.wasm"), "{err}");
    assert!(err.contains("--allow-insecure-policy-file"), "{err}");
    assert!(!err.contains("sweep 1:"), "{err}");
}

#[test]
fn run_refuses_a_policy_file_in_a_directory_writable_by_others() {
    let (tmp, data) = demo();
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let file = shared.join("policy.wasm");
    std::fs::copy(policy("inactivity"), &file).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut c = archiver(&data);
    c.arg("--policy")
        .arg(&file)
        .args(["run", "--every", "1h", "--max-sweeps", "1"]);
    let out = run(c);
    let err = stderr(&out);
    assert_ne!(code(&out), 0, "{err}");
    assert!(err.contains("its directory"), "{err}");
}

#[test]
fn run_loads_an_insecure_policy_file_when_the_flag_allows_it_and_warns() {
    let (tmp, data) = demo();
    let file = insecure_copy(tmp.path());
    let mut c = archiver(&data);
    c.arg("--policy").arg(&file).args([
        "run",
        "--every",
        "1h",
        "--max-sweeps",
        "1",
        "--allow-insecure-policy-file",
    ]);
    let out = run(c);
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert!(err.contains("insecure policy file"), "{err}");
    assert!(err.contains("sweep 1:"), "{err}");
}

#[test]
fn run_rejects_a_swap_to_a_policy_file_made_writable_by_others_and_keeps_serving() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let (tmp, data) = demo();
    let file = tmp.path().join("policy.wasm");
    let original = std::fs::read(policy("inactivity")).unwrap();
    std::fs::write(&file, &original).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = archiver(&data);
    c.arg("--policy").arg(&file).args([
        "run",
        "--every",
        "300ms",
        "--max-sweeps",
        "4",
        "--watch-interval",
        "20ms",
    ]);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn archiver run");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let first = line.contains("sweep 1:");
        seen.push(line);
        if first {
            break;
        }
    }
    // New bytes (a custom section appended), and writable by anyone.
    let mut changed = original.clone();
    changed.extend_from_slice(&[0, 5, 4, b't', b'e', b's', b't']);
    // Replaced atomically, so the watcher never sees the new bytes with the old mode.
    let next = tmp.path().join("policy.next");
    std::fs::write(&next, &changed).unwrap();
    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::rename(&next, &file).unwrap();
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    let log = seen.join("\n");
    assert!(status.success(), "{log}");
    assert!(
        seen.iter()
            .any(|l| l.contains("policy rejected") && l.contains("writable by group or others")),
        "{log}"
    );
    assert!(!log.contains("policy swapped"), "{log}");
    assert!(log.contains("sweep 4:"), "{log}");
}
