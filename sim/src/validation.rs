//! Validation as the real API server does it: names per kind, built-in kinds checked
//! against the k8s-openapi types (with the field path of the first type error), custom
//! resources against their CRD's openAPIV3Schema, and unknown fields per
//! `fieldValidation`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::catalog::{Builtin, NameRule, ResourceType};
use crate::pointer::At;
use crate::status::{ApiError, Cause};

mod rules;

pub(crate) use rules::rule_causes;

/// How unknown fields are treated (`fieldValidation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    /// Dropped silently.
    Ignore,
    /// Dropped with a `Warning` header (the default).
    Warn,
    /// Rejected with 400.
    Strict,
}

impl FieldValidation {
    /// Parses the query parameter; unknown values are refused as the API server does.
    pub(crate) fn parse(v: Option<&str>) -> Result<FieldValidation, ApiError> {
        match v {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\" or \"Strict\", got {other:?}"
            ))),
        }
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Cause {
    Cause {
        reason: "FieldValueInvalid".to_string(),
        message: message.into(),
        field: field.into(),
    }
}

/// A value of the wrong type for a custom resource's schema.
fn type_invalid(field: &str, message: String) -> Cause {
    Cause {
        reason: "FieldValueTypeInvalid".to_string(),
        message,
        field: field.to_string(),
    }
}

fn required(field: impl Into<String>) -> Cause {
    Cause {
        reason: "FieldValueRequired".to_string(),
        message: "Required value".to_string(),
        field: field.into(),
    }
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_subdomain(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_label)
}

/// Whether a name is a valid RFC 1123 label (cluster names, namespaces).
pub(crate) fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label(s)
}

/// Validates `metadata.name` by the kind's rule; messages are the API server's.
pub(crate) fn name_causes(rt: &ResourceType, name: &str, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let field = "metadata.name";
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause {
            reason: "FieldValueRequired".to_string(),
            message: "Required value: name or generateName is required".to_string(),
            field: field.to_string(),
        });
        return causes;
    }
    match rt.name_rule {
        NameRule::Subdomain => {
            if name.len() > 253 {
                causes.push(invalid(
                    field,
                    format!(
                        "Invalid value: {}: must be no more than 253 characters",
                        q(name)
                    ),
                ));
            }
            if !is_subdomain(name) {
                causes.push(invalid(
                    field,
                    format!("Invalid value: {}: {SUBDOMAIN_MSG}", q(name)),
                ));
            }
        }
        NameRule::Label | NameRule::Dns1035 => {
            if name.len() > 63 {
                causes.push(invalid(
                    field,
                    format!(
                        "Invalid value: {}: must be no more than 63 characters",
                        q(name)
                    ),
                ));
            }
            let ok = if rt.name_rule == NameRule::Label {
                is_label(name)
            } else {
                is_label(name) && name.as_bytes()[0].is_ascii_lowercase()
            };
            if !ok {
                // A valid subdomain that is no label can only hold dots.
                let msg = if rt.name_rule == NameRule::Label && is_subdomain(name) {
                    "must not contain dots"
                } else if rt.name_rule == NameRule::Label {
                    LABEL_MSG
                } else {
                    DNS1035_MSG
                };
                causes.push(invalid(field, format!("Invalid value: {}: {msg}", q(name))));
            }
        }
        NameRule::PathSegment => {
            if name == "." || name == ".." {
                causes.push(invalid(
                    field,
                    format!("Invalid value: {}: may not be '{name}'", q(name)),
                ));
            }
            for bad in ["/", "%"] {
                if name.contains(bad) {
                    causes.push(invalid(
                        field,
                        format!("Invalid value: {}: may not contain '{bad}'", q(name)),
                    ));
                }
            }
        }
        NameRule::CrdName => {
            let group = obj.at("/spec/group").and_then(Value::as_str).unwrap_or("");
            let plural = obj
                .at("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or("");
            if name != format!("{plural}.{group}") {
                causes.push(invalid(
                    field,
                    format!(
                        "Invalid value: {}: must be spec.names.plural+\".\"+spec.group",
                        q(name)
                    ),
                ));
            }
        }
    }
    causes
}

/// The outcome of schema validation: the object as stored (unknown fields dropped) and
/// the unknown fields found, for `Warn` and `Strict`.
pub(crate) struct Checked {
    /// The object without unknown fields.
    pub(crate) object: Value,
    /// Paths of dropped unknown fields, such as `spec.foo`.
    pub(crate) unknown: Vec<String>,
}

/// Checks an object's types and required fields against its schema and finds unknown
/// fields. Type errors are 422 with the field path.
pub(crate) fn check_schema(rt: &ResourceType, name: &str, obj: Value) -> Result<Checked, ApiError> {
    match rt.builtin {
        Some(b) => check_builtin(rt, b, name, obj),
        None => check_custom(rt, name, obj),
    }
}

fn check_builtin(
    rt: &ResourceType,
    b: Builtin,
    name: &str,
    obj: Value,
) -> Result<Checked, ApiError> {
    use k8s_openapi::api::{apps, autoscaling, batch, core, networking, policy, rbac};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
    let typed = match b {
        Builtin::Namespace => typed::<core::v1::Namespace>(&obj),
        Builtin::Node => typed::<core::v1::Node>(&obj),
        Builtin::ConfigMap => typed::<core::v1::ConfigMap>(&obj),
        Builtin::Secret => typed::<core::v1::Secret>(&obj),
        Builtin::Service => typed::<core::v1::Service>(&obj),
        Builtin::ServiceAccount => typed::<core::v1::ServiceAccount>(&obj),
        Builtin::Pod => typed::<core::v1::Pod>(&obj),
        Builtin::Event => typed::<core::v1::Event>(&obj),
        Builtin::PersistentVolumeClaim => typed::<core::v1::PersistentVolumeClaim>(&obj),
        Builtin::PersistentVolume => typed::<core::v1::PersistentVolume>(&obj),
        Builtin::Deployment => typed::<apps::v1::Deployment>(&obj),
        Builtin::StatefulSet => typed::<apps::v1::StatefulSet>(&obj),
        Builtin::DaemonSet => typed::<apps::v1::DaemonSet>(&obj),
        Builtin::ReplicaSet => typed::<apps::v1::ReplicaSet>(&obj),
        Builtin::Job => typed::<batch::v1::Job>(&obj),
        Builtin::CronJob => typed::<batch::v1::CronJob>(&obj),
        Builtin::Role => typed::<rbac::v1::Role>(&obj),
        Builtin::RoleBinding => typed::<rbac::v1::RoleBinding>(&obj),
        Builtin::ClusterRole => typed::<rbac::v1::ClusterRole>(&obj),
        Builtin::ClusterRoleBinding => typed::<rbac::v1::ClusterRoleBinding>(&obj),
        Builtin::Ingress => typed::<networking::v1::Ingress>(&obj),
        Builtin::NetworkPolicy => typed::<networking::v1::NetworkPolicy>(&obj),
        Builtin::PodDisruptionBudget => typed::<policy::v1::PodDisruptionBudget>(&obj),
        Builtin::HorizontalPodAutoscaler => typed::<autoscaling::v2::HorizontalPodAutoscaler>(&obj),
        Builtin::CustomResourceDefinition => {
            typed::<apiextensions::v1::CustomResourceDefinition>(&obj)
        }
    };
    let round_trip = typed.map_err(|(path, message)| {
        let cause = type_cause(&obj, &path, &message);
        ApiError::invalid(rt, name, vec![cause])
    })?;
    let mut unknown = Vec::new();
    unknown_fields(&obj, &round_trip, String::new(), &mut unknown);
    let mut object = obj;
    for path in &unknown {
        remove_dotted(&mut object, path);
    }
    let causes = semantic_causes(b, &object);
    if !causes.is_empty() {
        return Err(ApiError::invalid(rt, name, causes));
    }
    Ok(Checked { object, unknown })
}

/// Deserializes into the k8s-openapi type and back; the error is (path, message).
fn typed<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Value, (String, String)> {
    let t: T = serde_path_to_error::deserialize(obj)
        .map_err(|e| (e.path().to_string(), e.inner().to_string()))?;
    serde_json::to_value(&t).map_err(|e| (String::new(), e.to_string()))
}

/// Turns a serde error into the cause a schema-validating API server reports.
fn type_cause(obj: &Value, path: &str, message: &str) -> Cause {
    let path = if path == "." { "" } else { path };
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or("");
        let full = if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return required(full);
    }
    let actual = value_at_dotted(obj, path);
    let expected = expected_type(message);
    match (actual, expected) {
        (Some(v), Some(expected)) => {
            let actual_type = json_type(v);
            invalid(
                path,
                format!(
                    "Invalid value: \"{actual_type}\": {path} in body must be of type {expected}: \"{actual_type}\""
                ),
            )
        }
        (Some(v), None) => invalid(path, format!("Invalid value: {v}: {message}")),
        (None, _) => invalid(path, format!("Invalid value: {message}")),
    }
}

fn expected_type(message: &str) -> Option<&'static str> {
    let expected = message.rsplit("expected ").next()?;
    let e = expected.trim();
    Some(if e.starts_with('i') || e.starts_with('u') {
        "integer"
    } else if e.starts_with('f') {
        "number"
    } else if e.contains("bool") {
        "boolean"
    } else if e.contains("string") || e.contains("date") || e.contains("quantity") {
        "string"
    } else if e.contains("sequence") || e.contains("array") {
        "array"
    } else if e.contains("struct") || e.contains("map") || e.starts_with("a ") {
        "object"
    } else {
        return None;
    })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Splits `spec.containers[0].image` into object keys and array indices.
fn dotted_segments(path: &str) -> Vec<Result<String, usize>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            out.push(Ok(rest[..i].to_string()));
            rest = &rest[i..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let end = stripped.find(']').unwrap_or(stripped.len());
                if let Ok(n) = stripped[..end].parse() {
                    out.push(Err(n));
                }
                rest = stripped.get(end + 1..).unwrap_or("");
            }
        } else {
            out.push(Ok(rest.to_string()));
        }
    }
    out
}

fn value_at_dotted<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = obj;
    for seg in dotted_segments(path) {
        node = match seg {
            Ok(k) => node.get(&k)?,
            Err(i) => node.get(i)?,
        };
    }
    Some(node)
}

fn remove_dotted(obj: &mut Value, path: &str) {
    let segs = dotted_segments(path);
    let Some((last, parents)) = segs.split_last() else {
        return;
    };
    let mut node = obj;
    for seg in parents {
        let next = match seg {
            Ok(k) => node.get_mut(k),
            Err(i) => node.get_mut(*i),
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    if let (Ok(k), Some(m)) = (last, node.as_object_mut()) {
        m.shift_remove(k);
    }
}

/// Fields present in the input but not in the typed round trip are unknown.
fn unknown_fields(input: &Value, typed: &Value, path: String, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(bv) => unknown_fields(v, bv, p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Rules beyond types that the API server's validation enforces for workloads.
fn semantic_causes(b: Builtin, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let template = match b {
        Builtin::Deployment | Builtin::StatefulSet | Builtin::ReplicaSet | Builtin::DaemonSet => {
            if let Some(r) = obj.at("/spec/replicas").and_then(Value::as_i64)
                && r < 0
            {
                causes.push(invalid(
                    "spec.replicas",
                    format!("Invalid value: {r}: must be greater than or equal to 0"),
                ));
            }
            if obj.at("/spec/selector").is_none_or(Value::is_null) {
                causes.push(required("spec.selector"));
            }
            selector_matches_template(obj, &mut causes);
            Some(("/spec/template/spec", "spec.template.spec"))
        }
        Builtin::Job => Some(("/spec/template/spec", "spec.template.spec")),
        Builtin::Pod => Some(("/spec", "spec")),
        _ => None,
    };
    if let Some((pointer, field)) = template
        && let Some(containers) = obj
            .at(&format!("{pointer}/containers"))
            .and_then(Value::as_array)
    {
        if containers.is_empty() {
            causes.push(required(format!("{field}.containers")));
        }
        for (i, c) in containers.iter().enumerate() {
            if c.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                causes.push(required(format!("{field}.containers[{i}].name")));
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                causes.push(required(format!("{field}.containers[{i}].image")));
            }
        }
    }
    causes
}

/// A workload's template labels must satisfy its selector; a missing selector matches
/// nothing, so its template is reported too, as the API server does.
fn selector_matches_template(obj: &Value, causes: &mut Vec<Cause>) {
    let selector = obj.at("/spec/selector");
    let match_labels = selector
        .and_then(|s| s.get("matchLabels"))
        .and_then(Value::as_object);
    if selector.is_some() && match_labels.is_none() {
        return;
    }
    let labels = obj
        .at("/spec/template/metadata/labels")
        .and_then(Value::as_object);
    let matches = match_labels.is_some_and(|selector| {
        selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    });
    if !matches {
        let sorted: std::collections::BTreeMap<&String, &Value> =
            labels.into_iter().flatten().collect();
        let shown = serde_json::to_string(&sorted).unwrap_or_default();
        causes.push(invalid(
            "spec.template.metadata.labels",
            format!("Invalid value: {shown}: `selector` does not match template `labels`"),
        ));
    }
}

/// Validates a custom resource against its version's openAPIV3Schema: types,
/// required fields and enums; fields the schema does not declare are unknown (and
/// pruned) unless `x-kubernetes-preserve-unknown-fields` keeps them.
fn check_custom(rt: &ResourceType, name: &str, mut obj: Value) -> Result<Checked, ApiError> {
    let version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or("")
        .to_string();
    let Some(schema) = rt.schema(&version).cloned() else {
        return Ok(Checked {
            object: obj,
            unknown: Vec::new(),
        });
    };
    let mut causes = Vec::new();
    let mut unknown = Vec::new();
    if let Some(map) = obj.as_object_mut() {
        let props = schema.get("properties");
        let preserve = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true);
        let keys: Vec<String> = map.keys().cloned().collect();
        for k in keys {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.and_then(|p| p.get(&k)) {
                Some(s) => {
                    if let Some(v) = map.get_mut(&k) {
                        check_node(s, v, &k, &mut causes, &mut unknown);
                    }
                }
                None if !preserve => {
                    unknown.push(k.clone());
                    map.shift_remove(&k);
                }
                None => {}
            }
        }
        required_fields(&schema, map, "", &mut causes);
    }
    if causes.is_empty() {
        Ok(Checked {
            object: obj,
            unknown,
        })
    } else {
        Err(ApiError::invalid(rt, name, causes))
    }
}

fn required_fields(
    schema: &Value,
    map: &serde_json::Map<String, Value>,
    path: &str,
    causes: &mut Vec<Cause>,
) {
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if matches!(r, "apiVersion" | "kind" | "metadata") && path.is_empty() {
                continue;
            }
            if !map.contains_key(r) {
                let p = if path.is_empty() {
                    r.to_string()
                } else {
                    format!("{path}.{r}")
                };
                causes.push(required(p));
            }
        }
    }
}

fn check_node(
    schema: &Value,
    v: &mut Value,
    path: &str,
    causes: &mut Vec<Cause>,
    unknown: &mut Vec<String>,
) {
    if v.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            causes.push(type_invalid(
                path,
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("object")
                ),
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => true,
        };
        if !ok && !(int_or_string && (v.is_string() || v.is_i64())) {
            let actual = json_type(v);
            causes.push(type_invalid(
                path,
                format!(
                    "Invalid value: \"{actual}\": {path} in body must be of type {t}: \"{actual}\""
                ),
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(v)
    {
        let supported: Vec<String> = options.iter().map(Value::to_string).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported".to_string(),
            message: format!(
                "Unsupported value: {v}: supported values: {}",
                supported.join(", ")
            ),
            field: path.to_string(),
        });
    }
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    match v {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    let p = format!("{path}.{k}");
                    match props.get(&k) {
                        Some(s) => {
                            if let Some(child) = map.get_mut(&k) {
                                check_node(s, child, &p, causes, unknown);
                            }
                        }
                        None if !preserve && schema.get("additionalProperties").is_none() => {
                            unknown.push(p);
                            map.shift_remove(&k);
                        }
                        None => {}
                    }
                }
                required_fields(schema, map, path, causes);
            } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, child) in map.iter_mut() {
                    check_node(ap, child, &format!("{path}.{k}"), causes, unknown);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    check_node(s, item, &format!("{path}[{i}]"), causes, unknown);
                }
            }
        }
        _ => {}
    }
}

/// Checks a CRD beyond its types: a storage version and a valid scope.
pub(crate) fn crd_causes(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let versions = obj
        .at("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(required("spec.versions"));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .count();
        if storage != 1 {
            causes.push(invalid(
                "spec.versions",
                format!("Invalid value: []apiextensions.CustomResourceDefinitionVersion{{...}}: must have exactly one version marked as storage version (found {storage})"),
            ));
        }
    }
    match obj.at("/spec/scope").and_then(Value::as_str) {
        Some("Namespaced" | "Cluster") => {}
        Some(other) => causes.push(Cause {
            reason: "FieldValueNotSupported".to_string(),
            message: format!(
                "Unsupported value: \"{other}\": supported values: \"Cluster\", \"Namespaced\""
            ),
            field: "spec.scope".to_string(),
        }),
        None => causes.push(required("spec.scope")),
    }
    causes
}
