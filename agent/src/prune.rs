//! Pruning: deleting objects that left a bundle, in reverse dependency order with namespaces
//! last, and only objects that are still demonstrably the bundle's own.
//!
//! Before each delete the live object is read: it must still carry the bundle's label and must
//! not say `flotilla.dev/prune: "false"`; the delete is conditional on the uid that was read,
//! so an object replaced in between is not deleted. A namespace is deleted only when nothing
//! but what Kubernetes itself put there is left in it, because deleting a namespace deletes
//! everything inside it, whoever created it.

use std::collections::BTreeMap;

use futures::{StreamExt, stream};
use serde_json::Value;

use crate::catalog::{Catalog, Kind};
use crate::cluster::Cluster;
use crate::inventory::Entry;
use crate::object::{BUNDLE_LABEL, ObjectRef, PRUNE_ANNOTATION, Tier};
use crate::retry::ApiError;

/// Objects per kind read when checking whether a namespace is empty.
const NAMESPACE_SCAN_LIMIT: u32 = 50;

/// What became of each object pruning was asked to delete.
#[derive(Debug, Default)]
pub struct PruneOutcome {
    /// Deleted, or already gone.
    pub deleted: Vec<ObjectRef>,
    /// Left in place on purpose, with the reason; no longer owned by the bundle.
    pub kept: Vec<(ObjectRef, String)>,
    /// Deleting failed; still owned, tried again at the next apply.
    pub failed: Vec<(ObjectRef, ApiError)>,
}

enum Verdict {
    Deleted,
    Kept(String),
    Failed(ApiError),
}

/// Deletes `entries`, which must all belong to `bundle`, tier by tier in prune order.
pub async fn prune(
    cluster: &Cluster,
    catalog: &Catalog,
    bundle: &str,
    entries: Vec<Entry>,
    concurrency: usize,
) -> PruneOutcome {
    let mut tiers: BTreeMap<usize, Vec<Entry>> = BTreeMap::new();
    for entry in entries {
        let tier = Tier::of(&entry.id, entry.id.namespace.is_some());
        let position = Tier::PRUNE_ORDER
            .iter()
            .position(|t| *t == tier)
            .unwrap_or(0);
        tiers.entry(position).or_default().push(entry);
    }
    let mut outcome = PruneOutcome::default();
    for (_, entries) in tiers {
        let calls: Vec<_> = entries
            .into_iter()
            .map(|entry| async move {
                let verdict = prune_one(cluster, catalog, bundle, &entry).await;
                (entry.id, verdict)
            })
            .collect();
        let verdicts: Vec<(ObjectRef, Verdict)> = stream::iter(calls)
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for (id, verdict) in verdicts {
            match verdict {
                Verdict::Deleted => outcome.deleted.push(id),
                Verdict::Kept(reason) => outcome.kept.push((id, reason)),
                Verdict::Failed(error) => outcome.failed.push((id, error)),
            }
        }
    }
    outcome.deleted.sort();
    outcome.kept.sort_by(|a, b| a.0.cmp(&b.0));
    outcome.failed.sort_by(|a, b| a.0.cmp(&b.0));
    outcome
}

async fn prune_one(cluster: &Cluster, catalog: &Catalog, bundle: &str, entry: &Entry) -> Verdict {
    if entry.adopted {
        return Verdict::Kept(
            "it existed before Flotilla applied it, so Flotilla does not delete it".into(),
        );
    }
    let kind = catalog
        .lookup(&entry.api_version, &entry.id.kind)
        .or_else(|| catalog.lookup_preferred(&entry.id.group, &entry.id.kind));
    // A kind the cluster no longer serves has no objects left to delete.
    let Some(kind) = kind else {
        return Verdict::Deleted;
    };
    let live = match cluster.get(&kind, &entry.id).await {
        Ok(Some(live)) => live,
        Ok(None) => return Verdict::Deleted,
        Err(error) => return Verdict::Failed(error),
    };
    if let Some(reason) = keep_reason(&live, bundle) {
        return Verdict::Kept(reason);
    }
    if live
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        return Verdict::Deleted;
    }
    if entry.id.is_namespace() {
        match foreign_contents(cluster, catalog, &entry.id.name).await {
            Ok(foreign) if !foreign.is_empty() => {
                return Verdict::Kept(format!(
                    "it still holds objects Flotilla does not own ({}), which deleting it would delete",
                    foreign.join(", ")
                ));
            }
            Ok(_) => {}
            Err(error) => return Verdict::Failed(error),
        }
    }
    let uid = live.pointer("/metadata/uid").and_then(Value::as_str);
    match cluster.delete(&kind, &entry.id, uid).await {
        Ok(()) => Verdict::Deleted,
        Err(error) if error.is_conflict() => {
            Verdict::Kept("it was replaced by another object of the same name".into())
        }
        Err(error) => Verdict::Failed(error),
    }
}

/// Why a live object must not be deleted by `bundle`, if it must not.
pub fn keep_reason(live: &Value, bundle: &str) -> Option<String> {
    let label = live
        .pointer("/metadata/labels")
        .and_then(|labels| labels.get(BUNDLE_LABEL))
        .and_then(Value::as_str);
    match label {
        Some(owner) if owner == bundle => {}
        Some(owner) => {
            return Some(format!(
                "its {BUNDLE_LABEL} label says it now belongs to bundle {owner}"
            ));
        }
        None => return Some(format!("it no longer carries the {BUNDLE_LABEL} label")),
    }
    let annotation = live
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(PRUNE_ANNOTATION))
        .and_then(Value::as_str);
    (annotation == Some("false")).then(|| format!("it is annotated {PRUNE_ANNOTATION}: \"false\""))
}

/// Objects in a namespace that nobody expects to vanish with it: everything except what
/// Kubernetes creates in every namespace, what controllers derive from other objects (they
/// carry owner references), and what is already being deleted.
async fn foreign_contents(
    cluster: &Cluster,
    catalog: &Catalog,
    namespace: &str,
) -> Result<Vec<String>, ApiError> {
    let mut foreign = Vec::new();
    for kind in catalog.listable_namespaced() {
        if derived_kind(&kind) {
            continue;
        }
        let objects = match cluster.list(&kind, namespace, NAMESPACE_SCAN_LIMIT).await {
            Ok(objects) => objects,
            // Some kinds cannot be listed by this agent; they cannot be judged either way.
            Err(ApiError::Status {
                code: 403..=405, ..
            }) => continue,
            Err(error) => return Err(error),
        };
        for object in &objects {
            if !expected_in_namespace(&kind, object) {
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                foreign.push(format!("{} {name}", kind.resource.kind));
                if foreign.len() >= 3 {
                    return Ok(foreign);
                }
            }
        }
    }
    Ok(foreign)
}

/// Kinds whose objects only ever describe or follow other objects.
fn derived_kind(kind: &Kind) -> bool {
    matches!(
        (kind.resource.group.as_str(), kind.resource.kind.as_str()),
        ("", "Event" | "Endpoints")
            | ("events.k8s.io", "Event")
            | ("discovery.k8s.io", "EndpointSlice")
            | ("coordination.k8s.io", "Lease")
    )
}

fn expected_in_namespace(kind: &Kind, object: &Value) -> bool {
    let metadata = object.get("metadata");
    let has = |field: &str| {
        metadata
            .and_then(|m| m.get(field))
            .is_some_and(|v| !v.is_null())
    };
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let owned_by_another_object = metadata
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .is_some_and(|refs| !refs.is_empty());
    let created_by_kubernetes = matches!(
        (
            kind.resource.group.as_str(),
            kind.resource.kind.as_str(),
            name
        ),
        ("", "ServiceAccount", "default") | ("", "ConfigMap", "kube-root-ca.crt")
    );
    owned_by_another_object || created_by_kubernetes || has("deletionTimestamp")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn objects_without_the_bundles_label_are_kept() {
        let live = json!({"metadata": {"labels": {BUNDLE_LABEL: "db"}}});
        assert!(keep_reason(&live, "web").is_some_and(|r| r.contains("bundle db")));
        let live = json!({"metadata": {"labels": {}}});
        assert!(keep_reason(&live, "web").is_some_and(|r| r.contains("no longer carries")));
        let live = json!({"metadata": {"labels": {BUNDLE_LABEL: "web"}}});
        assert_eq!(keep_reason(&live, "web"), None);
    }

    #[test]
    fn prune_false_keeps_an_object() {
        let live = json!({"metadata": {
            "labels": {BUNDLE_LABEL: "web"},
            "annotations": {PRUNE_ANNOTATION: "false"}
        }});
        assert!(keep_reason(&live, "web").is_some_and(|r| r.contains("prune")));
        let live = json!({"metadata": {
            "labels": {BUNDLE_LABEL: "web"},
            "annotations": {PRUNE_ANNOTATION: "true"}
        }});
        assert_eq!(keep_reason(&live, "web"), None);
    }

    fn kind(group: &str, kind: &str) -> Kind {
        Kind {
            resource: kube::discovery::ApiResource {
                group: group.into(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: kind.into(),
                plural: String::new(),
            },
            namespaced: true,
        }
    }

    #[test]
    fn only_what_kubernetes_puts_in_a_namespace_is_expected_there() {
        let sa = kind("", "ServiceAccount");
        assert!(expected_in_namespace(
            &sa,
            &json!({"metadata": {"name": "default"}})
        ));
        assert!(!expected_in_namespace(
            &sa,
            &json!({"metadata": {"name": "app"}})
        ));
        let pod = kind("", "Pod");
        let owned = json!({"metadata": {"name": "p", "ownerReferences": [{"kind": "ReplicaSet"}]}});
        assert!(expected_in_namespace(&pod, &owned));
        let cm = kind("", "ConfigMap");
        assert!(!expected_in_namespace(
            &cm,
            &json!({"metadata": {"name": "someones"}})
        ));
        assert!(derived_kind(&kind("", "Event")));
        assert!(!derived_kind(&cm));
    }
}
