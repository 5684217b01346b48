//! Kubernetes `Status` failures, with the codes, reasons and messages of the real API server.

use serde_json::{Value, json};

use crate::catalog::ResourceType;

/// One cause in `details.causes` of a `Status`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldManagerConflict`, ...
    pub(crate) reason: String,
    /// Human-readable message of this cause.
    pub(crate) message: String,
    /// Field path such as `metadata.name`.
    pub(crate) field: String,
}

/// A failed request: becomes a `Status` body with its HTTP code.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ApiError {
    /// HTTP status code.
    pub(crate) code: u16,
    /// `Status.reason`; empty for none.
    pub(crate) reason: &'static str,
    /// `Status.message`.
    pub(crate) message: String,
    /// `Status.details`, if any.
    pub(crate) details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    /// 400 BadRequest.
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 404 for a path no resource serves.
    pub(crate) fn no_resource() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// 404 for a missing object.
    pub(crate) fn not_found(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.qualified_resource()),
        )
        .with_details(details(rt, name))
    }

    /// 404 for a namespace that does not exist.
    pub(crate) fn namespace_not_found(namespace: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("namespaces \"{namespace}\" not found"),
        )
        .with_details(json!({"name": namespace, "kind": "namespaces"}))
    }

    /// 409 AlreadyExists.
    pub(crate) fn already_exists(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified_resource()),
        )
        .with_details(details(rt, name))
    }

    /// 409 Conflict for an update against a stale resourceVersion.
    pub(crate) fn stale(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                rt.qualified_resource()
            ),
        )
        .with_details(details(rt, name))
    }

    /// 409 Conflict for a precondition (uid or resourceVersion) that does not hold.
    pub(crate) fn precondition(rt: &ResourceType, name: &str, what: String) -> ApiError {
        let mut d = json!({"name": name});
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        d["kind"] = json!(rt.kind);
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {what}",
                rt.kind
            ),
        )
        .with_details(d)
    }

    /// 409 Conflict for server-side apply fields owned by other managers.
    pub(crate) fn apply_conflicts(rt: &ResourceType, name: &str, causes: Vec<Cause>) -> ApiError {
        // The API server names neither the object nor its kind here, only the causes.
        let _ = (rt, name);
        let message = conflict_message(&causes);
        ApiError::new(409, "Conflict", message)
            .with_details(json!({"causes": causes_json(&causes)}))
    }

    /// 422 Invalid with field causes, message as `Kind.group "name" is invalid: ...`.
    pub(crate) fn invalid(rt: &ResourceType, name: &str, causes: Vec<Cause>) -> ApiError {
        let summary = if causes.len() == 1 {
            format!("{}: {}", causes[0].field, causes[0].message)
        } else {
            let items: Vec<String> = causes
                .iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect();
            format!("[{}]", items.join(", "))
        };
        let mut d = json!({"name": name, "kind": rt.kind});
        if name.is_empty() {
            d.as_object_mut().map(|d| d.shift_remove("name"));
        }
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        d["causes"] = causes_json(&causes);
        ApiError::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {summary}", rt.qualified_kind()),
        )
        .with_details(d)
    }

    /// 422 Invalid for request options (`PatchOptions.meta.k8s.io "" is invalid: ...`).
    pub(crate) fn invalid_options(kind: &str, field: &str, message: &str) -> ApiError {
        let reason = match message.split(':').next().unwrap_or_default() {
            "Required value" => "FieldValueRequired",
            "Forbidden" => "FieldValueForbidden",
            "Unsupported value" => "FieldValueNotSupported",
            "Too long" => "FieldValueTooLong",
            _ => "FieldValueInvalid",
        };
        let cause = Cause {
            reason: reason.to_string(),
            message: message.to_string(),
            field: field.to_string(),
        };
        ApiError::new(
            422,
            "Invalid",
            format!("{kind}.meta.k8s.io \"\" is invalid: {field}: {message}"),
        )
        .with_details(
            json!({"group": "meta.k8s.io", "kind": kind, "causes": causes_json(&[cause])}),
        )
    }

    /// 403 Forbidden for content in a terminating namespace.
    pub(crate) fn namespace_terminating(
        rt: &ResourceType,
        name: &str,
        namespace: &str,
    ) -> ApiError {
        ApiError::new(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace \
                 {namespace} because it is being terminated",
                rt.qualified_resource()
            ),
        )
        .with_details(json!({
            "name": name, "kind": rt.plural,
            "causes": [{"reason": "NamespaceTerminating",
                        "message": format!("namespace {namespace} is being terminated"),
                        "field": "metadata.namespace"}]
        }))
    }

    /// 405 for a verb a resource does not support.
    pub(crate) fn method_not_allowed(method: &str) -> ApiError {
        let _ = method;
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    /// 404 for a path under a group or version nobody serves: the API server's mux answers
    /// it in plain text, not with a Status (see [`ApiError::is_plain`]).
    pub(crate) fn page_not_found() -> ApiError {
        ApiError::new(404, "", "404 page not found")
    }

    /// Whether the answer is plain text rather than a Status.
    pub(crate) fn is_plain(&self) -> bool {
        self.code == 404 && self.reason.is_empty()
    }

    /// 410 Expired for a continue token or resourceVersion that was compacted.
    pub(crate) fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    /// 413 for a body over the API server's limit.
    pub(crate) fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 415 for a content type the verb does not take.
    pub(crate) fn unsupported_media_type(content_type: &str) -> ApiError {
        // The API server names neither the type it got nor those it takes.
        let _ = content_type;
        ApiError::new(415, "UnsupportedMediaType", "415: Unsupported Media Type")
            .with_details(json!({}))
    }

    /// 415 for a body encoding the simulator does not decode (protobuf, CBOR).
    pub(crate) fn unsupported_body(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"
            ),
        )
    }

    /// 500 InternalError, for the `ServerErrors` fault.
    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
            .with_details(json!({"causes": [{"message": "simulated server error"}]}))
    }

    /// 503 while the simulator shuts down.
    pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object.
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        });
        if !self.reason.is_empty() {
            status["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status["code"] = json!(self.code);
        status
    }
}

fn details(rt: &ResourceType, name: &str) -> Value {
    let mut d = json!({"name": name});
    if !rt.group.is_empty() {
        d["group"] = json!(rt.group);
    }
    d["kind"] = json!(rt.plural);
    d
}

fn causes_json(causes: &[Cause]) -> Value {
    Value::Array(
        causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect(),
    )
}

/// The message structured-merge-diff gives for apply conflicts.
fn conflict_message(causes: &[Cause]) -> String {
    if causes.len() == 1 {
        return format!(
            "Apply failed with 1 conflict: {}: {}",
            causes[0].message, causes[0].field
        );
    }
    // Grouped by manager, as structured-merge-diff prints them.
    let mut by_manager: Vec<(&str, Vec<&str>)> = Vec::new();
    for c in causes {
        match by_manager.iter_mut().find(|(m, _)| *m == c.message) {
            Some((_, fields)) => fields.push(&c.field),
            None => by_manager.push((&c.message, vec![&c.field])),
        }
    }
    let mut out = format!("Apply failed with {} conflicts: ", causes.len());
    let parts: Vec<String> = by_manager
        .iter()
        .map(|(m, fields)| {
            let m = m.replacen("conflict with", "conflicts with", 1);
            let lines: Vec<String> = fields.iter().map(|f| format!("- {f}")).collect();
            format!("{m}:\n{}", lines.join("\n"))
        })
        .collect();
    out.push_str(&parts.join("\n"));
    out
}

/// A `Status` with `status: Success`, as a delete that removed the object answers.
pub(crate) fn success(rt: &ResourceType, name: &str, uid: &str) -> Value {
    let mut d = details(rt, name);
    d["uid"] = json!(uid);
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d})
}
