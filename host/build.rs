//! Works around parse errors in the shared WIT until `wit/` is fixed (reported to the lead; the
//! guest kit's build.rs applies the identical fix).
//!
//! As written, `wit/` parses with no WIT parser: `list` and `export` are keywords (spelled `%list`
//! / `%export`, which does not change the names in the component), and in `policy` the functions
//! `info` and `plan` share their names with records. This copies `../wit/*.wit` to `wit-escaped/`
//! with the escapes and the records renamed `policy-info` and `sweep-plan`. Once `wit/` carries the
//! same fix every replacement is a no-op, and this file and `wit-escaped/` can go.

use std::fs;
use std::path::Path;

/// (from, to) textual replacements, applied in order.
const FIXES: [(&str, &str); 6] = [
    ("    list: func", "    %list: func"),
    ("    export: func", "    %export: func"),
    ("record info {", "record policy-info {"),
    ("info: func() -> info;", "info: func() -> policy-info;"),
    ("record plan {", "record sweep-plan {"),
    ("result<plan, error>", "result<sweep-plan, error>"),
];

fn main() {
    let src = Path::new("../wit");
    let dst = Path::new("wit-escaped");
    println!("cargo:rerun-if-changed=../wit");
    fs::create_dir_all(dst).expect("create wit-escaped/");
    for entry in fs::read_dir(src).expect("read ../wit") {
        let path = entry.expect("read ../wit entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("wit") {
            continue;
        }
        let mut text = fs::read_to_string(&path).expect("read a .wit file");
        for (from, to) in FIXES {
            if !text.contains(to) {
                text = text.replace(from, to);
            }
        }
        let out = dst.join(path.file_name().expect("a file name"));
        if fs::read_to_string(&out).ok().as_deref() != Some(text.as_str()) {
            fs::write(&out, text).expect("write wit-escaped/");
        }
    }
}
