//! Changes a block's JSON text in place: the keys a meta patch names and the block's `version`
//! number, and no other byte.
//!
//! The app wrote the block and reads it back with its own JSON library, so re-serialising the
//! whole block would rewrite what is not ours: key order, whitespace, number spellings (`1.0`,
//! `1e21`, integers past 2^64 that a `serde_json::Value` turns into floats), string escapes and
//! fields we do not know. Instead a small scanner finds the byte spans of the top-level members
//! and of the members of `meta`, and only the spans a patch touches are replaced.

use serde::de::IgnoredAny;
use serde_json::Value;

use super::Meta;

/// Why a block's JSON could not be patched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockJsonError {
    /// The bytes are not one JSON document.
    #[error("bad data JSON: {0}")]
    Invalid(String),
    /// The document is valid JSON but not an object.
    #[error("data is not a JSON object")]
    NotObject,
    /// `meta` is there but is neither an object nor null.
    #[error("meta is not an object")]
    MetaNotObject,
    /// The block has `meta` more than once: which one the app reads is not ours to guess.
    #[error("meta appears more than once")]
    DuplicateMeta,
}

/// One `"key": value` member of an object, as byte offsets into the document.
#[derive(Debug, Clone, Copy)]
struct Member {
    /// At the opening quote of the key.
    key_start: usize,
    /// Just past the closing quote of the key.
    key_end: usize,
    value_start: usize,
    /// Just past the value.
    value_end: usize,
}

/// An object's members and the offset of its closing brace.
struct Members {
    members: Vec<Member>,
    close: usize,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|&c| is_ws(c)) {
        i += 1;
    }
    i
}

fn truncated() -> BlockJsonError {
    BlockJsonError::Invalid("unexpected end of data".into())
}

fn expect(b: &[u8], i: usize, want: u8) -> Result<(), BlockJsonError> {
    match b.get(i) {
        Some(&c) if c == want => Ok(()),
        Some(&c) => Err(BlockJsonError::Invalid(format!(
            "expected '{}' at byte {i}, found '{}'",
            want as char,
            c.escape_ascii()
        ))),
        None => Err(truncated()),
    }
}

/// `i` is at an opening quote; returns the offset just past the closing one.
fn scan_string(b: &[u8], i: usize) -> Result<usize, BlockJsonError> {
    expect(b, i, b'"')?;
    let mut j = i + 1;
    loop {
        match b.get(j) {
            Some(b'"') => return Ok(j + 1),
            // The escaped byte can be a quote; whatever it is, it never ends the string.
            Some(b'\\') => j += 2,
            Some(_) => j += 1,
            None => return Err(truncated()),
        }
    }
}

/// `i` is at the first byte of a value; returns the offset just past it.
fn scan_value(b: &[u8], i: usize) -> Result<usize, BlockJsonError> {
    match b.get(i) {
        None => Err(truncated()),
        Some(b'"') => scan_string(b, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j) {
                    None => return Err(truncated()),
                    Some(b'"') => {
                        j = scan_string(b, j)?;
                        continue;
                    }
                    Some(b'{' | b'[') => depth += 1,
                    Some(b'}' | b']') => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    Some(_) => {}
                }
                j += 1;
            }
        }
        // A number or a literal: everything up to the next structural byte or whitespace.
        Some(_) => {
            let mut j = i;
            while b
                .get(j)
                .is_some_and(|&c| !is_ws(c) && !matches!(c, b',' | b'}' | b']' | b':'))
            {
                j += 1;
            }
            Ok(j)
        }
    }
}

/// `open` is at a `{`; scans its members.
fn scan_members(b: &[u8], open: usize) -> Result<Members, BlockJsonError> {
    expect(b, open, b'{')?;
    let mut members = Vec::new();
    let mut i = skip_ws(b, open + 1);
    if b.get(i) == Some(&b'}') {
        return Ok(Members { members, close: i });
    }
    loop {
        let key_start = i;
        let key_end = scan_string(b, key_start)?;
        i = skip_ws(b, key_end);
        expect(b, i, b':')?;
        let value_start = skip_ws(b, i + 1);
        let value_end = scan_value(b, value_start)?;
        members.push(Member {
            key_start,
            key_end,
            value_start,
            value_end,
        });
        i = skip_ws(b, value_end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Ok(Members { members, close: i }),
            Some(&c) => {
                return Err(BlockJsonError::Invalid(format!(
                    "expected ',' or '}}' at byte {i}, found '{}'",
                    c.escape_ascii()
                )))
            }
            None => return Err(truncated()),
        }
    }
}

/// The key of `m` with its escapes resolved (`"m\u0065ta"` is `meta`).
fn key_of(b: &[u8], m: &Member) -> Result<String, BlockJsonError> {
    serde_json::from_slice(&b[m.key_start..m.key_end])
        .map_err(|e| BlockJsonError::Invalid(format!("key at byte {}: {e}", m.key_start)))
}

fn to_json(v: &impl serde::Serialize) -> Vec<u8> {
    // Serialising a `Value` or a `String` into a Vec cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// `"key":value`, the way we add a member that was not there.
fn new_member(key: &str, value: &Value) -> Vec<u8> {
    let mut out = to_json(&key);
    out.push(b':');
    out.extend_from_slice(&to_json(value));
    out
}

/// What happens to one existing member of `meta`.
enum Fate {
    Keep,
    Drop,
    /// Same key bytes, this value.
    Replace(Vec<u8>),
}

/// The new text of the `meta` object at `open`, or `None` when the patch changes nothing in it.
///
/// Members the patch does not name keep their bytes and order; a named member keeps its key
/// bytes and gets the new value (unless the stored value already equals it); a null removes the
/// member and the separator that joined it to the one before (the first member: the one after);
/// keys that were absent are added at the end, as `,"key":value` after the last value. A key that appears more than once (the last one wins when parsed) keeps only its last
/// occurrence.
fn patch_object(b: &[u8], open: usize, patch: &Meta) -> Result<Option<Vec<u8>>, BlockJsonError> {
    let Members { members, close } = scan_members(b, open)?;
    let keys = members
        .iter()
        .map(|m| key_of(b, m))
        .collect::<Result<Vec<_>, _>>()?;
    let mut fates: Vec<Fate> = members.iter().map(|_| Fate::Keep).collect();
    let mut added = Vec::new();
    let mut changed = false;
    for (key, value) in patch {
        let hits: Vec<usize> = (0..members.len()).filter(|&i| keys[i] == *key).collect();
        let Some((&last, earlier)) = hits.split_last() else {
            if !value.is_null() {
                added.push(new_member(key, value));
                changed = true;
            }
            continue;
        };
        for &i in earlier {
            fates[i] = Fate::Drop;
            changed = true;
        }
        if value.is_null() {
            fates[last] = Fate::Drop;
            changed = true;
            continue;
        }
        let m = &members[last];
        let stored: Option<Value> = serde_json::from_slice(&b[m.value_start..m.value_end]).ok();
        if stored.as_ref() != Some(value) {
            fates[last] = Fate::Replace(to_json(value));
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }

    let mut out = vec![b'{'];
    let kept: Vec<usize> = (0..members.len())
        .filter(|&i| !matches!(fates[i], Fate::Drop))
        .collect();
    if members.is_empty() {
        // `{}` or `{ }`: new members go right after the brace, the inner whitespace stays.
        out.extend(join_members(&added));
        out.extend_from_slice(&b[open + 1..close]);
    } else if kept.is_empty() && added.is_empty() {
        // Every member removed: the whitespace before the first and after the last stays.
        let (first, last) = (&members[0], &members[members.len() - 1]);
        out.extend_from_slice(&b[open + 1..first.key_start]);
        out.extend_from_slice(&b[last.value_end..close]);
    } else {
        let first = &members[0];
        out.extend_from_slice(&b[open + 1..first.key_start]);
        for (n, &i) in kept.iter().enumerate() {
            if n > 0 {
                // The separator that followed the previous kept member in the original.
                let prev = &members[kept[n - 1]];
                let next_start = members[kept[n - 1] + 1].key_start;
                out.extend_from_slice(&b[prev.value_end..next_start]);
            }
            let m = &members[i];
            match &fates[i] {
                Fate::Replace(v) => {
                    out.extend_from_slice(&b[m.key_start..m.value_start]);
                    out.extend_from_slice(v);
                }
                _ => out.extend_from_slice(&b[m.key_start..m.value_end]),
            }
        }
        for (n, member) in added.iter().enumerate() {
            if n > 0 || !kept.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(member);
        }
        let last = members.last().map_or(open + 1, |m| m.value_end);
        out.extend_from_slice(&b[last..close]);
    }
    out.push(b'}');
    Ok(Some(out))
}

/// `a,b,c` of already-serialised members.
fn join_members(members: &[Vec<u8>]) -> Vec<u8> {
    members.join(&b',')
}

/// Applies `patch` to the `meta` of the block `data` (the Wave merge rule: a null removes the
/// key) and, when `version` is given and the block has a `version` member, sets that number. Every
/// other byte of `data` is kept. A block without `meta`, or with `meta: null`, gets one only
/// if the patch adds a key: in place of the null, or as a new last member.
pub fn splice_meta(
    data: &[u8],
    patch: &Meta,
    version: Option<u64>,
) -> Result<Vec<u8>, BlockJsonError> {
    // Validate first, so the scanner only ever sees well-formed JSON.
    serde_json::from_slice::<IgnoredAny>(data)
        .map_err(|e| BlockJsonError::Invalid(e.to_string()))?;
    let open = skip_ws(data, 0);
    if data.get(open) != Some(&b'{') {
        return Err(BlockJsonError::NotObject);
    }
    let top = scan_members(data, open)?;
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    let mut meta_seen = false;
    for m in &top.members {
        match key_of(data, m)?.as_str() {
            "version" => {
                if let Some(v) = version {
                    edits.push((m.value_start, m.value_end, v.to_string().into_bytes()));
                }
            }
            "meta" => {
                if meta_seen {
                    return Err(BlockJsonError::DuplicateMeta);
                }
                meta_seen = true;
                match data[m.value_start] {
                    b'{' => {
                        if let Some(text) = patch_object(data, m.value_start, patch)? {
                            edits.push((m.value_start, m.value_end, text));
                        }
                    }
                    b'n' => {
                        if let Some(text) = patch_object(b"{}", 0, patch)? {
                            edits.push((m.value_start, m.value_end, text));
                        }
                    }
                    _ => return Err(BlockJsonError::MetaNotObject),
                }
            }
            _ => {}
        }
    }
    if !meta_seen {
        if let Some(text) = patch_object(b"{}", 0, patch)? {
            let mut member = Vec::new();
            let at = match top.members.last() {
                Some(last) => {
                    member.push(b',');
                    last.value_end
                }
                None => open + 1,
            };
            member.extend_from_slice(br#""meta":"#);
            member.extend_from_slice(&text);
            edits.push((at, at, member));
        }
    }
    edits.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut pos = 0;
    for (start, end, text) in edits {
        out.extend_from_slice(&data[pos..start]);
        out.extend_from_slice(&text);
        pos = end;
    }
    out.extend_from_slice(&data[pos..]);
    Ok(out)
}
