//! A rendered object as the agent applies it: what `flotilla render` prints and what the agent
//! sends with server-side apply are made by this one function.

use serde_json::{Map, Value};

/// Label naming the bundle that owns an object; set on every object Flotilla applies.
pub const BUNDLE_LABEL: &str = "flotilla.dev/bundle";

/// Annotation that, set to `"false"` on a live object, keeps it when it leaves its bundle.
pub const PRUNE_ANNOTATION: &str = "flotilla.dev/prune";

/// Standard label marking objects written by Flotilla.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] on Flotilla's objects.
pub const MANAGED_BY_VALUE: &str = "flotilla";

/// Metadata the API server owns; a manifest carrying it (an object saved from a cluster)
/// would fight the server, so it is left out.
const SERVER_METADATA: [&str; 7] = [
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
];

/// The object as applied for `bundle`: `status` and server-owned metadata removed, the
/// namespace set (`None`: cluster-scoped, so none), and the ownership labels added.
pub fn as_applied(fields: &Map<String, Value>, namespace: Option<&str>, bundle: &str) -> Value {
    let mut body = fields.clone();
    body.remove("status");
    let metadata = body
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(metadata) = metadata {
        for field in SERVER_METADATA {
            metadata.remove(field);
        }
        match namespace {
            Some(namespace) => {
                metadata.insert("namespace".into(), Value::String(namespace.to_owned()));
            }
            // A namespace on a cluster-scoped object means nothing; kubectl ignores it too.
            None => {
                metadata.remove("namespace");
            }
        }
        let labels = metadata
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if !labels.is_object() {
            *labels = Value::Object(Map::new());
        }
        if let Value::Object(labels) = labels {
            labels.insert(BUNDLE_LABEL.into(), Value::String(bundle.to_owned()));
            labels.insert(
                MANAGED_BY_LABEL.into(),
                Value::String(MANAGED_BY_VALUE.into()),
            );
        }
    }
    Value::Object(body)
}
