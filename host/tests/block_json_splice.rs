//! The meta splicer on its own: examples that show the exact bytes it writes, and property tests
//! over random blocks (odd numbers, escapes, whitespace, unknown fields, key orders) and random
//! patches. The properties: the result parses and its meta is the merge of the old meta and the
//! patch, and every byte outside the patched keys is what it was (checked against an oracle
//! that renders the expected text from the generator's own pieces, not by scanning).

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{json, Value};
use session_archiver::store::block_json::{splice_meta, BlockJsonError};
use session_archiver::store::Meta;

fn meta(v: Value) -> Meta {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn splice(doc: &str, patch: Value, version: Option<u64>) -> String {
    let out = splice_meta(doc.as_bytes(), &meta(patch), version).expect("splice");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn a_patch_changes_only_its_keys_and_the_version_number() {
    let doc = r#"{"otype":"block","version":7,"x":1.0,"big":18446744073709551616123,"meta":{"view":"agent","n":1e21,"gone":-0},"e":"\u00e9\/"}"#;
    let out = splice(
        doc,
        json!({"session:archived_at": 5, "gone": null, "view": "term"}),
        Some(8),
    );
    assert_eq!(
        out,
        r#"{"otype":"block","version":8,"x":1.0,"big":18446744073709551616123,"meta":{"view":"term","n":1e21,"session:archived_at":5},"e":"\u00e9\/"}"#
    );
}

#[test]
fn pretty_printed_meta_keeps_its_layout_around_the_patched_keys() {
    let doc = "{\n  \"meta\": {\n    \"a\": 1.50,\n    \"b\": 2,\n    \"c\": 1E+2\n  },\n  \"version\": 3\n}";
    assert_eq!(
        splice(doc, json!({"b": null}), None),
        "{\n  \"meta\": {\n    \"a\": 1.50,\n    \"c\": 1E+2\n  },\n  \"version\": 3\n}"
    );
    assert_eq!(
        splice(doc, json!({"a": null}), None),
        "{\n  \"meta\": {\n    \"b\": 2,\n    \"c\": 1E+2\n  },\n  \"version\": 3\n}"
    );
    assert_eq!(
        splice(doc, json!({"a": null, "b": null}), Some(4)),
        "{\n  \"meta\": {\n    \"c\": 1E+2\n  },\n  \"version\": 4\n}"
    );
    assert_eq!(
        splice(doc, json!({"a": null, "b": null, "c": null}), None),
        "{\n  \"meta\": {\n    \n  },\n  \"version\": 3\n}"
    );
    assert_eq!(
        splice(doc, json!({"d": [1]}), None),
        "{\n  \"meta\": {\n    \"a\": 1.50,\n    \"b\": 2,\n    \"c\": 1E+2,\"d\":[1]\n  },\n  \"version\": 3\n}"
    );
}

#[test]
fn a_value_equal_to_the_stored_one_keeps_the_stored_spelling() {
    let doc = r#"{"meta":{"a":1.0,"b":"\u0041"}}"#;
    assert_eq!(splice(doc, json!({"a": 1.0, "b": "A"}), None), doc);
}

#[test]
fn an_escaped_key_is_the_key_it_spells() {
    let doc = r#"{"m\u0065ta":{"\u0061":1,"b":2}}"#;
    assert_eq!(
        splice(doc, json!({"a": 3}), None),
        r#"{"m\u0065ta":{"\u0061":3,"b":2}}"#
    );
}

#[test]
fn missing_or_null_meta_gets_one_only_when_a_key_is_added() {
    assert_eq!(
        splice(r#"{"oid":"x" }"#, json!({"a": 1}), None),
        r#"{"oid":"x","meta":{"a":1} }"#
    );
    assert_eq!(
        splice(r#"{ }"#, json!({"a": 1}), None),
        r#"{"meta":{"a":1} }"#
    );
    assert_eq!(
        splice(r#"{"meta" : null,"z":1}"#, json!({"a": 1}), None),
        r#"{"meta" : {"a":1},"z":1}"#
    );
    assert_eq!(
        splice(r#"{"meta":null}"#, json!({"a": null}), None),
        r#"{"meta":null}"#
    );
    assert_eq!(
        splice(r#"{"oid":"x"}"#, json!({"a": null}), None),
        r#"{"oid":"x"}"#
    );
    assert_eq!(
        splice(r#"{"meta":{ }}"#, json!({"a": 1, "b": 2}), None),
        r#"{"meta":{"a":1,"b":2 }}"#
    );
}

#[test]
fn a_duplicated_key_keeps_only_its_last_occurrence() {
    assert_eq!(
        splice(r#"{"meta":{"a":1,"b":2,"a":3}}"#, json!({"a": 4}), None),
        r#"{"meta":{"b":2,"a":4}}"#
    );
    assert_eq!(
        splice(r#"{"meta":{"a":1,"b":2,"a":3}}"#, json!({"a": null}), None),
        r#"{"meta":{"b":2}}"#
    );
}

#[test]
fn data_that_is_not_a_block_is_refused_with_the_reason() {
    let p = meta(json!({"a": 1}));
    assert!(matches!(
        splice_meta(b"[1,2]", &p, None),
        Err(BlockJsonError::NotObject)
    ));
    assert!(matches!(
        splice_meta(b"{\"meta\":[1]}", &p, None),
        Err(BlockJsonError::MetaNotObject)
    ));
    assert!(matches!(
        splice_meta(b"{\"meta\":{},\"meta\":{}}", &p, None),
        Err(BlockJsonError::DuplicateMeta)
    ));
    for bad in [
        &b"{\"meta\":{}"[..],
        b"{\"a\":1}x",
        b"",
        b"{\"a\":01}",
        b"{\"a\":\"\x01\"}",
    ] {
        assert!(
            matches!(splice_meta(bad, &p, None), Err(BlockJsonError::Invalid(_))),
            "{}",
            bad.escape_ascii()
        );
    }
}

// ---- generated blocks ------------------------------------------------------------------------

/// One member as the generator wrote it: every byte of it is known.
#[derive(Debug, Clone)]
struct RawMember {
    /// Whitespace before the key.
    pre: String,
    /// The key as written (maybe with escapes).
    key_raw: String,
    /// The key it spells.
    key: String,
    before_colon: String,
    after_colon: String,
    value: String,
    /// Whitespace after the value.
    post: String,
}

impl RawMember {
    /// From the key to the end of the value.
    fn core(&self) -> String {
        format!(
            "{}{}:{}{}",
            self.key_raw, self.before_colon, self.after_colon, self.value
        )
    }

    fn text(&self) -> String {
        format!("{}{}{}", self.pre, self.core(), self.post)
    }
}

#[derive(Debug, Clone)]
struct RawObject {
    /// Whitespace inside `{}` when there are no members.
    inner: String,
    members: Vec<RawMember>,
}

impl RawObject {
    fn render(&self) -> String {
        if self.members.is_empty() {
            return format!("{{{}}}", self.inner);
        }
        let parts: Vec<String> = self.members.iter().map(RawMember::text).collect();
        format!("{{{}}}", parts.join(","))
    }

    /// The oracle for removing `keys`: kept members in order, each joined to the previous kept
    /// one by the separator that followed that one; the first member's leading and the last
    /// member's trailing whitespace stay, also when no member is left.
    fn render_without(&self, keys: &BTreeSet<String>) -> String {
        let kept: Vec<usize> = (0..self.members.len())
            .filter(|&i| !keys.contains(&self.members[i].key))
            .collect();
        if kept.len() == self.members.len() {
            return self.render();
        }
        let m = &self.members;
        if kept.is_empty() {
            return format!("{{{}{}}}", m[0].pre, m[m.len() - 1].post);
        }
        let mut out = format!("{{{}", m[0].pre);
        for (n, &i) in kept.iter().enumerate() {
            if n > 0 {
                let prev = kept[n - 1];
                out += &format!("{},{}", m[prev].post, m[prev + 1].pre);
            }
            out += &m[i].core();
        }
        out += &m[m.len() - 1].post;
        out += "}";
        out
    }
}

#[derive(Debug, Clone)]
enum MetaState {
    Absent,
    Null,
    Object(RawObject),
}

/// A generated block: its top-level members (meta's value left out) and its meta.
#[derive(Debug, Clone)]
struct Block {
    top: Vec<RawMember>,
    /// Where meta sits among `top` (its `value` there is a placeholder).
    meta_at: Option<usize>,
    meta: MetaState,
}

impl Block {
    /// The document with meta's value given and the version value replaced if asked.
    fn render_with(&self, meta_text: &str, version: Option<u64>, add_meta: Option<&str>) -> String {
        let mut members = self.top.clone();
        for (i, m) in members.iter_mut().enumerate() {
            if Some(i) == self.meta_at {
                m.value = meta_text.to_owned();
            } else if m.key == "version" {
                if let Some(v) = version {
                    m.value = v.to_string();
                }
            }
        }
        if let (Some(extra), Some(last)) = (add_meta, members.last_mut()) {
            // A new meta member goes right after the last value, before its whitespace.
            last.value += &format!(",\"meta\":{extra}");
        }
        RawObject {
            inner: String::new(),
            members,
        }
        .render()
    }

    fn render(&self) -> String {
        self.render_with(&self.meta_text(), None, None)
    }

    fn meta_text(&self) -> String {
        match &self.meta {
            MetaState::Absent => String::new(),
            MetaState::Null => "null".into(),
            MetaState::Object(o) => o.render(),
        }
    }

    /// The oracle for "remove `keys` from meta" (`became_object`: the patch added a key to a
    /// missing or null meta, which then is `{}` once the keys are removed again).
    fn render_without(
        &self,
        keys: &BTreeSet<String>,
        version: Option<u64>,
        became_object: bool,
    ) -> String {
        match (&self.meta, became_object) {
            (MetaState::Object(o), _) => self.render_with(&o.render_without(keys), version, None),
            (MetaState::Null, true) => self.render_with("{}", version, None),
            (MetaState::Absent, true) => self.render_with("", version, Some("{}")),
            (_, false) => self.render_with(&self.meta_text(), version, None),
        }
    }
}

fn ws() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "", " ", "\n", "\t", "\r\n  ", "  "]).prop_map(String::from)
}

/// Numbers as apps spell them, including ones a `serde_json::Value` would respell.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "1.0",
            "1e21",
            "-0",
            "-0.0",
            "1E+2",
            "2e-3",
            "-1.5e-7",
            "18446744073709551616",
            "340282366920938463463374607431768211456123",
            "3.14159265358979323846264338327950288",
            "0.1000",
            "1e-400",
        ])
        .prop_map(String::from),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (-1e300f64..1e300).prop_map(|f| format!("{f:e}")),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            r#""""#,
            r#""plain""#,
            r#""\u00e9\n\t\"\\\/""#,
            r#""\ud83d\ude00""#,
            "\"é ü 漢\"",
            r#""{\"not\": [\"json\"]}""#,
            r#""a,b:c}""#,
        ])
        .prop_map(String::from),
        "[a-z ]{0,8}".prop_map(|s| format!("\"{s}\"")),
    ]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => number(),
        3 => string(),
        1 => prop::sample::select(vec!["true", "false", "null"]).prop_map(String::from),
    ]
}

/// Any raw JSON value: scalars, and arrays/objects of them with odd whitespace.
fn raw_value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec((ws(), inner.clone(), ws()), 0..4).prop_map(|items| {
                let parts: Vec<String> = items
                    .into_iter()
                    .map(|(a, v, b)| format!("{a}{v}{b}"))
                    .collect();
                format!("[{}]", parts.join(","))
            }),
            prop::collection::vec((ws(), "[a-z]{1,3}", ws(), ws(), inner, ws()), 0..4).prop_map(
                |items| {
                    let parts: Vec<String> = items
                        .into_iter()
                        .map(|(a, k, b, c, v, d)| format!("{a}\"{k}\"{b}:{c}{v}{d}"))
                        .collect();
                    format!("{{{}}}", parts.join(","))
                }
            ),
        ]
    })
}

/// The keys meta and patches draw from, so patches hit existing keys often.
const KEYS: [&str; 8] = [
    "a",
    "b",
    "view",
    "session:archived_at",
    "session:restored_at",
    "ünï",
    "k\"q",
    "zz",
];

/// The key written plainly or with every character as a `\u` escape.
fn key_raw(key: &str, escaped: bool) -> String {
    if escaped {
        let mut s = String::from("\"");
        for unit in key.encode_utf16() {
            s += &format!("\\u{unit:04x}");
        }
        s + "\""
    } else {
        serde_json::to_string(key).unwrap()
    }
}

fn member(key: String, value: impl Strategy<Value = String>) -> impl Strategy<Value = RawMember> {
    (ws(), any::<bool>(), ws(), ws(), value, ws()).prop_map(
        move |(pre, escaped, before_colon, after_colon, value, post)| RawMember {
            pre,
            key_raw: key_raw(&key, escaped),
            key: key.clone(),
            before_colon,
            after_colon,
            value,
            post,
        },
    )
}

fn raw_object() -> impl Strategy<Value = RawObject> {
    let keys = prop::collection::btree_set(prop::sample::select(KEYS.to_vec()), 0..6)
        .prop_map(|s| s.into_iter().map(String::from).collect::<Vec<_>>())
        .prop_shuffle();
    (keys, ws())
        .prop_flat_map(|(keys, inner)| {
            let members: Vec<_> = keys.into_iter().map(|k| member(k, raw_value())).collect();
            (members, Just(inner))
        })
        .prop_map(|(members, inner)| RawObject { inner, members })
}

fn meta_state() -> impl Strategy<Value = MetaState> {
    prop_oneof![
        1 => Just(MetaState::Absent),
        1 => Just(MetaState::Null),
        4 => raw_object().prop_map(MetaState::Object),
    ]
}

fn block() -> impl Strategy<Value = Block> {
    let unknown = prop::collection::btree_set("x_[a-z]{1,4}", 0..4);
    (meta_state(), any::<bool>(), unknown)
        .prop_flat_map(|(meta, with_version, unknown)| {
            let mut members: Vec<BoxedStrategy<RawMember>> = vec![
                member("otype".into(), Just("\"block\"".to_owned())).boxed(),
                member("oid".into(), string()).boxed(),
            ];
            if with_version {
                members.push(member("version".into(), number()).boxed());
            }
            for k in unknown {
                members.push(member(k, raw_value()).boxed());
            }
            if !matches!(meta, MetaState::Absent) {
                members.push(member("meta".into(), Just(String::new())).boxed());
            }
            (members.prop_shuffle(), Just(meta))
        })
        .prop_map(|(top, meta)| {
            let meta_at = top.iter().position(|m| m.key == "meta");
            Block { top, meta_at, meta }
        })
}

fn patch_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        "[a-z\"\\\\ é]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,2}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn patch() -> impl Strategy<Value = Meta> {
    let key = prop_oneof![
        4 => prop::sample::select(KEYS.to_vec()).prop_map(String::from),
        1 => "new_[a-z]{1,3}",
    ];
    prop::collection::btree_map(key, patch_value(), 0..5).prop_map(|m| m.into_iter().collect())
}

fn parsed_meta(doc: &Value) -> Meta {
    match doc.get("meta") {
        None | Some(Value::Null) => Meta::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => panic!("meta is {other}"),
    }
}

fn without(doc: &Value, keys: &[&str]) -> Value {
    let mut doc = doc.clone();
    for k in keys {
        doc.as_object_mut().unwrap().remove(*k);
    }
    doc
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn the_generator_writes_what_it_describes(b in block()) {
        // The oracle is only as good as the generator: its text must be valid JSON with the
        // meta it describes.
        let doc: Value = serde_json::from_str(&b.render()).unwrap();
        let expected = match &b.meta {
            MetaState::Object(o) => serde_json::from_str::<Meta>(&o.render()).unwrap(),
            _ => Meta::new(),
        };
        prop_assert_eq!(parsed_meta(&doc), expected);
    }

    #[test]
    fn the_spliced_block_parses_and_its_meta_is_the_merge(
        b in block(),
        p in patch(),
        version in prop::option::of(any::<u32>()),
    ) {
        let original = b.render();
        let version = version.map(u64::from);
        let out = splice_meta(original.as_bytes(), &p, version).unwrap();
        let before: Value = serde_json::from_str(&original).unwrap();
        let after: Value = serde_json::from_slice(&out).unwrap();
        let mut merged = parsed_meta(&before);
        for (k, v) in &p {
            if v.is_null() {
                merged.remove(k);
            } else {
                merged.insert(k.clone(), v.clone());
            }
        }
        prop_assert_eq!(parsed_meta(&after), merged);
        prop_assert_eq!(without(&after, &["meta", "version"]), without(&before, &["meta", "version"]));
        match (before.get("version"), version) {
            (Some(_), Some(v)) => prop_assert_eq!(after.get("version"), Some(&Value::from(v))),
            (old, _) => prop_assert_eq!(after.get("version"), old),
        }
    }

    #[test]
    fn the_spliced_block_keeps_every_byte_outside_the_patched_keys(
        b in block(),
        p in patch(),
        version in prop::option::of(any::<u32>()),
    ) {
        let original = b.render();
        let version = version.map(u64::from);
        let keys: BTreeSet<String> = p.keys().cloned().collect();
        let removal: Meta = keys.iter().map(|k| (k.clone(), Value::Null)).collect();
        let became_object = !matches!(b.meta, MetaState::Object(_)) && p.values().any(|v| !v.is_null());

        let out = splice_meta(original.as_bytes(), &p, version).unwrap();
        // The patched keys taken out of the original and out of the result: the bytes the
        // oracle renders from the generator's pieces (plus `"meta":{}` where the patch made a
        // meta that was missing or null).
        let out_stripped = splice_meta(&out, &removal, None).unwrap();
        let original_stripped = splice_meta(original.as_bytes(), &removal, version).unwrap();
        prop_assert_eq!(
            String::from_utf8(original_stripped).unwrap(),
            b.render_without(&keys, version, false)
        );
        prop_assert_eq!(
            String::from_utf8(out_stripped).unwrap(),
            b.render_without(&keys, version, became_object)
        );
    }

    #[test]
    fn an_empty_patch_changes_nothing_but_the_version(b in block(), version in any::<u32>()) {
        let original = b.render();
        let out = splice_meta(original.as_bytes(), &Meta::new(), Some(u64::from(version))).unwrap();
        prop_assert_eq!(
            String::from_utf8(out).unwrap(),
            b.render_with(&b.meta_text(), Some(u64::from(version)), None)
        );
        let same = splice_meta(original.as_bytes(), &Meta::new(), None).unwrap();
        prop_assert_eq!(String::from_utf8(same).unwrap(), original);
    }
}
