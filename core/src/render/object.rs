//! Kubernetes objects in a rendered bundle: identity, namespace defaulting, overlay merges
//! and canonical order.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::RenderError;
use crate::location::SourceLocation;

/// Built-in kinds that live outside namespaces, by API group and kind.
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("networking.k8s.io", "IngressClass"),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
];

/// The identity of a Kubernetes object. Two ids name the same object when group, kind,
/// namespace and name agree ([`ObjectId::same_object`]); the version is how it is written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId {
    /// API group, empty for the core group.
    pub group: String,
    /// API version within the group, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Namespace, `None` for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

/// An object's identity across API versions: group, kind, namespace, name (what the hub's
/// index, the deletion guard and a preview's prune count key objects by).
pub type ObjectKey = (String, String, Option<String>, String);

impl ObjectId {
    /// The identity across API versions ([`ObjectKey`]).
    pub fn key(&self) -> ObjectKey {
        (
            self.group.clone(),
            self.kind.clone(),
            self.namespace.clone(),
            self.name.clone(),
        )
    }

    /// Reads the identity of an object; the error says which field is missing or wrong.
    pub fn of(object: &Value) -> Result<ObjectId, String> {
        let Value::Object(map) = object else {
            return Err(
                "a manifest must be a mapping with apiVersion, kind and metadata".to_owned(),
            );
        };
        let text = |value: Option<&Value>, field: &str| match value {
            Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
            Some(_) => Err(format!("`{field}` must be a non-empty string")),
            None => Err(format!("`{field}` is missing")),
        };
        let api_version = text(map.get("apiVersion"), "apiVersion")?;
        let kind = text(map.get("kind"), "kind")?;
        let metadata = map.get("metadata");
        let name = text(metadata.and_then(|m| m.get("name")), "metadata.name").map_err(|why| {
            if metadata.and_then(|m| m.get("generateName")).is_some() {
                "`metadata.generateName` is not supported: objects need a fixed `metadata.name` \
                 to be applied and pruned"
                    .to_owned()
            } else {
                why
            }
        })?;
        let namespace = match metadata.and_then(|m| m.get("namespace")) {
            None | Some(Value::Null) => None,
            Some(Value::String(ns)) if ns.is_empty() => None,
            value => Some(text(value, "metadata.namespace")?),
        };
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group.to_owned(), version.to_owned()),
            None => (String::new(), api_version),
        };
        Ok(ObjectId {
            group,
            version,
            kind,
            namespace,
            name,
        })
    }

    /// `apiVersion` as written in a manifest (`apps/v1`, or `v1` for the core group).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// True when both name the same object, whatever API version they are written in.
    pub fn same_object(&self, other: &ObjectId) -> bool {
        self.sort_key() == other.sort_key()
    }

    /// The canonical order of objects in a bundle: group, kind, namespace, name.
    pub fn sort_key(&self) -> (&str, &str, Option<&str>, &str) {
        (
            &self.group,
            &self.kind,
            self.namespace.as_deref(),
            &self.name,
        )
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.api_version(), self.kind)?;
        match &self.namespace {
            Some(namespace) => write!(f, "{namespace}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One object of a rendered bundle: its identity and its canonical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderedObject {
    /// Identity, read from the object.
    pub id: ObjectId,
    /// The object, keys sorted.
    pub object: Value,
}

/// An assembled object, where it is written, and whether its kind is cluster-scoped (a
/// built-in cluster-scoped kind or one a CRD of the bundle declares so).
pub(crate) struct Assembled {
    pub(crate) object: RenderedObject,
    pub(crate) origin: SourceLocation,
    pub(crate) cluster_scoped: bool,
}

/// An object being rendered, with where it came from.
pub(crate) struct SourcedObject {
    pub(crate) object: Value,
    pub(crate) origin: SourceLocation,
}

/// Turns parsed documents into the bundle's objects: `v1/List` items are flattened,
/// `namespace` is given to namespaced objects without one, cluster-scoped objects lose
/// any namespace, overlay objects are merged (RFC 7386) over the base object of the same
/// identity or added, and the result is checked for duplicates and sorted.
pub(crate) fn assemble(
    base: Vec<SourcedObject>,
    overlay: Vec<SourcedObject>,
    namespace: Option<&str>,
) -> Result<Vec<Assembled>, RenderError> {
    let base = flatten_lists(base)?;
    let overlay = flatten_lists(overlay)?;
    let cluster_scoped = cluster_scoped_kinds(base.iter().chain(&overlay));
    let mut objects: Vec<(ObjectId, SourcedObject)> = Vec::with_capacity(base.len());
    for item in base {
        let (id, item) = identify(item, namespace, &cluster_scoped)?;
        if let Some((_, first)) = objects.iter().find(|(other, _)| other.same_object(&id)) {
            return Err(duplicate(&id, first, &item));
        }
        objects.push((id, item));
    }
    let mut patched = BTreeSet::new();
    for patch in overlay {
        let (id, patch) = identify(patch, namespace, &cluster_scoped)?;
        match objects
            .iter_mut()
            .position(|(other, _)| other.same_object(&id))
        {
            Some(index) if patched.insert(index) => {
                json_patch::merge(&mut objects[index].1.object, &patch.object);
            }
            Some(index) => return Err(duplicate(&id, &objects[index].1, &patch)),
            None => {
                patched.insert(objects.len());
                objects.push((id, patch));
            }
        }
    }
    let mut rendered = objects
        .into_iter()
        .map(|(_, item)| {
            // A merge keeps the identity but may change the version; read it again.
            let (id, item) = identify(item, namespace, &cluster_scoped)?;
            let scoped = cluster_scoped.contains(&(id.group.clone(), id.kind.clone()));
            let object = RenderedObject {
                id,
                object: crate::hash::canonical_json(item.object),
            };
            Ok(Assembled {
                object,
                origin: item.origin,
                cluster_scoped: scoped,
            })
        })
        .collect::<Result<Vec<_>, RenderError>>()?;
    rendered.sort_by(|a, b| a.object.id.sort_key().cmp(&b.object.id.sort_key()));
    Ok(rendered)
}

fn duplicate(id: &ObjectId, first: &SourcedObject, second: &SourcedObject) -> RenderError {
    RenderError::DuplicateObject {
        object: id.to_string(),
        first: first.origin.clone(),
        second: second.origin.clone(),
    }
}

fn flatten_lists(items: Vec<SourcedObject>) -> Result<Vec<SourcedObject>, RenderError> {
    let mut flat = Vec::with_capacity(items.len());
    for item in items {
        let is_list = item.object.get("apiVersion").and_then(Value::as_str) == Some("v1")
            && item.object.get("kind").and_then(Value::as_str) == Some("List");
        if !is_list {
            flat.push(item);
            continue;
        }
        let Some(Value::Array(list)) = item.object.get("items") else {
            return Err(RenderError::InvalidObject {
                location: item.origin,
                message: "a `v1/List` needs an `items` list".to_owned(),
            });
        };
        flat.extend(list.iter().map(|object| SourcedObject {
            object: object.clone(),
            origin: item.origin.clone(),
        }));
    }
    Ok(flat)
}

/// Built-in cluster-scoped kinds plus those the bundle's own CRDs declare `Cluster`-scoped.
fn cluster_scoped_kinds<'a>(
    items: impl Iterator<Item = &'a SourcedObject>,
) -> BTreeSet<(String, String)> {
    let mut kinds: BTreeSet<(String, String)> = CLUSTER_SCOPED
        .iter()
        .map(|(group, kind)| ((*group).to_owned(), (*kind).to_owned()))
        .collect();
    for item in items {
        let object = &item.object;
        let is_crd = object.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition");
        let spec = object.get("spec");
        let scope = spec.and_then(|s| s.get("scope")).and_then(Value::as_str);
        let group = spec.and_then(|s| s.get("group")).and_then(Value::as_str);
        let kind = spec
            .and_then(|s| s.get("names"))
            .and_then(|n| n.get("kind"))
            .and_then(Value::as_str);
        if let (true, Some("Cluster"), Some(group), Some(kind)) = (is_crd, scope, group, kind) {
            kinds.insert((group.to_owned(), kind.to_owned()));
        }
    }
    kinds
}

fn identify(
    mut item: SourcedObject,
    namespace: Option<&str>,
    cluster_scoped: &BTreeSet<(String, String)>,
) -> Result<(ObjectId, SourcedObject), RenderError> {
    let mut id = ObjectId::of(&item.object).map_err(|message| RenderError::InvalidObject {
        location: item.origin.clone(),
        message,
    })?;
    let scoped = cluster_scoped.contains(&(id.group.clone(), id.kind.clone()));
    let metadata = item
        .object
        .get_mut("metadata")
        .and_then(Value::as_object_mut);
    if let Some(metadata) = metadata {
        if scoped {
            metadata.remove("namespace");
            id.namespace = None;
        } else if let (None, Some(namespace)) = (&id.namespace, namespace) {
            metadata.insert("namespace".to_owned(), Value::String(namespace.to_owned()));
            id.namespace = Some(namespace.to_owned());
        }
    }
    Ok((id, item))
}
