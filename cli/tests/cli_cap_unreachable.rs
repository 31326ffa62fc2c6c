//! Pinned archives over the cap, as a user meets them: `plan`, `sweep` and `status` say the cap
//! is unreachable and why (text and JSON), and the sweep keeps every fresh archive.

mod cli_support;

use std::path::Path;

use cli_support::{archiver, demo, json, ok};
use serde_json::Value;

/// Sets `session:archive_pinned` in a block's meta, the way the app stores it (a JSON BLOB).
fn pin(data: &Path, id: &str) {
    cli_support::set_meta_key(data, id, "session:archive_pinned", Value::Bool(true));
}

fn args<'a>(config: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--config", config];
    v.extend_from_slice(rest);
    v
}

#[test]
fn plan_sweep_and_status_say_the_cap_is_unreachable_and_the_sweep_keeps_fresh_archives() {
    let (_tmp, data) = demo();
    let plan = json(&data, &["plan", "--json"]);
    let idle: Vec<String> = plan["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "archive")
        .map(|d| d["target"].as_str().unwrap().to_string())
        .collect();
    assert!(idle.len() >= 3, "{plan}");
    let held = &idle[0];
    let mut c = archiver(&data);
    c.args(["archive", held]);
    ok(c);
    pin(&data, held);
    let pinned_bytes = std::fs::metadata(data.join(format!("archives/{held}.jsonl.gz")))
        .unwrap()
        .len();
    let config = format!(r#"{{"max_total_bytes": {}}}"#, pinned_bytes / 2);
    let expected = serde_json::json!({"pinned_bytes": pinned_bytes, "cap": pinned_bytes / 2});

    let plan = json(&data, &args(&config, &["plan", "--json"]));
    assert_eq!(plan["cap_unreachable"], expected, "{plan}");
    let mut c = archiver(&data);
    c.args(args(&config, &["plan"]));
    let text = ok(c);
    assert!(
        text.contains("cap unreachable: pinned archives hold"),
        "{text}"
    );

    let sweep = json(&data, &args(&config, &["sweep", "--json"]));
    assert_eq!(sweep["cap_unreachable"], expected, "{sweep}");
    assert_eq!(
        sweep["archived"].as_u64().unwrap(),
        idle.len() as u64 - 1,
        "{sweep}"
    );
    assert_eq!(sweep["prune"]["tombstoned"], 0, "{sweep}");
    for id in &idle {
        assert!(
            data.join(format!("archives/{id}.jsonl.gz")).is_file(),
            "{id}'s only copy was pruned"
        );
    }

    let status = json(&data, &args(&config, &["status", "--json"]));
    assert_eq!(status["cap_unreachable"], expected, "{status}");
    let mut c = archiver(&data);
    c.args(args(&config, &["status"]));
    let text = ok(c);
    assert!(
        text.contains("cap unreachable: pinned archives hold"),
        "{text}"
    );
    let mut c = archiver(&data);
    c.args(args(&config, &["sweep"]));
    let text = ok(c);
    assert!(
        text.contains("cap unreachable: pinned archives hold"),
        "{text}"
    );

    // With a cap the pins fit under, nothing is reported.
    let status = json(&data, &["status", "--json"]);
    assert_eq!(status["cap_unreachable"], Value::Null, "{status}");
}
