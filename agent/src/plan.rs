//! Planning a revision: every object identified, resolved to its API resource, given its
//! namespace and ownership labels, placed in its tier, and checked for duplicates. Nothing
//! here talks to the cluster; kinds are resolved through a lookup function.

use std::collections::{BTreeMap, HashMap};

use kube::discovery::ApiResource;
use serde_json::Value;

use crate::bundle::BundleRevision;
use crate::catalog::Kind;
use flotilla_core::render::as_applied;

use crate::object::{ObjectRef, Tier};
use crate::report::ObjectMessage;

/// One object of a revision, ready to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedObject {
    /// Identity.
    pub id: ObjectRef,
    /// API resource and scope.
    pub kind: Kind,
    /// Apply tier.
    pub tier: Tier,
    /// The object as applied: namespace set, ownership labels added, server fields removed.
    pub body: Value,
    /// The kind is defined by a CRD of this same revision that the cluster does not serve yet,
    /// so the object can only be checked once that CRD is established.
    pub awaits_crd: bool,
}

impl PlannedObject {
    /// The `apiVersion` the object is applied at.
    pub fn api_version(&self) -> &str {
        &self.kind.resource.api_version
    }
}

/// A revision's objects in apply order: by tier, then by identity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The objects.
    pub objects: Vec<PlannedObject>,
}

impl Plan {
    /// The objects of one tier.
    pub fn tier(&self, tier: Tier) -> impl Iterator<Item = &PlannedObject> {
        self.objects.iter().filter(move |o| o.tier == tier)
    }

    /// The object with this identity.
    pub fn get(&self, id: &ObjectRef) -> Option<&PlannedObject> {
        self.objects.iter().find(|o| &o.id == id)
    }
}

/// The `(apiVersion, kind)` pairs a revision names, for resolving before planning.
pub fn kinds_named(revision: &BundleRevision) -> Vec<(String, String)> {
    let mut kinds: Vec<(String, String)> = revision
        .objects
        .iter()
        .filter_map(|o| Some((str_field(o, "apiVersion")?, str_field(o, "kind")?)))
        .map(|(a, k)| (a.to_owned(), k.to_owned()))
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Plans a revision. `lookup` resolves `(apiVersion, kind)` to what the cluster serves.
/// Every problem is reported, not just the first.
pub fn plan(
    revision: &BundleRevision,
    lookup: impl Fn(&str, &str) -> Option<Kind>,
) -> Result<Plan, Vec<ObjectMessage>> {
    let defined = kinds_defined_by_crds(&revision.objects);
    let mut errors = Vec::new();
    let mut objects = Vec::with_capacity(revision.objects.len());
    let mut seen: HashMap<ObjectRef, usize> = HashMap::new();
    for (index, object) in revision.objects.iter().enumerate() {
        let planned = match plan_one(revision, index, object, &lookup, &defined) {
            Ok(planned) => planned,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        if let Some(first) = seen.insert(planned.id.clone(), index) {
            errors.push(ObjectMessage::new(
                &planned.id,
                format!(
                    "appears twice in the bundle (objects #{} and #{}); each object may be \
                     defined once",
                    first + 1,
                    index + 1
                ),
            ));
            continue;
        }
        objects.push(planned);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    objects.sort_by(|a, b| a.tier.cmp(&b.tier).then_with(|| a.id.cmp(&b.id)));
    Ok(Plan { objects })
}

fn plan_one(
    revision: &BundleRevision,
    index: usize,
    object: &Value,
    lookup: &impl Fn(&str, &str) -> Option<Kind>,
    defined: &HashMap<(String, String), Kind>,
) -> Result<PlannedObject, ObjectMessage> {
    let position = format!("object #{}", index + 1);
    let bad = |message: String| ObjectMessage {
        object: position.clone(),
        message,
    };
    let Value::Object(fields) = object else {
        return Err(bad(
            "is not a mapping; each object must be a Kubernetes object".into(),
        ));
    };
    let api_version =
        str_field(object, "apiVersion").ok_or_else(|| bad("has no apiVersion".into()))?;
    let kind_name = str_field(object, "kind").ok_or_else(|| bad("has no kind".into()))?;
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            bad(format!(
                "({kind_name}) has no metadata.name; Flotilla must know each object's name to \
                 manage it, so generateName is not supported"
            ))
        })?;
    let (kind, awaits_crd) = match lookup(api_version, kind_name) {
        Some(kind) => (kind, false),
        None => match defined.get(&(api_version.to_owned(), kind_name.to_owned())) {
            Some(kind) => (kind.clone(), true),
            None => {
                return Err(bad(format!(
                    "({kind_name} {name}): the cluster does not serve kind {kind_name} in \
                     {api_version}, and no CustomResourceDefinition in the bundle defines it"
                )));
            }
        },
    };
    let namespace = if kind.namespaced {
        let given = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        Some(
            given
                .filter(|n| !n.is_empty())
                .unwrap_or(&revision.namespace)
                .to_owned(),
        )
    } else {
        None
    };
    let id = ObjectRef {
        group: kind.resource.group.clone(),
        kind: kind.resource.kind.clone(),
        namespace,
        name: name.to_owned(),
    };
    if let Some(reason) =
        revision
            .allow
            .refuses(&id.group, &id.kind, id.namespace.as_deref(), &id.name)
    {
        return Err(bad(format!("({kind_name} {name}): {reason}")));
    }
    let body = as_applied(fields, id.namespace.as_deref(), &revision.name);
    Ok(PlannedObject {
        tier: Tier::of(&id, kind.namespaced),
        id,
        kind,
        body,
        awaits_crd,
    })
}

/// Kinds that CRDs among `objects` define, by `(apiVersion, kind)`, so their custom resources
/// can be planned before the cluster serves them.
fn kinds_defined_by_crds(objects: &[Value]) -> HashMap<(String, String), Kind> {
    let mut defined = HashMap::new();
    for crd in objects.iter().filter(|o| {
        str_field(o, "kind") == Some("CustomResourceDefinition")
            && str_field(o, "apiVersion").is_some_and(|v| v.starts_with("apiextensions.k8s.io/"))
    }) {
        let (Some(group), Some(kind), Some(plural)) = (
            crd.pointer("/spec/group").and_then(Value::as_str),
            crd.pointer("/spec/names/kind").and_then(Value::as_str),
            crd.pointer("/spec/names/plural").and_then(Value::as_str),
        ) else {
            continue;
        };
        let namespaced = crd.pointer("/spec/scope").and_then(Value::as_str) != Some("Cluster");
        let versions = crd.pointer("/spec/versions").and_then(Value::as_array);
        for version in versions.into_iter().flatten() {
            let Some(version) = version.get("name").and_then(Value::as_str) else {
                continue;
            };
            let api_version = format!("{group}/{version}");
            let resource = ApiResource {
                group: group.to_owned(),
                version: version.to_owned(),
                api_version: api_version.clone(),
                kind: kind.to_owned(),
                plural: plural.to_owned(),
            };
            defined.insert(
                (api_version, kind.to_owned()),
                Kind {
                    resource,
                    namespaced,
                },
            );
        }
    }
    defined
}

fn str_field<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Groups objects by tier, in apply order, skipping empty tiers.
pub fn by_tier<'a>(
    objects: impl IntoIterator<Item = &'a PlannedObject>,
) -> BTreeMap<Tier, Vec<&'a PlannedObject>> {
    let mut tiers: BTreeMap<Tier, Vec<&PlannedObject>> = BTreeMap::new();
    for object in objects {
        tiers.entry(object.tier).or_default().push(object);
    }
    tiers
}

#[cfg(test)]
mod tests;
