//! Field sets in the `FieldsV1` format of managedFields: `f:spec`, `k:{"name":"x"}` for
//! items of lists with merge keys, `v:"x"` for set items and `.` for an item itself.
//!
//! A set is a tree; its members are its leaves (nodes with no children).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::catalog::ResourceType;
use crate::schema::{ListType, always_present, atomic_struct, key_default, list_type};

/// A path in an object: a sequence of `FieldsV1` elements.
pub(crate) type Path = Vec<String>;

/// A set of field paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSet(BTreeMap<String, FieldSet>);

/// Which part of an object a write owns fields in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The main resource: everything but status when status is a subresource.
    Main,
    /// The `/status` subresource: status only.
    Status,
}

const STRIPPED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

impl FieldSet {
    /// Whether the set has no members.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields an applied configuration `obj` sets, as the API server tracks them:
    /// without apiVersion, kind, server-owned metadata, and status or everything-but-status
    /// depending on the scope.
    pub(crate) fn of_object(obj: &Value, rt: &ResourceType, scope: Scope) -> FieldSet {
        FieldSet::walk(obj, rt, scope, false)
    }

    /// The fields of `obj` as an update's diff sees them: like [`FieldSet::of_object`], and
    /// every map and list the typed empty object lacks is a member too (`.`), so an update
    /// that adds one owns it, as the API server's structured-merge-diff records it.
    pub(crate) fn of_update(obj: &Value, rt: &ResourceType, scope: Scope) -> FieldSet {
        FieldSet::walk(obj, rt, scope, true)
    }

    fn walk(obj: &Value, rt: &ResourceType, scope: Scope, dots: bool) -> FieldSet {
        let mut set = FieldSet::default();
        let Some(map) = obj.as_object() else {
            return set;
        };
        let mut names = Vec::new();
        for (k, v) in map {
            let keep = match (scope, k.as_str()) {
                (_, "apiVersion" | "kind") => false,
                (Scope::Status, field) => field == "status",
                (Scope::Main, "status") => !rt.status_subresource,
                _ => true,
            };
            if !keep {
                continue;
            }
            let child = set.child(format!("f:{k}"));
            names.push(k.as_str());
            if k == "metadata" {
                if let Some(meta) = v.as_object() {
                    for (mk, mv) in meta {
                        if STRIPPED_METADATA.contains(&mk.as_str()) {
                            continue;
                        }
                        names.push(mk.as_str());
                        walk_value(mv, &mut names, child.child(format!("f:{mk}")), rt, dots);
                        names.pop();
                    }
                }
                // Server-owned metadata alone is no member of the set.
                if child.is_empty() {
                    set.0.remove("f:metadata");
                }
            } else {
                walk_value(v, &mut names, child, rt, dots);
            }
            names.pop();
        }
        set
    }

    /// Parses a `fieldsV1` object.
    pub(crate) fn from_json(v: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        if let Some(map) = v.as_object() {
            for (k, child) in map {
                set.0.insert(k.clone(), FieldSet::from_json(child));
            }
        }
        set
    }

    /// The `fieldsV1` object.
    pub(crate) fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (k, child) in &self.0 {
            map.insert(k.clone(), child.to_json());
        }
        Value::Object(map)
    }

    fn child(&mut self, element: String) -> &mut FieldSet {
        self.0.entry(element).or_default()
    }

    /// Every member path.
    pub(crate) fn leaves(&self) -> Vec<Path> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect(&mut prefix, &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for (k, child) in &self.0 {
            prefix.push(k.clone());
            if child.0.is_empty() {
                out.push(prefix.clone());
            } else {
                child.collect(prefix, out);
            }
            prefix.pop();
        }
    }

    /// Whether `path` is a member.
    pub(crate) fn contains(&self, path: &[String]) -> bool {
        let mut node = self;
        for p in path {
            match node.0.get(p) {
                Some(n) => node = n,
                None => return false,
            }
        }
        node.0.is_empty()
    }

    /// Whether `path` is a member or a prefix of one.
    pub(crate) fn touches(&self, path: &[String]) -> bool {
        let mut node = self;
        for p in path {
            match node.0.get(p) {
                Some(n) => node = n,
                None => return false,
            }
        }
        true
    }

    /// Adds a member.
    pub(crate) fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for p in path {
            node = node.child(p.clone());
        }
    }

    /// Removes a member (and any members under it), pruning parents left empty.
    pub(crate) fn remove(&mut self, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        if rest.is_empty() {
            self.0.remove(first);
            return;
        }
        if let Some(child) = self.0.get_mut(first) {
            child.remove(rest);
            if child.0.is_empty() {
                self.0.remove(first);
            }
        }
    }
}

fn walk_value<'a>(
    v: &'a Value,
    names: &mut Vec<&'a str>,
    node: &mut FieldSet,
    rt: &ResourceType,
    dots: bool,
) {
    let dot = |node: &mut FieldSet, names: &[&str]| {
        if dots && !always_present(rt, names) {
            node.child(".".to_string());
        }
    };
    match v {
        Value::Object(map) if !map.is_empty() && !atomic_struct(rt, names) => {
            dot(node, names);
            for (k, child) in map {
                names.push(k.as_str());
                walk_value(child, names, node.child(format!("f:{k}")), rt, dots);
                names.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_type(rt, names) {
            ListType::Map(keys) => {
                if !items.iter().all(|i| i.is_object()) {
                    return;
                }
                dot(node, names);
                for item in items {
                    let Some(element) = key_element(item, &keys) else {
                        continue;
                    };
                    let child = node.child(element);
                    child.child(".".to_string());
                    if let Some(map) = item.as_object() {
                        for (k, field) in map {
                            names.push(k.as_str());
                            walk_value(field, names, child.child(format!("f:{k}")), rt, dots);
                            names.pop();
                        }
                    }
                }
            }
            ListType::Set => {
                dot(node, names);
                for item in items {
                    node.child(format!("v:{item}"));
                }
            }
            ListType::Atomic => {}
        },
        _ => {}
    }
}

/// `k:{"name":"x"}` for a list item, with the key fields it has, sorted by name.
pub(crate) fn key_element(item: &Value, keys: &[String]) -> Option<String> {
    let obj = item.as_object()?;
    let mut key = BTreeMap::new();
    for k in keys {
        if let Some(v) = obj.get(k).or_else(|| key_default(k)) {
            key.insert(k.as_str(), v);
        }
    }
    if key.is_empty() {
        return None;
    }
    Some(format!("k:{}", serde_json::to_string(&key).ok()?))
}

/// Whether a list item matches a `k:{...}` element.
fn item_matches_key(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter()
        .all(|(k, v)| item.get(k).or_else(|| key_default(k)) == Some(v))
}

fn find_item(items: &[Value], element: &str) -> Option<usize> {
    if let Some(k) = element.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        items.iter().position(|i| item_matches_key(i, &key))
    } else if let Some(v) = element.strip_prefix("v:") {
        let v: Value = serde_json::from_str(v).ok()?;
        items.iter().position(|i| *i == v)
    } else if let Some(i) = element.strip_prefix("i:") {
        let i: usize = i.parse().ok()?;
        (i < items.len()).then_some(i)
    } else {
        None
    }
}

/// The value at a path; `.` names the item it follows.
pub(crate) fn get_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = obj;
    for p in path {
        if p == "." {
            continue;
        }
        node = if let Some(f) = p.strip_prefix("f:") {
            node.as_object()?.get(f)?
        } else {
            let items = node.as_array()?;
            &items[find_item(items, p)?]
        };
    }
    Some(node)
}

/// Removes the value at a path; a path ending in `.` removes the list item.
pub(crate) fn remove_at(obj: &mut Value, path: &[String]) {
    let path: &[String] = match path.split_last() {
        Some((last, rest)) if last == "." => rest,
        _ => path,
    };
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut node = obj;
    for p in parent_path {
        let next = if let Some(f) = p.strip_prefix("f:") {
            node.as_object_mut().and_then(|m| m.get_mut(f))
        } else {
            match node.as_array_mut() {
                Some(items) => match find_item(items, p) {
                    Some(i) => items.get_mut(i),
                    None => None,
                },
                None => None,
            }
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = node.as_object_mut() {
            m.shift_remove(f);
        }
    } else if let Some(items) = node.as_array_mut()
        && let Some(i) = find_item(items, last)
    {
        items.remove(i);
    }
}

/// A path as structured-merge-diff prints it: `.spec.containers[name="web"].image`.
pub(crate) fn path_string(path: &[String]) -> String {
    let mut out = String::new();
    for p in path {
        if p == "." {
            continue;
        }
        if let Some(f) = p.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = p.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = p.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = p.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
