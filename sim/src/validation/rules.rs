//! What the API server refuses beyond an object's schema: label and annotation keys and
//! values, finalizer names, finalizers added during deletion, fields that may not change
//! (an immutable Secret's or ConfigMap's data, a binding's roleRef) and a Service without
//! ports. Messages and reasons are the API server's.

use serde_json::Value;

use crate::catalog::{Builtin, ResourceType};
use crate::pointer::At;
use crate::status::Cause;

/// The finalizers Kubernetes itself defines, allowed without a domain.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric \
    characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
    'MyValue',  or 'my_value',  or '12345', regex used for validation is \
    '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const NAME_PART: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', \
    and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or \
    '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// Every rule `new` breaks, given the stored `old` for an update.
pub(crate) fn rule_causes(rt: &ResourceType, old: Option<&Value>, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    metadata_causes(new, &mut causes);
    if let Some(old) = old {
        deletion_causes(old, new, &mut causes);
        immutable_causes(rt, old, new, &mut causes);
    }
    if rt.builtin == Some(Builtin::Service) {
        service_causes(new, &mut causes);
    }
    causes
}

fn invalid(field: &str, value: &str, message: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!(
            "Invalid value: {}: {message}",
            serde_json::to_string(value).unwrap_or_default()
        ),
        field: field.into(),
    }
}

fn metadata_causes(obj: &Value, causes: &mut Vec<Cause>) {
    let map_at = |name: &str| {
        obj.at(&format!("/metadata/{name}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    for (key, value) in &map_at("labels") {
        let value = value.as_str().unwrap_or_default();
        if !label_value(value) {
            causes.push(invalid("metadata.labels", value, LABEL_VALUE));
        }
        if !qualified_name(key) {
            causes.push(invalid("metadata.labels", key, NAME_PART));
        }
    }
    for key in map_at("annotations").keys() {
        if !qualified_name(key) {
            causes.push(invalid("metadata.annotations", key, NAME_PART));
        }
    }
    let finalizers = obj.at("/metadata/finalizers").and_then(Value::as_array);
    for (i, finalizer) in finalizers.into_iter().flatten().enumerate() {
        let finalizer = finalizer.as_str().unwrap_or_default();
        if !STANDARD_FINALIZERS.contains(&finalizer) && !finalizer.contains('/') {
            causes.push(invalid(
                &format!("metadata.finalizers[{i}]"),
                finalizer,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

/// An object being deleted may lose finalizers, never gain one.
fn deletion_causes(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    if old.at("/metadata/deletionTimestamp").is_none() {
        return;
    }
    let finalizers = |obj: &Value| -> Vec<String> {
        obj.at("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|f| {
                f.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = finalizers(old);
    let added: Vec<String> = finalizers(new)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    if !added.is_empty() {
        let list: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
        causes.push(Cause {
            reason: "FieldValueForbidden".into(),
            message: format!(
                "Forbidden: no new finalizers can be added if the object is being deleted, \
                 found new finalizers []string{{{}}}",
                list.join(", ")
            ),
            field: "metadata.finalizers".into(),
        });
    }
}

fn immutable_causes(rt: &ResourceType, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    match rt.builtin {
        Some(Builtin::Secret | Builtin::ConfigMap)
            if old.get("immutable") == Some(&true.into()) =>
        {
            for field in ["data", "binaryData"] {
                if old.get(field) != new.get(field) {
                    causes.push(Cause {
                        reason: "FieldValueForbidden".into(),
                        message: "Forbidden: field is immutable when `immutable` is set".into(),
                        field: field.into(),
                    });
                }
            }
        }
        Some(Builtin::RoleBinding | Builtin::ClusterRoleBinding)
            if old.get("roleRef") != new.get("roleRef") =>
        {
            let field = |name: &str| {
                new.at(&format!("/roleRef/{name}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let shown = serde_json::json!({
                "APIGroup": field("apiGroup"), "Kind": field("kind"), "Name": field("name"),
            });
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {shown}: field is immutable"),
                field: "roleRef".into(),
            });
        }
        _ => {}
    }
}

/// Every Service but a headless or ExternalName one needs a port.
fn service_causes(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec");
    let text = |name: &str| spec.and_then(|s| s.get(name)).and_then(Value::as_str);
    let ports = spec
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    if !ports && text("type") != Some("ExternalName") && text("clusterIP") != Some("None") {
        causes.push(Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: "spec.ports".into(),
        });
    }
}

fn label_value(value: &str) -> bool {
    value.is_empty() || name_part(value)
}

/// `[prefix/]name`, the prefix a DNS subdomain, the name at most 63 characters.
fn qualified_name(key: &str) -> bool {
    match key.rsplit_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|l| {
                    !l.is_empty()
                        && l.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
                && name_part(name)
        }
        None => name_part(key),
    }
}

fn name_part(name: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    name.len() <= 63
        && alnum(name.chars().next())
        && alnum(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
