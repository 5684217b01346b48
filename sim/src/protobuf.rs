//! Protobuf request bodies, for the objects kubectl's typed generators send that way
//! (`kubectl create namespace|configmap|secret|serviceaccount|deployment`): decoded
//! with prost into the fields those generators set, then handled as JSON.
//!
//! Field numbers are those of the Kubernetes `generated.proto` files.

use std::collections::BTreeMap;

use base64::Engine;
use prost::Message;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

const MAGIC: &[u8] = b"k8s\x00";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    generate_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    namespace: Option<String>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
    #[prost(string, repeated, tag = "14")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Namespace {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    spec: Option<NamespaceSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct NamespaceSpec {
    #[prost(string, repeated, tag = "1")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, string", tag = "2")]
    data: BTreeMap<String, String>,
    #[prost(btree_map = "string, bytes", tag = "3")]
    binary_data: BTreeMap<String, Vec<u8>>,
    #[prost(bool, optional, tag = "4")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    r#type: Option<String>,
    #[prost(btree_map = "string, string", tag = "4")]
    string_data: BTreeMap<String, String>,
    #[prost(bool, optional, tag = "5")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct ServiceAccount {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(bool, optional, tag = "4")]
    automount_service_account_token: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct Deployment {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    spec: Option<DeploymentSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct DeploymentSpec {
    #[prost(int32, optional, tag = "1")]
    replicas: Option<i32>,
    #[prost(message, optional, tag = "2")]
    selector: Option<LabelSelector>,
    #[prost(message, optional, tag = "3")]
    template: Option<PodTemplateSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct LabelSelector {
    #[prost(btree_map = "string, string", tag = "1")]
    match_labels: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
struct PodTemplateSpec {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    spec: Option<PodSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct PodSpec {
    #[prost(message, repeated, tag = "2")]
    containers: Vec<Container>,
}

#[derive(Clone, PartialEq, Message)]
struct Container {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    image: Option<String>,
    #[prost(string, repeated, tag = "3")]
    command: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    args: Vec<String>,
    #[prost(message, repeated, tag = "6")]
    ports: Vec<ContainerPort>,
}

#[derive(Clone, PartialEq, Message)]
struct ContainerPort {
    #[prost(int32, optional, tag = "3")]
    container_port: Option<i32>,
    #[prost(string, optional, tag = "4")]
    protocol: Option<String>,
}

fn strings(m: &BTreeMap<String, String>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn b64(m: &BTreeMap<String, Vec<u8>>) -> Value {
    let e = base64::engine::general_purpose::STANDARD;
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), json!(e.encode(v))))
            .collect(),
    )
}

fn meta(m: Option<&ObjectMeta>) -> Value {
    let mut out = Map::new();
    if let Some(m) = m {
        for (k, v) in [
            ("name", &m.name),
            ("generateName", &m.generate_name),
            ("namespace", &m.namespace),
        ] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                out.insert(k.to_string(), json!(v));
            }
        }
        if !m.labels.is_empty() {
            out.insert("labels".to_string(), strings(&m.labels));
        }
        if !m.annotations.is_empty() {
            out.insert("annotations".to_string(), strings(&m.annotations));
        }
        if !m.finalizers.is_empty() {
            out.insert("finalizers".to_string(), json!(m.finalizers));
        }
    }
    Value::Object(out)
}

fn container(c: &Container) -> Value {
    let mut out = json!({"name": c.name, "image": c.image, "resources": {}});
    if !c.command.is_empty() {
        out["command"] = json!(c.command);
    }
    if !c.args.is_empty() {
        out["args"] = json!(c.args);
    }
    if !c.ports.is_empty() {
        out["ports"] = Value::Array(
            c.ports
                .iter()
                .map(|p| json!({"containerPort": p.container_port, "protocol": p.protocol.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "TCP".into())}))
                .collect(),
        );
    }
    out
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("error decoding protobuf body: {e}"))
}

/// Decodes a `application/vnd.kubernetes.protobuf` body into the JSON object it encodes.
pub(crate) fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s protobuf prefix"))?;
    let unknown = Unknown::decode(envelope).map_err(bad)?;
    let tm = unknown.type_meta.unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let raw = raw.as_slice();
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => {
            let ns = Namespace::decode(raw).map_err(bad)?;
            let mut o = json!({"metadata": meta(ns.metadata.as_ref())});
            if let Some(spec) = ns.spec.filter(|s| !s.finalizers.is_empty()) {
                o["spec"] = json!({"finalizers": spec.finalizers});
            }
            o
        }
        ("v1", "ConfigMap") => {
            let cm = ConfigMap::decode(raw).map_err(bad)?;
            let mut o = json!({"metadata": meta(cm.metadata.as_ref())});
            if !cm.data.is_empty() {
                o["data"] = strings(&cm.data);
            }
            if !cm.binary_data.is_empty() {
                o["binaryData"] = b64(&cm.binary_data);
            }
            if let Some(i) = cm.immutable {
                o["immutable"] = json!(i);
            }
            o
        }
        ("v1", "Secret") => {
            let s = Secret::decode(raw).map_err(bad)?;
            let mut o = json!({"metadata": meta(s.metadata.as_ref())});
            if !s.data.is_empty() {
                o["data"] = b64(&s.data);
            }
            if !s.string_data.is_empty() {
                o["stringData"] = strings(&s.string_data);
            }
            if let Some(t) = s.r#type.filter(|t| !t.is_empty()) {
                o["type"] = json!(t);
            }
            if let Some(i) = s.immutable {
                o["immutable"] = json!(i);
            }
            o
        }
        ("v1", "ServiceAccount") => {
            let sa = ServiceAccount::decode(raw).map_err(bad)?;
            let mut o = json!({"metadata": meta(sa.metadata.as_ref())});
            if let Some(a) = sa.automount_service_account_token {
                o["automountServiceAccountToken"] = json!(a);
            }
            o
        }
        ("apps/v1", "Deployment") => {
            let d = Deployment::decode(raw).map_err(bad)?;
            let spec = d.spec.unwrap_or_default();
            let template = spec.template.unwrap_or_default();
            let containers: Vec<Value> = template
                .spec
                .unwrap_or_default()
                .containers
                .iter()
                .map(container)
                .collect();
            let mut s = json!({
                "selector": {"matchLabels": strings(&spec.selector.unwrap_or_default().match_labels)},
                "template": {"metadata": meta(template.metadata.as_ref()), "spec": {"containers": containers}},
                "strategy": {},
            });
            if let Some(r) = spec.replicas {
                s["replicas"] = json!(r);
            }
            json!({"metadata": meta(d.metadata.as_ref()), "spec": s})
        }
        _ => {
            return Err(ApiError::unsupported_body(&format!(
                "application/vnd.kubernetes.protobuf ({api_version} {kind}); send JSON or YAML"
            )));
        }
    };
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}
