//! Hand-made policy components for the loader, limit and swap tests: other worlds, wrong
//! versions, and tiny WAT policies whose exports do nothing (or loop, or allocate), so the
//! sandbox can be tested without any guest toolchain.

use session_archiver::bindings::WIT_VERSION;

use crate::workspace_root as workspace;

/// `bytes` with a custom section appended: the same code under a different SHA-256, i.e. "a
/// new version" of a policy for swap tests.
pub fn with_custom_section(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = b"archiver-test";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    let mut len = payload.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&payload);
    out
}

/// A component of another world: imports `wasi:cli/environment` and exports `run`.
pub fn wrong_world_component() -> Vec<u8> {
    component_from_wit(
        "package other:thing@1.0.0;\n\
         interface environment { get-environment: func() -> list<tuple<string, string>>; }\n\
         world other { import environment; export run: func(); }",
        "other",
    )
}

/// A component that targets our world but exports nothing (a library of imports only).
pub fn exportless_component() -> Vec<u8> {
    component_from_wit(
        "package other:lib@1.0.0;\nworld lib { export hello: func() -> string; }",
        "lib",
    )
}

/// A dummy component of the `archive-policy` world from the host's WIT, with the package
/// version replaced by `version`. Its functions are `unreachable`, so `info` traps.
pub fn our_world_component(version: &str) -> Vec<u8> {
    let dir = workspace().join("wit");
    let tmp = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(&dir).expect("read wit/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read wit");
        let text = text.replace(&format!("@{WIT_VERSION}"), &format!("@{version}"));
        std::fs::write(tmp.path().join(path.file_name().expect("name")), text).expect("write wit");
    }
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_dir(tmp.path()).expect("parse wit");
    let world = resolve
        .select_world(&[pkg], Some("archive-policy"))
        .expect("world");
    encode(resolve, world)
}

fn component_from_wit(wit: &str, world: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve.push_str("test.wit", wit).expect("parse wit");
    let world = resolve.select_world(&[pkg], Some(world)).expect("world");
    encode(resolve, world)
}

fn encode(resolve: wit_parser::Resolve, world: wit_parser::WorldId) -> Vec<u8> {
    let module = wit_component::dummy_module(
        &resolve,
        world,
        wit_parser::ManglingAndAbi::Legacy(wit_parser::LiftLowerAbi::Sync),
    );
    embed_and_encode(module, &resolve, world)
}

/// Embeds `world`'s type information in a core module and turns it into a component.
fn embed_and_encode(
    mut module: Vec<u8>,
    resolve: &wit_parser::Resolve,
    world: wit_parser::WorldId,
) -> Vec<u8> {
    wit_component::embed_component_metadata(
        &mut module,
        resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("embed metadata");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module")
        .validate(true)
        .encode()
        .expect("encode component")
}

/// A hand-written policy component whose `info` runs `info_body` (WAT instructions ending with
/// an `i32` on the stack, or diverging); every other export is `unreachable`. Lets the sandbox
/// limits be tested without any guest toolchain.
pub fn policy_with_info_body(info_body: &str) -> Vec<u8> {
    let u = "unreachable";
    hand_made_policy(info_body, [u, u, u, u, u, u, u])
}

/// A hand-written policy that does nothing successfully: `info` is name "wat", version
/// `version`; every other export returns a zeroed result area, which the canonical ABI reads as
/// `ok` with all-zero fields and empty lists. `plan` first calls `clock.now-ms`, so a test
/// clock can hold it in flight.
pub fn null_policy(version: char) -> Vec<u8> {
    let info = INFO_OK.replace("(i32.const 49)", &format!("(i32.const {})", version as u32));
    let z = "(i32.const 4096)";
    let plan = "(drop (call $now)) (i32.const 4096)";
    hand_made_policy(&info, [z, z, z, z, plan, z, z])
}

/// Bodies for: validate-config, archive (and compress-member, verify-member), restore (and
/// inflate-member), export,
/// plan, prune, recover.
fn hand_made_policy(info_body: &str, bodies: [&str; 7]) -> Vec<u8> {
    let p = format!("session-archiver:policy/policy@{WIT_VERSION}#");
    let [validate, archive, restore, export, plan, prune, recover] = bodies;
    let wat = format!(
        r#"(module
          (import "session-archiver:policy/clock@{WIT_VERSION}" "now-ms" (func $now (result i64)))
          (memory (export "memory") 1)
          (global $heap (mut i32) (i32.const 8192))
          (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
            (local $r i32)
            (local.set $r (global.get $heap))
            (global.set $heap (i32.add (global.get $heap) (local.get 3)))
            (local.get $r))
          (func (export "{p}info") (result i32) {info_body})
          (func (export "{p}validate-config") (param i32 i32) (result i32) {validate})
          (func (export "{p}archive") (param i32 i32 i32 i32) (result i32) {archive})
          (func (export "{p}restore") (param i32 i32 i32 i32) (result i32) {restore})
          (func (export "{p}export") (param i32 i32 i32 i32) (result i32) {export})
          (func (export "{p}plan") (param i32 i32 i32) (result i32) {plan})
          (func (export "{p}prune") (param i32 i32) (result i32) {prune})
          (func (export "{p}recover") (param i32 i32 i32 i32) (result i32) {recover})
          (func (export "{p}compress-member") (param i32 i32 i32 i32 i64 i64) (result i32) {archive})
          (func (export "{p}verify-member") (param i32 i32 i32 i32 i64 i32) (result i32) {archive})
          (func (export "{p}inflate-member") (param i32 i32 i32 i32 i64) (result i32) {restore})
        )"#
    );
    policy_component_from_wat(&wat)
}

/// Turns a WAT core module of the `archive-policy` world into a policy component.
pub fn policy_component_from_wat(wat: &str) -> Vec<u8> {
    let module = wat::parse_str(wat).expect("wat");
    let dir = workspace().join("wit");
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_dir(&dir).expect("parse wit");
    let world = resolve
        .select_world(&[pkg], Some("archive-policy"))
        .expect("world");
    embed_and_encode(module, &resolve, world)
}

/// `info` returning name "wat", version "1", description "" from static data.
pub const INFO_OK: &str = r#"
    ;; record at 16: name (ptr 64, len 3), version (ptr 67, len 1), description (ptr 68, len 0)
    (i32.store (i32.const 16) (i32.const 64))
    (i32.store (i32.const 20) (i32.const 3))
    (i32.store (i32.const 24) (i32.const 67))
    (i32.store (i32.const 28) (i32.const 1))
    (i32.store (i32.const 32) (i32.const 68))
    (i32.store (i32.const 36) (i32.const 0))
    (i32.store8 (i32.const 64) (i32.const 119))
    (i32.store8 (i32.const 65) (i32.const 97))
    (i32.store8 (i32.const 66) (i32.const 116))
    (i32.store8 (i32.const 67) (i32.const 49))
    (i32.const 16)"#;

/// `info` that spins forever without calling the host.
pub const INFO_LOOP: &str = "(loop $l (br $l)) unreachable";

/// `info` that grows memory a page at a time until refused, then traps.
pub const INFO_ALLOC: &str = r#"
    (loop $l
      (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable"#;
