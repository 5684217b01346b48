//! Server-side apply and managedFields: who owns which field, conflicts between
//! managers, and removal of fields a manager stops applying.

use serde_json::{Value, json};

use crate::catalog::ResourceType;
use crate::fieldset::{FieldSet, Path, Scope, get_at, key_element, path_string, remove_at};
use crate::pointer::At;
use crate::schema::{ListType, list_type};
use crate::status::Cause;

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn parse(v: &Value) -> Option<Entry> {
        Some(Entry {
            manager: v.get("manager")?.as_str()?.to_string(),
            operation: v.get("operation")?.as_str()?.to_string(),
            api_version: v
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            time: v
                .get("time")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            subresource: v
                .get("subresource")
                .and_then(Value::as_str)
                .map(str::to_string),
            fields: v
                .get("fieldsV1")
                .map(FieldSet::from_json)
                .unwrap_or_default(),
        })
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        });
        // An apply that never changed the object has no time, as on the API server.
        if !self.time.is_empty() {
            v["time"] = json!(self.time);
        }
        v["fieldsType"] = json!("FieldsV1");
        v["fieldsV1"] = self.fields.to_json();
        if let Some(s) = &self.subresource {
            v["subresource"] = json!(s);
        }
        v
    }

    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

fn entries_of(obj: Option<&Value>) -> Vec<Entry> {
    obj.and_then(|o| o.at("/metadata/managedFields"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Entry::parse).collect())
        .unwrap_or_default()
}

/// Stores the entries in the API server's order: by operation (Apply first), time (none
/// first), manager and subresource.
fn store_entries(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.sort_by(|a, b| {
        (&a.operation, &a.time, &a.manager, &a.subresource).cmp(&(
            &b.operation,
            &b.time,
            &b.manager,
            &b.subresource,
        ))
    });
    let entries: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_json)
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.shift_remove("managedFields");
        } else {
            meta.insert("managedFields".to_string(), Value::Array(entries));
        }
    }
}

fn subresource_of(scope: Scope) -> Option<&'static str> {
    match scope {
        Scope::Main => None,
        Scope::Status => Some("status"),
    }
}

/// Who applies, and how.
pub(crate) struct Applier<'a> {
    /// The resource type.
    pub(crate) rt: &'a ResourceType,
    /// The field manager.
    pub(crate) manager: &'a str,
    /// `apiVersion` of the request.
    pub(crate) api_version: &'a str,
    /// Main resource or status.
    pub(crate) scope: Scope,
    /// Take fields from other managers instead of failing.
    pub(crate) force: bool,
    /// Timestamp for the entry.
    pub(crate) now: &'a str,
}

impl Applier<'_> {
    /// Applies a configuration to the live object (or to nothing, creating it) and returns
    /// the merged object with its managedFields, or the conflicts with other managers.
    pub(crate) fn apply(&self, live: Option<&Value>, applied: &Value) -> Result<Value, Vec<Cause>> {
        let mut entries = entries_of(live);
        let sub = subresource_of(self.scope);
        let new_set = FieldSet::of_object(applied, self.rt, self.scope);
        let mine = entries
            .iter()
            .position(|e| e.is(self.manager, "Apply", sub));
        let old_set = mine.map(|i| entries[i].fields.clone()).unwrap_or_default();
        let empty = json!({});
        let live_obj = live.unwrap_or(&empty);

        let mut conflicts = Vec::new();
        let mut taken: Vec<(usize, Path)> = Vec::new();
        for path in new_set.leaves() {
            if path.last().map(String::as_str) == Some(".") {
                continue;
            }
            let Some(current) = get_at(live_obj, &path) else {
                continue;
            };
            if get_at(applied, &path) == Some(current) {
                continue;
            }
            for (i, e) in entries.iter().enumerate() {
                if Some(i) == mine || !e.fields.contains(&path) {
                    continue;
                }
                if self.force {
                    taken.push((i, path.clone()));
                } else {
                    let message = if e.operation == "Apply" {
                        format!("conflict with \"{}\"", e.manager)
                    } else {
                        format!("conflict with \"{}\" using {}", e.manager, e.api_version)
                    };
                    conflicts.push(Cause {
                        reason: "FieldManagerConflict".to_string(),
                        message,
                        field: path_string(&path),
                    });
                }
            }
        }
        if !conflicts.is_empty() {
            // By manager, as structured-merge-diff reports them.
            conflicts.sort_by(|a, b| a.message.cmp(&b.message));
            return Err(conflicts);
        }
        for (i, path) in taken {
            entries[i].fields.remove(&path);
        }

        let mut merged = live.cloned().unwrap_or_else(|| json!({}));
        for path in old_set.leaves() {
            if new_set.contains(&path) {
                continue;
            }
            // An item path `.../k:{..}/.` is judged by everything under the item.
            let scope_path: &[String] = match path.split_last() {
                Some((last, rest)) if last == "." => rest,
                _ => &path,
            };
            let others_own = entries
                .iter()
                .enumerate()
                .any(|(i, e)| Some(i) != mine && e.fields.touches(scope_path));
            if others_own || new_set.touches(scope_path) {
                continue;
            }
            remove_at(&mut merged, &path);
        }
        let mut names = Vec::new();
        merge(&mut merged, applied, &mut names, self.rt);

        // An apply that changes no field of the object keeps its entry's time (none for a
        // new entry), as the API server does, so a repeated apply changes nothing at all.
        let unchanged = equal_but_managed_fields(&merged, live_obj);
        let time = match mine {
            Some(i) if unchanged => entries[i].time.clone(),
            None if unchanged && live.is_some() => String::new(),
            _ => self.now.to_string(),
        };
        let entry = Entry {
            manager: self.manager.to_string(),
            operation: "Apply".to_string(),
            api_version: self.api_version.to_string(),
            time,
            subresource: sub.map(str::to_string),
            fields: new_set,
        };
        match mine {
            Some(i) => entries[i] = entry,
            None => entries.push(entry),
        }
        store_entries(&mut merged, entries);
        Ok(merged)
    }
}

/// Fields the API server fills in after it recorded an update's managed fields (a
/// Service's allocated addresses, a namespace's `kubernetes` finalizer), so no update owns
/// them.
const ALLOCATED: &[&[&str]] = &[
    &["f:spec", "f:clusterIP"],
    &["f:spec", "f:clusterIPs"],
    &["f:spec", "f:ipFamilies"],
    &["f:spec", "f:ipFamilyPolicy"],
    &["f:spec", "f:finalizers"],
];

/// Whether two objects are equal apart from `metadata.managedFields`.
fn equal_but_managed_fields(a: &Value, b: &Value) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.iter().all(|(k, va)| {
                    b.get(k).is_some_and(|vb| match k.as_str() {
                        "metadata" => equal_without(va, vb, "managedFields"),
                        _ => va == vb,
                    })
                })
        }
        _ => a == b,
    }
}

/// Whether two values are equal, ignoring the field `skip` when both are objects.
fn equal_without(a: &Value, b: &Value, skip: &str) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let kept = |m: &serde_json::Map<String, Value>| m.keys().filter(|k| *k != skip).count();
            kept(a) == kept(b)
                && a.iter()
                    .filter(|(k, _)| *k != skip)
                    .all(|(k, va)| b.get(k) == Some(va))
        }
        _ => a == b,
    }
}

/// Records the fields a create, update or patch changed as owned by `manager`
/// (operation `Update`), taking them from other managers without conflict.
pub(crate) fn track_update(
    rt: &ResourceType,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    scope: Scope,
    now: &str,
) {
    let mut entries = entries_of(old);
    let sub = subresource_of(scope);
    let empty = json!({});
    let old_obj = old.unwrap_or(&empty);
    let old_set = FieldSet::of_update(old_obj, rt, scope);
    let mut new_set = FieldSet::of_update(new, rt, scope);
    for allocated in ALLOCATED {
        let path: Path = allocated.iter().map(|f| f.to_string()).collect();
        // A headless Service's `None` is the client's own.
        if get_at(new, &path) != Some(&json!("None")) {
            new_set.remove(&path);
        }
    }
    let changed: Vec<Path> = new_set
        .leaves()
        .into_iter()
        .filter(|p| {
            if p.last().map(String::as_str) == Some(".") {
                !old_set.contains(p)
            } else {
                get_at(old_obj, p) != get_at(new, p)
            }
        })
        .collect();
    let removed: Vec<Path> = old_set
        .leaves()
        .into_iter()
        .filter(|p| !new_set.contains(p))
        .collect();
    if changed.is_empty() && removed.is_empty() {
        store_entries(new, entries);
        return;
    }
    for e in entries.iter_mut() {
        for p in changed.iter().chain(&removed) {
            e.fields.remove(p);
        }
    }
    let i = match entries.iter().position(|e| e.is(manager, "Update", sub)) {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".to_string(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: sub.map(str::to_string),
                fields: FieldSet::default(),
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[i];
    e.api_version = api_version.to_string();
    e.time = now.to_string();
    for p in &changed {
        e.fields.insert(p);
    }
    store_entries(new, entries);
}

/// Merges an applied configuration into an object: maps field by field, lists with
/// merge keys item by item, sets by value, everything else replaced.
fn merge<'a>(target: &mut Value, src: &'a Value, names: &mut Vec<&'a str>, rt: &ResourceType) {
    match (target, src) {
        (Value::Object(t), Value::Object(s)) => {
            for (k, v) in s {
                names.push(k.as_str());
                if v.is_null() {
                    t.shift_remove(k);
                } else {
                    match t.get_mut(k) {
                        Some(existing) => merge(existing, v, names, rt),
                        None => {
                            t.insert(k.clone(), v.clone());
                        }
                    }
                }
                names.pop();
            }
        }
        (Value::Array(t), Value::Array(s)) => match list_type(rt, names) {
            ListType::Map(keys) => {
                for item in s {
                    let found = key_element(item, &keys).and_then(|element| {
                        t.iter()
                            .position(|x| key_element(x, &keys).as_deref() == Some(&element))
                    });
                    match found {
                        Some(i) => merge(&mut t[i], item, names, rt),
                        None => t.push(item.clone()),
                    }
                }
            }
            ListType::Set => {
                for item in s {
                    if !t.contains(item) {
                        t.push(item.clone());
                    }
                }
            }
            ListType::Atomic => *t = s.clone(),
        },
        (t, s) => *t = s.clone(),
    }
}

/// Rejects an apply body that sets managedFields, as the API server does.
pub(crate) fn has_managed_fields(obj: &Value) -> bool {
    obj.at("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
}
