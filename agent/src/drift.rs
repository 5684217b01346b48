//! Drift: whether a live object still holds the values Flotilla applied to the fields it manages.
//!
//! The fields Flotilla manages are exactly the fields of the desired object. Comparing desired
//! values with live ones directly would report drift for every value the API server normalises
//! (`cpu: 0.5` becomes `500m`, defaulted fields inside list items, ...). So the reference is
//! the object the API server returned from Flotilla's own apply, *projected* onto the desired
//! object's fields: the same projection of a live object differs from it only when someone
//! changed a managed field. Fields the desired object does not mention (status, defaults,
//! other managers' fields) are never looked at by the projection; fields other managers *added*
//! are found from `managedFields` by [`added_fields`] and only reported.

use serde_json::{Map, Value};

mod added;

pub use added::{AddedField, SYSTEM_MANAGERS, added_fields, describe as describe_added};

/// Keys that identify items in lists Kubernetes merges by key, in the order they are tried.
const LIST_KEYS: [&str; 5] = ["name", "containerPort", "port", "mountPath", "key"];

/// Top-level fields that are never compared: the type (it cannot change, and list and watch
/// items may leave it out) and status (never desired).
const IGNORED_TOP_LEVEL: [&str; 3] = ["status", "apiVersion", "kind"];

/// The values `actual` holds at the fields `desired` names.
///
/// Maps keep only the desired keys present in `actual`; lists of maps are matched by a
/// shared key (`name`, `containerPort`, ...) or else by position; anything else is a leaf and
/// is taken whole from `actual`.
pub fn project(desired: &Value, actual: &Value) -> Value {
    match desired {
        Value::Object(desired_map) => project_map(desired_map, actual, true),
        _ => actual.clone(),
    }
}

/// Who last changed an object besides Flotilla, as far as its `managedFields` tell: the manager
/// other than Flotilla's with the newest time (`kubectl-edit`, `kubectl`, a controller), status
/// writers left out, or `None` when none is recorded.
pub fn other_manager(live: &Value) -> Option<String> {
    live.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .filter(|f| f.get("manager").and_then(Value::as_str) != Some(crate::object::FIELD_MANAGER))
        // A controller writing status is not drift; `kubectl scale` (the scale subresource) is.
        .filter(|f| f.get("subresource").and_then(Value::as_str) != Some("status"))
        .max_by_key(|f| {
            f.get("time")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        })
        .and_then(|f| f.get("manager").and_then(Value::as_str))
        .map(str::to_owned)
}

/// The managed fields whose values differ between two projections, as dotted paths such as
/// `spec.template.spec.containers[name=web].image`.
pub fn changed_fields(reference: &Value, live: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(reference, live, &mut String::new(), &mut out);
    out
}

fn project_map(desired: &Map<String, Value>, actual: &Value, top: bool) -> Value {
    let Value::Object(actual_map) = actual else {
        return actual.clone();
    };
    let mut out = Map::new();
    for (key, desired_value) in desired {
        if top && IGNORED_TOP_LEVEL.contains(&key.as_str()) {
            continue;
        }
        let Some(actual_value) = actual_map.get(key) else {
            continue;
        };
        let projected = match desired_value {
            Value::Object(inner) => project_map(inner, actual_value, false),
            Value::Array(items) => project_list(items, actual_value),
            _ => actual_value.clone(),
        };
        out.insert(key.clone(), projected);
    }
    Value::Object(out)
}

fn project_list(desired: &[Value], actual: &Value) -> Value {
    let Value::Array(actual_items) = actual else {
        return actual.clone();
    };
    if !desired.iter().all(Value::is_object) || desired.is_empty() {
        return actual.clone();
    }
    if let Some(key) = list_key(desired) {
        let projected = desired
            .iter()
            .filter_map(|item| {
                let id = item.get(key)?;
                let live = actual_items.iter().find(|a| a.get(key) == Some(id))?;
                Some(project(item, live))
            })
            .collect();
        return Value::Array(projected);
    }
    if actual_items.len() != desired.len() {
        return actual.clone();
    }
    Value::Array(
        desired
            .iter()
            .zip(actual_items)
            .map(|(d, a)| project(d, a))
            .collect(),
    )
}

/// The key every desired item carries with distinct values, if any.
fn list_key(items: &[Value]) -> Option<&'static str> {
    LIST_KEYS.into_iter().find(|key| {
        let mut seen = Vec::with_capacity(items.len());
        items.iter().all(|item| match item.get(key) {
            Some(id) if !id.is_null() && !seen.contains(&id) => {
                seen.push(id);
                true
            }
            _ => false,
        })
    })
}

fn diff(reference: &Value, live: &Value, path: &mut String, out: &mut Vec<String>) {
    match (reference, live) {
        (Value::Object(r), Value::Object(l)) => {
            for (key, r_value) in r {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match l.get(key) {
                    Some(l_value) => diff(r_value, l_value, path, out),
                    None => out.push(format!("{path} removed")),
                }
                path.truncate(len);
            }
            for key in l.keys().filter(|k| !r.contains_key(*k)) {
                let sep = if path.is_empty() { "" } else { "." };
                out.push(format!("{path}{sep}{key} added"));
            }
        }
        (Value::Array(r), Value::Array(l))
            if r.len() == l.len() && r.iter().all(Value::is_object) =>
        {
            for (index, (r_item, l_item)) in r.iter().zip(l).enumerate() {
                let len = path.len();
                path.push_str(&item_label(r_item, index));
                diff(r_item, l_item, path, out);
                path.truncate(len);
            }
        }
        _ if reference == live => {}
        _ => out.push(format!("{path} changed")),
    }
}

fn item_label(item: &Value, index: usize) -> String {
    for key in LIST_KEYS {
        if let Some(id) = item.get(key) {
            let id = id.as_str().map_or_else(|| id.to_string(), str::to_owned);
            return format!("[{key}={id}]");
        }
    }
    format!("[{index}]")
}

#[cfg(test)]
mod tests;
