//! A minimal OpenAPI v3 document per group-version: enough for clients to see which
//! query parameters the API takes (kubectl checks for `fieldValidation` before it
//! relies on server-side validation). No schemas are published.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::catalog::ResourceType;
use crate::discovery::MINOR;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the group-versions and where their documents are.
pub(crate) fn root(types: &[Arc<ResourceType>], base_path: &str) -> Value {
    let mut paths = Map::new();
    for rt in types {
        for v in &rt.versions {
            let p = gv_path(&rt.group, v);
            paths.entry(p.clone()).or_insert_with(|| {
                json!({"serverRelativeURL": format!("{base_path}/openapi/v3/{p}?hash={}", hash_of(types, &p))})
            });
        }
    }
    json!({"paths": paths})
}

/// A hash of what a group-version document describes, so clients cache it correctly.
fn hash_of(types: &[Arc<ResourceType>], gv: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for rt in types {
        for v in &rt.versions {
            if gv_path(&rt.group, v) == gv {
                for b in rt.key().bytes().chain(rt.kind.bytes()).chain(v.bytes()) {
                    h ^= u64::from(b);
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
    }
    format!("{h:016X}")
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`, if served.
pub(crate) fn group_version(types: &[Arc<ResourceType>], path: &str) -> Option<Value> {
    let mut paths = Map::new();
    for rt in types {
        for v in &rt.versions {
            if gv_path(&rt.group, v) != path {
                continue;
            }
            let gvk = json!({"group": rt.group, "version": v, "kind": rt.kind});
            let write_params = json!([
                param("dryRun"),
                param("fieldManager"),
                param("fieldValidation"),
                param("force")
            ]);
            let item = json!({
                "get": {"x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk, "responses": {"200": {"description": "OK"}}},
                "put": {"x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk, "parameters": write_params, "responses": {"200": {"description": "OK"}}},
                "patch": {"x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk, "parameters": write_params, "responses": {"200": {"description": "OK"}}},
                "delete": {"x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": gvk, "parameters": [param("dryRun")], "responses": {"200": {"description": "OK"}}},
            });
            let collection = json!({
                "get": {"x-kubernetes-action": "list", "x-kubernetes-group-version-kind": gvk, "responses": {"200": {"description": "OK"}}},
                "post": {"x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk, "parameters": write_params, "responses": {"201": {"description": "Created"}}},
            });
            let base = format!("/{path}");
            let (coll, one) = if rt.namespaced {
                (
                    format!("{base}/namespaces/{{namespace}}/{}", rt.plural),
                    format!("{base}/namespaces/{{namespace}}/{}/{{name}}", rt.plural),
                )
            } else {
                (
                    format!("{base}/{}", rt.plural),
                    format!("{base}/{}/{{name}}", rt.plural),
                )
            };
            paths.insert(coll, collection);
            paths.insert(one, item);
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{MINOR}.0")},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
