//! The non-apply patch types: JSON merge patch, JSON patch and strategic merge patch.

use serde_json::{Map, Value};

use crate::catalog::ResourceType;
use crate::schema::{ListType, list_type};
use crate::status::ApiError;

/// A patch type, from the request's Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The patch type a Content-Type names.
    pub(crate) fn from_content_type(ct: &str) -> Option<PatchType> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// Applies a JSON merge patch, JSON patch or strategic merge patch to an object.
pub(crate) fn patch(
    rt: &ResourceType,
    kind: PatchType,
    target: &Value,
    body: &[u8],
) -> Result<Value, ApiError> {
    match kind {
        PatchType::Merge => {
            let p: Value = parse_json(body)?;
            if !p.is_object() {
                return Err(not_a_map("error decoding patch: ", &p));
            }
            let mut out = target.clone();
            json_patch::merge(&mut out, &p);
            Ok(out)
        }
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let mut out = target.clone();
            // The API server says no more than this, whichever operation failed.
            json_patch::patch(&mut out, &p).map_err(|_| ApiError {
                code: 422,
                reason: "Invalid",
                message: "the server rejected our request due to an error in our request"
                    .to_string(),
                details: Some(serde_json::json!({})),
            })?;
            Ok(out)
        }
        PatchType::Strategic => {
            let p: Value = parse_json(body)?;
            if !p.is_object() {
                return Err(not_a_map("", &p));
            }
            let mut out = target.clone();
            let mut names = Vec::new();
            strategic(&mut out, &p, &mut names, rt)?;
            Ok(out)
        }
        PatchType::Apply => Err(ApiError::bad_request("apply is not a merge patch")),
    }
}

/// A merge patch must be an object; the API server says so as Go's decoder does.
fn not_a_map(prefix: &str, patch: &Value) -> ApiError {
    let found = match patch {
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Null | Value::Object(_) => "null",
    };
    ApiError::bad_request(format!(
        "{prefix}json: cannot unmarshal {found} into Go value of type map[string]interface {{}}"
    ))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Strategic merge: like a merge patch, but lists with a merge key merge per item and
/// the `$patch`, `$retainKeys`, `$deleteFromPrimitiveList` and `$setElementOrder`
/// directives apply.
fn strategic<'a>(
    target: &mut Value,
    patch: &'a Value,
    names: &mut Vec<&'a str>,
    rt: &ResourceType,
) -> Result<(), ApiError> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = p.clone();
            replaced.shift_remove("$patch");
            *target = Value::Object(replaced);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    if let Some(Value::Array(retain)) = p.get("$retainKeys") {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()) || p.contains_key(k));
    }
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(gone)) = (t.get_mut(field), v) {
                items.retain(|i| !gone.contains(i));
            }
            continue;
        }
        // Ordering directives only reorder; items keep the live order here.
        if k.starts_with('$') {
            continue;
        }
        names.push(k.as_str());
        if v.is_null() {
            t.shift_remove(k);
        } else {
            match (t.get_mut(k), v) {
                (Some(existing @ Value::Object(_)), Value::Object(_)) => {
                    strategic(existing, v, names, rt)?;
                }
                (Some(Value::Array(existing)), Value::Array(items)) => {
                    merge_list(existing, items, names, rt)?;
                }
                (_, Value::Array(items)) => {
                    let mut fresh = Vec::new();
                    merge_list(&mut fresh, items, names, rt)?;
                    t.insert(k.clone(), Value::Array(fresh));
                }
                (_, v) => {
                    let mut fresh = Value::Object(Map::new());
                    if v.is_object() {
                        strategic(&mut fresh, v, names, rt)?;
                    } else {
                        fresh = v.clone();
                    }
                    t.insert(k.clone(), fresh);
                }
            }
        }
        names.pop();
    }
    Ok(())
}

fn merge_list<'a>(
    target: &mut Vec<Value>,
    items: &'a [Value],
    names: &mut Vec<&'a str>,
    rt: &ResourceType,
) -> Result<(), ApiError> {
    let key = match list_type(rt, names) {
        ListType::Map(keys) => keys[0].clone(),
        ListType::Set | ListType::Atomic => {
            *target = items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .cloned()
                .collect();
            return Ok(());
        }
    };
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *target = items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect();
        return Ok(());
    }
    let server_order: Vec<Option<Value>> = target.iter().map(|t| t.get(&key).cloned()).collect();
    for item in items {
        let Some(id) = item.get(&key) else {
            return Err(ApiError::bad_request(format!(
                "map: {item} does not contain declared merge key: {key}"
            )));
        };
        let pos = target.iter().position(|t| t.get(&key) == Some(id));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = pos {
                target.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => strategic(&mut target[i], item, names, rt)?,
            None => {
                let mut fresh = Value::Object(Map::new());
                strategic(&mut fresh, item, names, rt)?;
                target.push(fresh);
            }
        }
    }
    normalize_order(target, items, &server_order, &key);
    Ok(())
}

/// Orders a merged list as the API server does (`normalizeElementOrder`): the patch's items
/// in the patch's order and the others in the server's, merged by their position on the
/// server, items new to the server first.
fn normalize_order(target: &mut Vec<Value>, patch: &[Value], server: &[Option<Value>], key: &str) {
    let patch_ids: Vec<&Value> = patch.iter().filter_map(|i| i.get(key)).collect();
    let on_server = |item: &Value| -> i64 {
        let id = item.get(key);
        server
            .iter()
            .position(|k| k.as_ref() == id)
            .map_or(-1, |p| p as i64)
    };
    let in_patch = |item: &Value| -> Option<usize> {
        let id = item.get(key)?;
        patch_ids.iter().position(|p| *p == id)
    };
    let (mut patched, mut server_only): (Vec<Value>, Vec<Value>) = std::mem::take(target)
        .into_iter()
        .partition(|i| in_patch(i).is_some());
    patched.sort_by_key(|i| in_patch(i));
    let (mut patched, mut server_only) = (
        patched.drain(..).peekable(),
        server_only.drain(..).peekable(),
    );
    loop {
        let take_patched = match (patched.peek(), server_only.peek()) {
            (Some(p), Some(s)) => on_server(p) < on_server(s),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_patched {
            patched.next()
        } else {
            server_only.next()
        };
        target.extend(next);
    }
}
