//! How lists merge: the list types and merge keys of the Kubernetes schema that
//! server-side apply and strategic merge patch follow.

use serde_json::Value;

use crate::catalog::{Builtin, ResourceType};
use crate::pointer::At;

/// How a list field merges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars, merged by value.
    Set,
    /// Items merged by the values of these keys (the first is the strategic-merge key).
    Map(Vec<String>),
}

fn map(keys: &[&str]) -> ListType {
    ListType::Map(keys.iter().map(|k| k.to_string()).collect())
}

/// The list type of the field at `path` (field names only, list items skipped).
pub(crate) fn list_type(rt: &ResourceType, path: &[&str]) -> ListType {
    match path {
        ["metadata", "finalizers"] => return ListType::Set,
        ["metadata", "ownerReferences"] => return map(&["uid"]),
        ["status", .., "conditions"] if rt.builtin.is_some() => return map(&["type"]),
        _ => {}
    }
    let Some(builtin) = rt.builtin else {
        return rt
            .schema(&rt.versions[0])
            .map(|s| crd_list_type(s, path))
            .unwrap_or(ListType::Atomic);
    };
    if builtin == Builtin::Service {
        return match path {
            ["spec", "ports"] => map(&["port", "protocol"]),
            ["spec", "ipFamilies" | "clusterIPs"] => ListType::Atomic,
            _ => ListType::Atomic,
        };
    }
    let pod_root: &[&str] = match builtin {
        Builtin::Pod => &["spec"],
        Builtin::Deployment
        | Builtin::StatefulSet
        | Builtin::DaemonSet
        | Builtin::ReplicaSet
        | Builtin::Job => &["spec", "template", "spec"],
        Builtin::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => return ListType::Atomic,
    };
    match path.strip_prefix(pod_root) {
        Some(rel) => pod_spec_list_type(rel),
        None => ListType::Atomic,
    }
}

fn pod_spec_list_type(rel: &[&str]) -> ListType {
    match rel {
        ["containers" | "initContainers" | "ephemeralContainers"] => map(&["name"]),
        [
            "containers" | "initContainers" | "ephemeralContainers",
            field,
        ] => match *field {
            "ports" => map(&["containerPort", "protocol"]),
            "env" => map(&["name"]),
            "volumeMounts" => map(&["mountPath"]),
            "volumeDevices" => map(&["devicePath"]),
            "resizePolicy" => map(&["resourceName"]),
            _ => ListType::Atomic,
        },
        ["volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates"] => map(&["name"]),
        ["hostAliases"] => map(&["ip"]),
        ["topologySpreadConstraints"] => map(&["topologyKey", "whenUnsatisfiable"]),
        _ => ListType::Atomic,
    }
}

/// The value a merge key takes when an item leaves it out: the API server defaults a port's
/// `protocol` to TCP, so `{containerPort: 80}` is the item `k:{"containerPort":80,"protocol":"TCP"}`
/// without its applier owning `protocol`.
pub(crate) fn key_default(key: &str) -> Option<&'static Value> {
    static TCP: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| Value::from("TCP"));
    (key == "protocol").then(|| &*TCP)
}

/// Whether the map at `path` is atomic (`+structType=atomic`, `+mapType=atomic`): owned and
/// replaced as a whole, as label selectors, a Service's selector and a role reference are.
pub(crate) fn atomic_struct(rt: &ResourceType, path: &[&str]) -> bool {
    let Some(builtin) = rt.builtin else {
        return false;
    };
    match path {
        ["spec", "selector"] => !matches!(builtin, Builtin::CronJob),
        ["spec", "podSelector"] | ["roleRef"] => true,
        [
            ..,
            "valueFrom",
            "configMapKeyRef" | "secretKeyRef" | "fieldRef" | "resourceFieldRef",
        ] => true,
        [.., "jobTemplate", "spec", "selector"] => true,
        _ => false,
    }
}

/// Whether the field at `path` is a struct or list every typed object serializes, even an
/// empty one (no `omitempty`, not a pointer): an update's diff never sees it added, so its
/// field set has no `.` for it.
pub(crate) fn always_present(rt: &ResourceType, path: &[&str]) -> bool {
    if rt.builtin.is_none() {
        return matches!(path, ["metadata"]);
    }
    matches!(
        path,
        ["metadata" | "spec" | "status"]
            | [.., "template"]
            | [.., "template", "metadata" | "spec"]
            | [.., "jobTemplate"]
            | [.., "jobTemplate", "metadata" | "spec"]
            | [
                "spec",
                "strategy" | "updateStrategy" | "scaleTargetRef" | "names"
            ]
            | ["status", "acceptedNames"]
            | [.., "containers" | "initContainers"]
            | [.., "containers" | "initContainers", "resources"]
            | ["spec", "resources"]
            | ["status", "loadBalancer"]
            | ["subjects" | "rules"]
            | [.., "backend", "service", "port"]
    )
}

/// Reads `x-kubernetes-list-type` and `x-kubernetes-list-map-keys` from a CRD schema.
fn crd_list_type(schema: &Value, path: &[&str]) -> ListType {
    let mut node = schema;
    for field in path {
        if node.get("type").and_then(Value::as_str) == Some("array") {
            let Some(items) = node.get("items") else {
                return ListType::Atomic;
            };
            node = items;
        }
        let Some(next) = node.get("properties").and_then(|p| p.get(*field)) else {
            return ListType::Atomic;
        };
        node = next;
    }
    match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListType::Set,
        Some("map") => {
            let keys: Vec<String> = node
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if keys.is_empty() {
                ListType::Atomic
            } else {
                ListType::Map(keys)
            }
        }
        _ => ListType::Atomic,
    }
}

/// Fills the defaults the real API server sets on list merge keys, so keys such as
/// `k:{"containerPort":80,"protocol":"TCP"}` match what kubectl sees on a real cluster.
pub(crate) fn default_merge_keys(rt: &ResourceType, obj: &mut Value) {
    let Some(builtin) = rt.builtin else { return };
    if builtin == Builtin::Service {
        default_protocol(obj.at_mut("/spec/ports"));
        return;
    }
    let pod_spec = match builtin {
        Builtin::Pod => "/spec",
        Builtin::Deployment
        | Builtin::StatefulSet
        | Builtin::DaemonSet
        | Builtin::ReplicaSet
        | Builtin::Job => "/spec/template/spec",
        Builtin::CronJob => "/spec/jobTemplate/spec/template/spec",
        _ => return,
    };
    let Some(spec) = obj.at_mut(pod_spec) else {
        return;
    };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            for c in containers {
                default_protocol(c.get_mut("ports"));
            }
        }
    }
}

fn default_protocol(ports: Option<&mut Value>) {
    if let Some(Value::Array(ports)) = ports {
        for p in ports {
            if let Some(p) = p.as_object_mut() {
                p.entry("protocol")
                    .or_insert_with(|| Value::String("TCP".to_string()));
            }
        }
    }
}
