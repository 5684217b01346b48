//! Server-side printing: `Table` and `PartialObjectMetadata` renderings that kubectl
//! and kube-rs ask for through the Accept header.

use serde_json::{Value, json};

use crate::catalog::{Builtin, ResourceType};
use crate::pointer::At;

/// How a response renders objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rendering {
    /// Full objects.
    Full,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
    /// `meta.k8s.io/v1` `Table`.
    Table,
}

impl Rendering {
    /// Chooses by the Accept header, as the API server negotiates (first match wins).
    pub(crate) fn from_accept(accept: &str) -> Rendering {
        for part in accept.split(',') {
            let p = part.replace(' ', "");
            if p.contains("as=Table") && p.contains("g=meta.k8s.io") {
                return Rendering::Table;
            }
            if p.contains("as=PartialObjectMetadata") && p.contains("g=meta.k8s.io") {
                return Rendering::Metadata;
            }
            if p.starts_with("application/json") || p.starts_with("*/*") {
                return Rendering::Full;
            }
        }
        Rendering::Full
    }
}

/// `PartialObjectMetadata` of an object.
pub(crate) fn metadata_of(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// What a Table row carries besides its cells (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    /// No object.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter.
    pub(crate) fn parse(v: Option<&str>) -> IncludeObject {
        match v {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

fn column(name: &str, kind: &str, format: &str, priority: i64) -> Value {
    json!({"name": name, "type": kind, "format": format, "description": name, "priority": priority})
}

fn columns(rt: &ResourceType) -> Vec<Value> {
    let name = column("Name", "string", "name", 0);
    let age = column("Age", "string", "", 0);
    let s = |n: &str| column(n, "string", "", 0);
    let i = |n: &str| column(n, "integer", "", 0);
    match rt.builtin {
        Some(Builtin::Namespace) => vec![name, s("Status"), age],
        Some(Builtin::Node) => vec![name, s("Status"), s("Roles"), age, s("Version")],
        Some(Builtin::Pod) => vec![
            name,
            s("Ready"),
            s("Status"),
            s("Restarts"),
            age,
            column("IP", "string", "", 1),
            column("Node", "string", "", 1),
        ],
        Some(Builtin::Deployment) => vec![
            name,
            s("Ready"),
            i("Up-to-date"),
            i("Available"),
            age,
            column("Containers", "string", "", 1),
            column("Images", "string", "", 1),
            column("Selector", "string", "", 1),
        ],
        Some(Builtin::StatefulSet) => vec![name, s("Ready"), age],
        Some(Builtin::ReplicaSet) => vec![name, i("Desired"), i("Current"), i("Ready"), age],
        Some(Builtin::DaemonSet) => vec![
            name,
            i("Desired"),
            i("Current"),
            i("Ready"),
            i("Up-to-date"),
            i("Available"),
            s("Node Selector"),
            age,
        ],
        Some(Builtin::Service) => vec![
            name,
            s("Type"),
            s("Cluster-IP"),
            s("External-IP"),
            s("Port(s)"),
            age,
        ],
        Some(Builtin::ConfigMap) => vec![name, i("Data"), age],
        Some(Builtin::Secret) => vec![name, s("Type"), i("Data"), age],
        Some(Builtin::Job) => vec![name, s("Status"), s("Completions"), s("Duration"), age],
        Some(Builtin::PersistentVolumeClaim) => vec![
            name,
            s("Status"),
            s("Volume"),
            s("Capacity"),
            s("Access Modes"),
            s("StorageClass"),
            age,
        ],
        Some(Builtin::CustomResourceDefinition) => vec![name, column("Created At", "date", "", 0)],
        None if !rt.printer_columns.is_empty() => {
            let mut cols = vec![name];
            for c in &rt.printer_columns {
                cols.push(column(
                    c.get("name").and_then(Value::as_str).unwrap_or(""),
                    c.get("type").and_then(Value::as_str).unwrap_or("string"),
                    c.get("format").and_then(Value::as_str).unwrap_or(""),
                    c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                ));
            }
            cols
        }
        _ => vec![name, age],
    }
}

/// Evaluates a printer column's simple JSONPath (`.spec.size`, `.status.conditions[0].type`).
fn json_path(obj: &Value, path: &str) -> Value {
    let mut node = obj;
    for part in path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        let (field, index) = match part.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        node = match node.get(field) {
            Some(n) => n,
            None => return Value::Null,
        };
        if let Some(i) = index {
            node = match node.get(i) {
                Some(n) => n,
                None => return Value::Null,
            };
        }
    }
    node.clone()
}

fn int(obj: &Value, pointer: &str) -> i64 {
    obj.at(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.at(pointer).and_then(Value::as_str).unwrap_or("")
}

fn cells(rt: &ResourceType, obj: &Value) -> Vec<Value> {
    let name = json!(text(obj, "/metadata/name"));
    let age = json!(age(text(obj, "/metadata/creationTimestamp")));
    let len = |p: &str| obj.at(p).and_then(Value::as_object).map_or(0, |m| m.len());
    match rt.builtin {
        Some(Builtin::Namespace) => vec![name, json!(text(obj, "/status/phase")), age],
        Some(Builtin::Node) => vec![
            name,
            json!("Ready"),
            json!("control-plane"),
            age,
            json!(text(obj, "/status/nodeInfo/kubeletVersion")),
        ],
        Some(Builtin::Pod) => {
            let statuses = obj
                .at("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = obj
                .at("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses
                .iter()
                .filter(|s| s.get("ready") == Some(&json!(true)))
                .count();
            let restarts: i64 = statuses.iter().map(|s| int(s, "/restartCount")).sum();
            let waiting = statuses
                .iter()
                .find_map(|s| s.at("/state/waiting/reason").and_then(Value::as_str));
            let status = waiting.unwrap_or(text(obj, "/status/phase"));
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
                age,
                json!(text(obj, "/status/podIP")),
                json!(crate::cluster::NODE),
            ]
        }
        Some(Builtin::Deployment) => vec![
            name,
            json!(format!(
                "{}/{}",
                int(obj, "/status/readyReplicas"),
                int(obj, "/spec/replicas")
            )),
            json!(int(obj, "/status/updatedReplicas")),
            json!(int(obj, "/status/availableReplicas")),
            age,
        ],
        Some(Builtin::StatefulSet) => vec![
            name,
            json!(format!(
                "{}/{}",
                int(obj, "/status/readyReplicas"),
                int(obj, "/spec/replicas")
            )),
            age,
        ],
        Some(Builtin::ReplicaSet) => vec![
            name,
            json!(int(obj, "/spec/replicas")),
            json!(int(obj, "/status/replicas")),
            json!(int(obj, "/status/readyReplicas")),
            age,
        ],
        Some(Builtin::DaemonSet) => vec![
            name,
            json!(int(obj, "/status/desiredNumberScheduled")),
            json!(int(obj, "/status/currentNumberScheduled")),
            json!(int(obj, "/status/numberReady")),
            json!(int(obj, "/status/updatedNumberScheduled")),
            json!(int(obj, "/status/numberAvailable")),
            json!("<none>"),
            age,
        ],
        Some(Builtin::Service) => {
            let ports: Vec<String> = obj
                .at("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            format!(
                                "{}/{}",
                                int(p, "/port"),
                                p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let external = obj
                .at("/status/loadBalancer/ingress/0/ip")
                .and_then(Value::as_str)
                .unwrap_or(if text(obj, "/spec/type") == "LoadBalancer" {
                    "<pending>"
                } else {
                    "<none>"
                });
            vec![
                name,
                json!(text(obj, "/spec/type")),
                json!(text(obj, "/spec/clusterIP")),
                json!(external),
                json!(if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                }),
                age,
            ]
        }
        Some(Builtin::ConfigMap) => vec![name, json!(len("/data") + len("/binaryData")), age],
        Some(Builtin::Secret) => vec![name, json!(text(obj, "/type")), json!(len("/data")), age],
        Some(Builtin::Job) => {
            let done = obj
                .at("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| {
                    c.iter()
                        .find(|c| {
                            c.get("status") == Some(&json!("True"))
                                && matches!(
                                    c.get("type").and_then(Value::as_str),
                                    Some("Complete" | "Failed")
                                )
                        })
                        .and_then(|c| c.get("type").and_then(Value::as_str))
                });
            let status = done.unwrap_or("Running");
            vec![
                name,
                json!(status),
                json!(format!(
                    "{}/{}",
                    int(obj, "/status/succeeded"),
                    obj.at("/spec/completions")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                )),
                json!(""),
                age,
            ]
        }
        Some(Builtin::PersistentVolumeClaim) => vec![
            name,
            json!(text(obj, "/status/phase")),
            json!(text(obj, "/spec/volumeName")),
            json!(text(obj, "/status/capacity/storage")),
            json!(
                obj.at("/status/accessModes")
                    .and_then(Value::as_array)
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .map(short_mode)
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default()
            ),
            json!(text(obj, "/spec/storageClassName")),
            age,
        ],
        Some(Builtin::CustomResourceDefinition) => {
            vec![name, json!(text(obj, "/metadata/creationTimestamp"))]
        }
        None if !rt.printer_columns.is_empty() => {
            let mut cells = vec![name];
            for c in &rt.printer_columns {
                let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
                let v = json_path(obj, path);
                let is_date = c.get("type").and_then(Value::as_str) == Some("date");
                cells.push(match (&v, is_date) {
                    (Value::String(t), true) => json!(self::age(t)),
                    _ => v,
                });
            }
            cells
        }
        _ => vec![name, age],
    }
}

fn short_mode(m: &str) -> &str {
    match m {
        "ReadWriteOnce" => "RWO",
        "ReadOnlyMany" => "ROX",
        "ReadWriteMany" => "RWX",
        "ReadWriteOncePod" => "RWOP",
        other => other,
    }
}

/// kubectl's short age: `42s`, `5m`, `3h`, `2d`.
fn age(created: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(created) else {
        return "<unknown>".to_string();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A `Table` of objects.
pub(crate) fn table(
    rt: &ResourceType,
    objects: &[&Value],
    rv: Option<String>,
    include: IncludeObject,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = json!({"cells": cells(rt, obj)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = metadata_of(obj),
                IncludeObject::Object => row["object"] = (*obj).clone(),
            }
            row
        })
        .collect();
    let mut meta = json!({});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns(rt),
        "rows": rows,
    })
}
