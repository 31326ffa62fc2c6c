//! Loading: the errors users see for files that are not our policies, and `info` on load.

use session_archiver::bindings::WIT_VERSION;
use session_archiver::error::{ArchiverError, Op};
use session_archiver_testkit::components::*;
use session_archiver_testkit::shared_runtime as runtime;

#[test]
fn garbage_bytes_are_refused_as_not_webassembly() {
    let err = runtime()
        .load_bytes(b"#!/bin/sh\necho hello\n", "garbage.wasm")
        .unwrap_err();
    assert!(matches!(err, ArchiverError::Load { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("garbage.wasm") && msg.contains("not a WebAssembly file"),
        "{msg}"
    );
}

#[test]
fn an_empty_file_is_refused_as_not_webassembly() {
    let err = runtime().load_bytes(b"", "empty.wasm").unwrap_err();
    assert!(err.to_string().contains("not a WebAssembly file"), "{err}");
}

#[test]
fn a_missing_file_names_the_path() {
    let err = runtime()
        .load_file(std::path::Path::new("/nonexistent/p.wasm"))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/p.wasm") && msg.contains("cannot read"),
        "{msg}"
    );
}

#[test]
fn a_core_module_is_refused_as_not_a_component() {
    let module = wat::parse_str("(module (func (export \"f\")))").unwrap();
    let err = runtime().load_bytes(&module, "core.wasm").unwrap_err();
    assert!(
        matches!(err, ArchiverError::NotAComponent { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("not a component"), "{err}");
}

#[test]
fn a_truncated_component_is_a_load_error_not_a_panic() {
    let mut bytes = our_world_component(WIT_VERSION);
    bytes.truncate(bytes.len() / 2);
    let err = runtime().load_bytes(&bytes, "half.wasm").unwrap_err();
    assert!(matches!(err, ArchiverError::Load { .. }), "{err:?}");
}

#[test]
fn a_component_of_another_world_is_refused_naming_its_foreign_import() {
    let err = runtime()
        .load_bytes(&wrong_world_component(), "other.wasm")
        .unwrap_err();
    assert!(matches!(err, ArchiverError::WrongWorld { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("targets another world"), "{msg}");
    assert!(msg.contains("other:thing/environment@1.0.0"), "{msg}");
}

#[test]
fn a_component_without_the_policy_export_is_refused_as_another_world() {
    let err = runtime()
        .load_bytes(&exportless_component(), "lib.wasm")
        .unwrap_err();
    assert!(matches!(err, ArchiverError::WrongWorld { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!(
            "does not export session-archiver:policy/policy@{WIT_VERSION}"
        )),
        "{err}"
    );
}

#[test]
fn a_policy_built_for_wit_0_1_0_is_refused_as_incompatible() {
    // 0.1.0 had the in-guest `sweep` and `recover(option<string>)`; this host speaks 0.2.0.
    assert_eq!(WIT_VERSION, "0.2.0");
    let err = runtime()
        .load_bytes(&our_world_component("0.1.0"), "v1.wasm")
        .unwrap_err();
    let ArchiverError::Incompatible {
        found, expected, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(found, "session-archiver:policy@0.1.0");
    assert_eq!(expected, "session-archiver:policy@0.2.0");
    assert!(
        err.to_string()
            .contains("was built for WIT session-archiver:policy@0.1.0"),
        "{err}"
    );
}

#[test]
fn a_policy_whose_info_traps_is_rejected_naming_the_operation() {
    // A dummy component of our world: every export is `unreachable`.
    let err = runtime()
        .load_bytes(&our_world_component(WIT_VERSION), "dummy.wasm")
        .unwrap_err();
    let ArchiverError::Trap { op, policy, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*op, Op::Info);
    assert_eq!(policy, "dummy.wasm");
    assert!(err.to_string().contains("trapped in info"), "{err}");
}
