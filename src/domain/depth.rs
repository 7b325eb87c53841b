//! How deeply a request may nest. Free-form JSON (a job's `context`, an example's `meta`) becomes
//! a protobuf `Struct` on its way to the core, whose decoder stops at 100 recursion levels (about
//! three per JSON object level): past that a request would fail deep inside the decoder. Both
//! transports reject anything nested deeper than [`MAX_JSON_DEPTH`] levels, counted from the
//! request's root object, with a validation error naming the field: the edge on the raw body
//! ([`first_too_deep`]), the core on the decoded fields ([`too_deep`]).

use crate::error::FieldError;

/// Levels of objects and arrays a request may nest, its root object being level 1.
pub const MAX_JSON_DEPTH: usize = 32;

/// The message of a too-deep field.
pub fn message() -> String {
    format!("nested deeper than the limit of {MAX_JSON_DEPTH} levels")
}

/// Adds a validation error to `errors` when `map` (at level `level`; `prefix` is where it sits
/// in the request) nests deeper than [`MAX_JSON_DEPTH`]: its `loc` is `prefix` followed by the
/// path to the first value too deep.
pub fn check_map(
    map: &serde_json::Map<String, serde_json::Value>,
    level: usize,
    prefix: &[&str],
    errors: &mut Vec<FieldError>,
) {
    if let Some(path) = too_deep_in_map(map, level, MAX_JSON_DEPTH) {
        let loc: Vec<&str> = prefix
            .iter()
            .copied()
            .chain(path.iter().map(String::as_str))
            .collect();
        errors.push(FieldError::new(&loc, message()));
    }
}

/// The path (keys and indices) of the first object or array inside `value` that lies deeper
/// than `limit`, where `value` itself sits at level `level` (scalars add no level).
pub fn too_deep(value: &serde_json::Value, level: usize, limit: usize) -> Option<Vec<String>> {
    use serde_json::Value;
    let children: Box<dyn Iterator<Item = (String, &Value)>> = match value {
        Value::Object(map) => Box::new(map.iter().map(|(k, v)| (k.clone(), v))),
        Value::Array(items) => Box::new(items.iter().enumerate().map(|(i, v)| (i.to_string(), v))),
        _ => return None,
    };
    if level > limit {
        return Some(Vec::new());
    }
    for (key, child) in children {
        if let Some(mut path) = too_deep(child, level + 1, limit) {
            path.insert(0, key);
            return Some(path);
        }
    }
    None
}

/// [`too_deep`] for an object given as its map (a `context`, a `meta`) at level `level`.
pub fn too_deep_in_map(
    map: &serde_json::Map<String, serde_json::Value>,
    level: usize,
    limit: usize,
) -> Option<Vec<String>> {
    if level > limit {
        return Some(Vec::new());
    }
    map.iter().find_map(|(key, child)| {
        let mut path = too_deep(child, level + 1, limit)?;
        path.insert(0, key.clone());
        Some(path)
    })
}

/// Scans raw JSON (without building it) for the first object or array deeper than `limit`
/// levels and returns the keys and indices leading to it. Input that is not JSON yields what
/// was seen so far; the parser that runs next reports it.
pub fn first_too_deep(bytes: &[u8], limit: usize) -> Option<Vec<String>> {
    struct Frame {
        object: bool,
        key: String,
        index: usize,
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if expect_key && let Some(top) = stack.last_mut() {
                    let end = i.min(bytes.len());
                    top.key = String::from_utf8_lossy(&bytes[start.min(end)..end]).into_owned();
                    expect_key = false;
                }
            }
            open @ (b'{' | b'[') => {
                stack.push(Frame {
                    object: open == b'{',
                    key: String::new(),
                    index: 0,
                });
                expect_key = open == b'{';
                if stack.len() > limit {
                    let parents = &stack[..stack.len() - 1];
                    return Some(
                        parents
                            .iter()
                            .map(|f| {
                                if f.object {
                                    f.key.clone()
                                } else {
                                    f.index.to_string()
                                }
                            })
                            .collect(),
                    );
                }
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => {
                if let Some(top) = stack.last_mut() {
                    if top.object {
                        expect_key = true;
                    } else {
                        top.index += 1;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> serde_json::Value {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!({ "a": v });
        }
        v
    }

    #[test]
    fn the_scanner_and_the_tree_walk_agree_on_the_path() {
        let body = json!({"prompt": "p", "examples": [{"input": "x"}, {"meta": nested(5)}]});
        let raw = serde_json::to_vec(&body).unwrap();
        let expected: Vec<String> = ["examples", "1", "meta", "a", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Root 1, examples 2, element 3, meta 4, a 5, a 6: the object at level 6 is too deep.
        assert_eq!(first_too_deep(&raw, 5), Some(expected.clone()));
        assert_eq!(too_deep(&body, 1, 5), Some(expected));
        assert_eq!(first_too_deep(&raw, 8), None);
        assert_eq!(too_deep(&body, 1, 8), None);
    }

    #[test]
    fn strings_with_brackets_and_escapes_do_not_count() {
        let raw = br#"{"k\"{": "[[[[{{{{", "b": {"c": 1}}"#;
        assert_eq!(first_too_deep(raw, 2), None);
        assert_eq!(first_too_deep(raw, 1), Some(vec!["b".to_string()]));
    }
}
