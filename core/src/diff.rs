//! What changed between two renders of a cluster's bundles: bundles and objects added, removed
//! or changed, and for a changed object every field, as JSON pointers.
//!
//! Objects are matched by identity (group, kind, namespace, name; a new API version of the same
//! object is a change of `/apiVersion`, not a removal and an addition). Field changes come from
//! an RFC 6902 diff of the two canonical objects (json-patch), with the old value looked up for
//! each path, so a reader sees `from → to`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::render::{ObjectId, RenderedBundle, RenderedObject};

/// How something changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only in the newer render.
    Added,
    /// Only in the older render.
    Removed,
    /// In both, different.
    Changed,
}

impl Change {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }
}

/// A bundle that differs between two renders for one cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleDiff {
    /// The bundle.
    pub bundle: String,
    /// Added, removed or changed.
    pub change: Change,
    /// Changes of the bundle's own settings (`/drift`, `/dependsOn`).
    pub settings: Vec<FieldDiff>,
    /// Objects that differ, in canonical order.
    pub objects: Vec<ObjectDiff>,
}

/// An object that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDiff {
    /// Its identity (as written in the newer render when it is in both).
    pub object: ObjectId,
    /// Added, removed or changed.
    pub change: Change,
    /// For a changed object, every field that differs.
    pub fields: Vec<FieldDiff>,
}

/// A field that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDiff {
    /// JSON pointer (RFC 6901), e.g. `/spec/replicas`.
    pub path: String,
    /// Added, removed or changed.
    pub change: Change,
    /// The old value, absent when added.
    pub from: Option<Value>,
    /// The new value, absent when removed.
    pub to: Option<Value>,
}

/// The difference between the bundles of two renders for one cluster (bundle name → bundle),
/// in bundle-name order; unchanged bundles are left out.
pub fn diff_cluster(
    from: &BTreeMap<String, RenderedBundle>,
    to: &BTreeMap<String, RenderedBundle>,
) -> Vec<BundleDiff> {
    let mut names: Vec<&String> = from.keys().chain(to.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| diff_bundle(name, from.get(name), to.get(name)))
        .collect()
}

/// The difference between two renders of one bundle; `None` when they are equal.
pub fn diff_bundle(
    name: &str,
    from: Option<&RenderedBundle>,
    to: Option<&RenderedBundle>,
) -> Option<BundleDiff> {
    let whole = |bundle: &RenderedBundle, change: Change| BundleDiff {
        bundle: name.to_owned(),
        change,
        settings: Vec::new(),
        objects: bundle
            .objects
            .iter()
            .map(|o| ObjectDiff {
                object: o.id.clone(),
                change,
                fields: Vec::new(),
            })
            .collect(),
    };
    match (from, to) {
        (None, None) => None,
        (None, Some(to)) => Some(whole(to, Change::Added)),
        (Some(from), None) => Some(whole(from, Change::Removed)),
        (Some(from), Some(to)) => {
            let settings = diff_values(&settings_of(from), &settings_of(to));
            let objects = diff_objects(&from.objects, &to.objects);
            (!settings.is_empty() || !objects.is_empty()).then(|| BundleDiff {
                bundle: name.to_owned(),
                change: Change::Changed,
                settings,
                objects,
            })
        }
    }
}

fn settings_of(bundle: &RenderedBundle) -> Value {
    serde_json::json!({
        "drift": bundle.drift,
        "dependsOn": bundle.depends_on,
    })
}

/// Objects added, removed or changed between two lists, matched by identity.
fn diff_objects(from: &[RenderedObject], to: &[RenderedObject]) -> Vec<ObjectDiff> {
    let key = |o: &RenderedObject| {
        let (group, kind, namespace, name) = o.id.sort_key();
        (
            group.to_owned(),
            kind.to_owned(),
            namespace.map(str::to_owned),
            name.to_owned(),
        )
    };
    let old: BTreeMap<_, &RenderedObject> = from.iter().map(|o| (key(o), o)).collect();
    let new: BTreeMap<_, &RenderedObject> = to.iter().map(|o| (key(o), o)).collect();
    let mut keys: Vec<_> = old.keys().chain(new.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| match (old.get(&k), new.get(&k)) {
            (Some(a), Some(b)) => {
                let fields = diff_values(&a.object, &b.object);
                (!fields.is_empty()).then(|| ObjectDiff {
                    object: b.id.clone(),
                    change: Change::Changed,
                    fields,
                })
            }
            (None, Some(b)) => Some(ObjectDiff {
                object: b.id.clone(),
                change: Change::Added,
                fields: Vec::new(),
            }),
            (Some(a), None) => Some(ObjectDiff {
                object: a.id.clone(),
                change: Change::Removed,
                fields: Vec::new(),
            }),
            (None, None) => None,
        })
        .collect()
}

/// Every field that differs between two JSON values, as JSON pointers with old and new values.
pub fn diff_values(from: &Value, to: &Value) -> Vec<FieldDiff> {
    json_patch::diff(from, to)
        .0
        .into_iter()
        .filter_map(|operation| {
            use json_patch::PatchOperation as Op;
            let (path, change, value) = match operation {
                Op::Add(op) => (op.path.to_string(), Change::Added, Some(op.value)),
                Op::Remove(op) => (op.path.to_string(), Change::Removed, None),
                Op::Replace(op) => (op.path.to_string(), Change::Changed, Some(op.value)),
                // A diff only adds, removes and replaces.
                Op::Move(_) | Op::Copy(_) | Op::Test(_) => return None,
            };
            let old = match change {
                Change::Added => None,
                _ => from.pointer(&path).cloned(),
            };
            Some(FieldDiff {
                path,
                change,
                from: old,
                to: value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::spec::DriftMode;

    fn object(value: Value) -> RenderedObject {
        RenderedObject {
            id: ObjectId::of(&value).unwrap(),
            object: value,
        }
    }

    fn bundle(objects: Vec<Value>) -> RenderedBundle {
        RenderedBundle {
            bundle: "web".into(),
            drift: DriftMode::Correct,
            depends_on: vec![],
            objects: objects.into_iter().map(object).collect(),
            allow: crate::spec::Allow::default(),
            create_namespace: None,
        }
    }

    fn deployment(replicas: u64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "web"},
               "spec": {"replicas": replicas}})
    }

    fn config_map(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": "web"}, "data": {"a": "1"}})
    }

    #[test]
    fn a_changed_field_is_reported_with_old_and_new_value() {
        let from = bundle(vec![deployment(1), config_map("a")]);
        let to = bundle(vec![deployment(3), config_map("a")]);
        let diff = diff_bundle("web", Some(&from), Some(&to)).unwrap();
        assert_eq!(diff.objects.len(), 1);
        let changed = &diff.objects[0];
        assert_eq!(changed.object.kind, "Deployment");
        assert_eq!(
            changed.fields,
            vec![FieldDiff {
                path: "/spec/replicas".into(),
                change: Change::Changed,
                from: Some(json!(1)),
                to: Some(json!(3)),
            }]
        );
    }

    #[test]
    fn objects_added_and_removed_are_matched_by_identity() {
        let from = bundle(vec![deployment(1), config_map("old")]);
        let to = bundle(vec![deployment(1), config_map("new")]);
        let diff = diff_bundle("web", Some(&from), Some(&to)).unwrap();
        let summary: Vec<(&str, Change)> = diff
            .objects
            .iter()
            .map(|o| (o.object.name.as_str(), o.change))
            .collect();
        assert_eq!(
            summary,
            vec![("new", Change::Added), ("old", Change::Removed)]
        );
    }

    #[test]
    fn equal_bundles_have_no_diff_and_missing_ones_are_whole() {
        let a = bundle(vec![deployment(1)]);
        assert_eq!(diff_bundle("web", Some(&a), Some(&a)), None);
        let added = diff_bundle("web", None, Some(&a)).unwrap();
        assert_eq!(added.change, Change::Added);
        assert_eq!(added.objects[0].change, Change::Added);
        let mut from = BTreeMap::new();
        from.insert("web".to_owned(), a.clone());
        let gone = diff_cluster(&from, &BTreeMap::new());
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].change, Change::Removed);
    }

    #[test]
    fn a_removed_field_keeps_its_old_value() {
        let fields = diff_values(&json!({"a": {"b": 1, "c": 2}}), &json!({"a": {"b": 1}}));
        assert_eq!(
            fields,
            vec![FieldDiff {
                path: "/a/c".into(),
                change: Change::Removed,
                from: Some(json!(2)),
                to: None,
            }]
        );
    }
}
