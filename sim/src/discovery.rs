//! Discovery documents: `/version`, `/api`, `/apis` and per group-version resource
//! lists, and aggregated discovery (`apidiscovery.k8s.io/v2`).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::catalog::{Builtin, ResourceType};

/// Kubernetes version the simulator reports (that of the k8s-openapi types it checks).
pub(crate) const MINOR: &str = "34";

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A resource's verbs, in the order the API server lists them: namespaces have no
/// deletecollection, and a CRD's resources list theirs in the order of its handler.
fn verbs(rt: &ResourceType) -> Vec<&'static str> {
    if rt.builtin.is_none() {
        return vec![
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "create",
            "update",
            "watch",
        ];
    }
    VERBS
        .into_iter()
        .filter(|v| !(rt.builtin == Some(Builtin::Namespace) && *v == "deletecollection"))
        .collect()
}

/// `/version`.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": MINOR,
        "emulationMajor": "1",
        "emulationMinor": MINOR,
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "33",
        "gitVersion": format!("v1.{MINOR}.0"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-08-27T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub(crate) fn core_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}],
    })
}

/// Groups in discovery order, each with its types; the core group is `""`.
fn groups(types: &[Arc<ResourceType>]) -> Vec<(String, Vec<Arc<ResourceType>>)> {
    let mut out: Vec<(String, Vec<Arc<ResourceType>>)> = Vec::new();
    for rt in types {
        match out.iter_mut().find(|(g, _)| *g == rt.group) {
            Some((_, v)) => v.push(rt.clone()),
            None => out.push((rt.group.clone(), vec![rt.clone()])),
        }
    }
    out
}

/// Versions of a group, preferred first.
fn group_versions(types: &[Arc<ResourceType>]) -> Vec<String> {
    let mut versions: Vec<String> = Vec::new();
    for rt in types {
        for v in &rt.versions {
            if !versions.contains(v) {
                versions.push(v.clone());
            }
        }
    }
    versions
}

fn api_group(group: &str, types: &[Arc<ResourceType>]) -> Value {
    let versions: Vec<Value> = group_versions(types)
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(json!({})),
    })
}

/// `/apis`.
pub(crate) fn group_list(types: &[Arc<ResourceType>]) -> Value {
    let groups: Vec<Value> = groups(types)
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, t)| api_group(g, t))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, if the group exists.
pub(crate) fn group(types: &[Arc<ResourceType>], group: &str) -> Option<Value> {
    let members: Vec<Arc<ResourceType>> =
        types.iter().filter(|t| t.group == group).cloned().collect();
    if members.is_empty() || group.is_empty() {
        return None;
    }
    let mut g = api_group(group, &members);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn subresources(rt: &ResourceType) -> Vec<(&'static str, String, String, &'static [&'static str])> {
    let mut subs = Vec::new();
    if rt.status_subresource {
        subs.push((
            "status",
            rt.group.clone(),
            rt.kind.clone(),
            &["get", "patch", "update"][..],
        ));
    }
    if rt.scale_subresource {
        subs.push((
            "scale",
            "autoscaling".to_string(),
            "Scale".to_string(),
            &["get", "patch", "update"][..],
        ));
    }
    subs
}

/// `/api/v1` or `/apis/{group}/{version}`, if served.
pub(crate) fn resource_list(
    types: &[Arc<ResourceType>],
    group: &str,
    version: &str,
) -> Option<Value> {
    let members: Vec<&Arc<ResourceType>> = types
        .iter()
        .filter(|t| t.group == group && t.serves(version))
        .collect();
    if members.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for rt in members {
        let mut r = json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": verbs(rt),
        });
        if !rt.short_names.is_empty() {
            r["shortNames"] = json!(rt.short_names);
        }
        if !rt.categories.is_empty() {
            r["categories"] = json!(rt.categories);
        }
        resources.push(r);
        for (sub, g, kind, verbs) in subresources(rt) {
            let mut s = json!({
                "name": format!("{}/{sub}", rt.plural),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if sub == "scale" {
                s["group"] = json!(g);
                s["version"] = json!("v1");
            }
            resources.push(s);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn aggregated_group(group: &str, types: &[Arc<ResourceType>]) -> Value {
    let versions: Vec<Value> = group_versions(types)
        .iter()
        .map(|v| {
            let resources: Vec<Value> = types
                .iter()
                .filter(|t| t.serves(v))
                .map(|rt| {
                    let mut r = json!({
                        "resource": rt.plural,
                        "responseKind": {"group": rt.group, "version": v, "kind": rt.kind},
                        "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": rt.singular,
                        "verbs": verbs(rt),
                    });
                    if !rt.short_names.is_empty() {
                        r["shortNames"] = json!(rt.short_names);
                    }
                    if !rt.categories.is_empty() {
                        r["categories"] = json!(rt.categories);
                    }
                    let subs: Vec<Value> = subresources(rt)
                        .into_iter()
                        .map(|(sub, g, kind, verbs)| {
                            let version = if sub == "scale" {
                                "v1".to_string()
                            } else {
                                v.clone()
                            };
                            json!({"subresource": sub,
                                   "responseKind": {"group": g, "version": version, "kind": kind},
                                   "verbs": verbs})
                        })
                        .collect();
                    if !subs.is_empty() {
                        r["subresources"] = json!(subs);
                    }
                    r
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": group, "creationTimestamp": null})
    };
    json!({"metadata": metadata, "versions": versions})
}

/// Aggregated discovery of `/api` (core) or `/apis` (all other groups).
pub(crate) fn aggregated(types: &[Arc<ResourceType>], core: bool) -> Value {
    let items: Vec<Value> = groups(types)
        .iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, t)| aggregated_group(g, t))
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}
