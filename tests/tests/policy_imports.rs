//! Guards the sandbox's first promise: a built policy imports only this project's interfaces —
//! no `wasi:*`, no bare functions — so it can touch nothing the host did not hand it.

use session_archiver_testkit::policy_bytes;
use wit_component::DecodedWasm;

/// Every import of the component at `target/policies/<name>.wasm`, as `package/interface` names.
fn imports_of(name: &str) -> Vec<String> {
    let bytes = policy_bytes(name);
    let DecodedWasm::Component(resolve, world) =
        wit_component::decode(&bytes).expect("decode the component")
    else {
        panic!("{name}.wasm is not a component");
    };
    resolve.worlds[world]
        .imports
        .keys()
        .map(|key| resolve.name_world_key(key))
        .collect()
}

#[test]
fn every_built_policy_imports_only_session_archiver_interfaces() {
    for policy in ["inactivity", "budget", "template", "hostile"] {
        let imports = imports_of(policy);
        assert!(!imports.is_empty(), "{policy}: no imports decoded");
        for import in &imports {
            assert!(
                import.starts_with("session-archiver:policy/") && import.ends_with("@0.2.0"),
                "{policy} imports {import}, which is not one of our interfaces"
            );
            assert!(!import.starts_with("wasi:"), "{policy} imports {import}");
        }
    }
}

#[test]
fn the_default_policy_imports_exactly_the_seven_host_interfaces() {
    let mut imports = imports_of("inactivity");
    imports.sort();
    let expected: Vec<String> = [
        "archive-dir",
        "clock",
        "export-sink",
        "files",
        "log",
        "members",
        "objects",
    ]
    .iter()
    .map(|i| format!("session-archiver:policy/{i}@0.2.0"))
    .collect();
    assert_eq!(imports, expected);
}
