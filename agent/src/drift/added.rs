//! Additive drift: fields another field manager added to an object a bundle owns (a label from
//! `kubectl label`, a second `containerPort` from `kubectl edit`, an env var from `kubectl
//! patch`). The projection in [`super::project`] never looks at them, because they are not in
//! the desired object; `metadata.managedFields` says who owns them.
//!
//! Rule (also in docs/agent.md, "Drift"): a field is *added* when it is owned, per the
//! `fieldsV1` of a `managedFields` entry, by a manager other than Flotilla's, and the desired
//! object does not set it. Left out, because they are bookkeeping, not someone's intent:
//! - entries for the `status` subresource (controllers report there);
//! - entries for the `scale` subresource, and `spec.replicas` from any manager: an autoscaler
//!   owns the replica count when the bundle leaves it out; when the bundle sets it, it is a
//!   desired field and ordinary drift;
//! - Kubernetes' own components ([`SYSTEM_MANAGERS`]): the controller manager writes
//!   `deployment.kubernetes.io/revision` on every Deployment and the root CA ConfigMap, the
//!   scheduler and kubelet bind and report Pods;
//! - `metadata.finalizers` and `metadata.ownerReferences`: controllers add them to the objects
//!   they look after;
//! - top-level `status`, `apiVersion` and `kind`.
//!
//! Other writes by add-ons (cert-manager's cainjector filling `caBundle`, `kubectl rollout
//! restart`'s annotation) are reported: there is no per-bundle list of paths to ignore yet.
//!
//! Each added field is reported at the shallowest path the desired object does not have:
//! `metadata.labels.team`, not `metadata.labels` (which the desired object may set),
//! `spec.template.spec.containers[name=web].ports[containerPort=9090]`, not its sub-fields.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::LIST_KEYS;

/// Kubernetes components whose writes to an object are bookkeeping, never additive drift.
/// Single-binary distributions write under their binary's name (`k3s`, MicroK8s' `kubelite`).
pub const SYSTEM_MANAGERS: [&str; 7] = [
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-apiserver",
    "cloud-controller-manager",
    "k3s",
    "kubelite",
];

/// Subresources whose writers never add drift: `status` is reported state, `scale` writes only
/// the replica count an autoscaler owns.
const IGNORED_SUBRESOURCES: [&str; 2] = ["status", "scale"];

/// Fields others own by design when the bundle does not set them: the replica count an
/// autoscaler owns, and the finalizers and owner references controllers add to objects they
/// look after (a load balancer controller's finalizer on a Service, an operator's on its
/// custom resource).
const IGNORED_PATHS: [&str; 3] = [
    "spec.replicas",
    "metadata.finalizers",
    "metadata.ownerReferences",
];

/// Whether `path` is, or lies inside, one of [`IGNORED_PATHS`].
fn ignored(path: &str) -> bool {
    IGNORED_PATHS.iter().any(|ignored| {
        path.strip_prefix(ignored)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    })
}

/// Top-level fields never reported.
const IGNORED_TOP_LEVEL: [&str; 3] = ["status", "apiVersion", "kind"];

/// Most paths named per object in a report; the rest are counted.
const MAX_PATHS: usize = 8;

/// A field another manager added to an owned object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddedField {
    /// Dotted path, such as `metadata.labels.team`.
    pub path: String,
    /// The field manager owning it, such as `kubectl-label`.
    pub manager: String,
}

/// The fields of `live` that managers other than Flotilla (and Kubernetes' own components)
/// own and `desired` does not set, sorted by path.
pub fn added_fields(desired: &Value, live: &Value) -> Vec<AddedField> {
    let Some(entries) = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries {
        let Some(manager) = entry.get("manager").and_then(Value::as_str) else {
            continue;
        };
        if manager == crate::object::FIELD_MANAGER || SYSTEM_MANAGERS.contains(&manager) {
            continue;
        }
        if entry
            .get("subresource")
            .and_then(Value::as_str)
            .is_some_and(|s| IGNORED_SUBRESOURCES.contains(&s))
        {
            continue;
        }
        let Some(Value::Object(fields)) = entry.get("fieldsV1") else {
            continue;
        };
        let mut paths = Vec::new();
        walk(fields, Some(desired), &mut String::new(), &mut paths);
        out.extend(
            paths
                .into_iter()
                .filter(|path| !ignored(path))
                .map(|path| AddedField {
                    path,
                    manager: manager.to_owned(),
                }),
        );
    }
    out.sort();
    out.dedup();
    out
}

/// One line for an object's added fields, grouped by manager: `metadata.labels.team added by
/// kubectl-label; not in Git and not removed by Flotilla — remove it or add it to the bundle`.
/// Empty when nothing was added.
pub fn describe(added: &[AddedField]) -> String {
    if added.is_empty() {
        return String::new();
    }
    let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for field in added {
        by_manager
            .entry(field.manager.as_str())
            .or_default()
            .push(field.path.as_str());
    }
    let mut parts: Vec<String> = by_manager
        .into_iter()
        .map(|(manager, paths)| {
            let mut named = paths
                .iter()
                .take(MAX_PATHS)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if paths.len() > MAX_PATHS {
                named.push_str(&format!(" and {} more", paths.len() - MAX_PATHS));
            }
            format!("{named} added by {manager}")
        })
        .collect();
    let it = if added.len() == 1 { "it" } else { "them" };
    parts.push(format!(
        "not in Git and not removed by Flotilla — remove {it} or add {it} to the bundle"
    ));
    parts.join("; ")
}

/// Collects the paths under `fields` (a `fieldsV1` node) that `desired` (the matching part of
/// the desired object, `None` when it has none) does not set.
fn walk(
    fields: &Map<String, Value>,
    desired: Option<&Value>,
    path: &mut String,
    out: &mut Vec<String>,
) {
    for (key, sub) in fields {
        let sub = sub.as_object();
        let has_children = sub.is_some_and(|s| s.keys().any(|k| k != "."));
        let len = path.len();
        if let Some(name) = key.strip_prefix("f:") {
            if path.is_empty() && IGNORED_TOP_LEVEL.contains(&name) {
                continue;
            }
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(name);
            let child = desired.and_then(|d| d.get(name));
            match (child, sub) {
                // A map or list the manager owns entries of: report the entries.
                (_, Some(sub)) if has_children => walk(sub, child, path, out),
                (None, _) => out.push(path.clone()),
                (Some(_), _) => {}
            }
        } else if let Some(item) = key.strip_prefix("k:") {
            let Ok(Value::Object(id)) = serde_json::from_str::<Value>(item) else {
                continue;
            };
            path.push_str(&item_label(&id));
            let matched = desired
                .and_then(Value::as_array)
                .and_then(|items| items.iter().find(|i| same_item(&id, i)));
            match (matched, sub) {
                (None, _) => out.push(path.clone()),
                (Some(item), Some(sub)) if has_children => {
                    // The key's own fields (a defaulted `protocol`) are the item's identity,
                    // which the desired item already names.
                    let mut rest = sub.clone();
                    rest.retain(|k, _| !k.strip_prefix("f:").is_some_and(|f| id.contains_key(f)));
                    walk(&rest, Some(item), path, out);
                }
                (Some(_), _) => {}
            }
        } else if let Some(value) = key.strip_prefix("v:") {
            let Ok(value) = serde_json::from_str::<Value>(value) else {
                continue;
            };
            let present = desired
                .and_then(Value::as_array)
                .is_some_and(|items| items.contains(&value));
            if !present {
                let shown = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                path.push_str(&format!("[{shown}]"));
                out.push(path.clone());
            }
        } else if let Some(index) = key.strip_prefix("i:") {
            let Ok(index) = index.parse::<usize>() else {
                continue;
            };
            path.push_str(&format!("[{index}]"));
            match (desired.and_then(|d| d.get(index)), sub) {
                (None, _) => out.push(path.clone()),
                (Some(item), Some(sub)) if has_children => walk(sub, Some(item), path, out),
                (Some(_), _) => {}
            }
        }
        path.truncate(len);
    }
}

/// Whether a desired list item is the live item a `k:` key names: every key field the desired
/// item sets is equal, and it sets at least one (a desired port leaves `protocol` defaulted).
fn same_item(id: &Map<String, Value>, desired: &Value) -> bool {
    let mut shared = 0;
    for (key, value) in id {
        match desired.get(key) {
            Some(d) if d == value => shared += 1,
            Some(_) => return false,
            None => {}
        }
    }
    shared > 0
}

/// `[name=web]`, `[containerPort=9090]`: the first of the usual list keys the item's key holds,
/// else all of its fields.
fn item_label(id: &Map<String, Value>) -> String {
    let shown = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    if let Some(key) = LIST_KEYS.into_iter().find(|k| id.contains_key(*k))
        && let Some(value) = id.get(key)
    {
        return format!("[{key}={}]", shown(value));
    }
    let all: Vec<String> = id
        .iter()
        .map(|(k, v)| format!("{k}={}", shown(v)))
        .collect();
    format!("[{}]", all.join(","))
}
