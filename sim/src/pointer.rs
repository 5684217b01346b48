//! JSON pointers without allocating: `serde_json`'s `Value::pointer` unescapes every token
//! into a new `String`, which server-side apply paid on each of its many lookups.

use serde_json::Value;

/// `Value::pointer` and `Value::pointer_mut`, allocating only when a token is escaped.
pub(crate) trait At {
    /// The value at a JSON pointer (`/metadata/name`), as [`Value::pointer`] finds it.
    fn at(&self, pointer: &str) -> Option<&Value>;
    /// The value at a JSON pointer, mutably, as [`Value::pointer_mut`] finds it.
    fn at_mut(&mut self, pointer: &str) -> Option<&mut Value>;
}

impl At for Value {
    fn at(&self, pointer: &str) -> Option<&Value> {
        if pointer.contains('~') {
            return self.pointer(pointer);
        }
        if pointer.is_empty() {
            return Some(self);
        }
        pointer
            .strip_prefix('/')?
            .split('/')
            .try_fold(self, |value, token| match value {
                Value::Object(map) => map.get(token),
                Value::Array(list) => index(token).and_then(|i| list.get(i)),
                _ => None,
            })
    }

    fn at_mut(&mut self, pointer: &str) -> Option<&mut Value> {
        if pointer.contains('~') {
            return self.pointer_mut(pointer);
        }
        if pointer.is_empty() {
            return Some(self);
        }
        pointer
            .strip_prefix('/')?
            .split('/')
            .try_fold(self, |value, token| match value {
                Value::Object(map) => map.get_mut(token),
                Value::Array(list) => index(token).and_then(|i| list.get_mut(i)),
                _ => None,
            })
    }
}

/// An array index as JSON pointers write it: digits, no sign, no leading zero.
fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::At;

    #[test]
    fn finds_what_value_pointer_finds() {
        let mut doc = json!({
            "a": {"b": [10, {"c": "x"}], "": 1, "d/e": 2, "f~g": 3},
            "list": [0, 1, 2],
        });
        for pointer in [
            "",
            "/",
            "/a",
            "/a/b",
            "/a/b/0",
            "/a/b/1/c",
            "/a/b/2",
            "/a/b/01",
            "/a/b/+1",
            "/a/b/-1",
            "/a/",
            "/a/d~1e",
            "/a/f~0g",
            "/a/d/e",
            "/list/2",
            "/list/x",
            "a",
            "/missing/x",
            "/a/b/1/c/d",
        ] {
            assert_eq!(doc.at(pointer), doc.pointer(pointer), "{pointer}");
            let expected = doc.clone().pointer_mut(pointer).cloned();
            assert_eq!(doc.at_mut(pointer).cloned(), expected, "{pointer}");
        }
    }
}
