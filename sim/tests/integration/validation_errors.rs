//! Every validation failure answers with the status code, reason and message a real
//! API server gives, in a Kubernetes `Status` body.

use crate::support::harness as support;

use serde_json::{Value, json};
use support::{Raw, client, get, raw, start};

const CM_PATH: &str = "/api/v1/namespaces/default/configmaps";

fn assert_status(r: &Raw, code: u16, reason: &str, message: &str) {
    assert_eq!(r.status.as_u16(), code, "{}", r.text);
    assert_eq!(r.body["kind"], "Status", "{}", r.text);
    assert_eq!(r.body["status"], "Failure", "{}", r.text);
    assert_eq!(r.body["code"], code, "{}", r.text);
    assert_eq!(r.body["reason"], reason, "{}", r.text);
    assert_eq!(r.body["message"], message, "{}", r.text);
}

fn first_cause(r: &Raw) -> &Value {
    &r.body["details"]["causes"][0]
}

async fn post(c: &kube::Client, path: &str, body: Value) -> Raw {
    raw(c, "POST", path, "application/json", body.to_string()).await
}

fn deployment(name: &str, replicas: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "x"}},
                    "template": {"metadata": {"labels": {"app": "x"}},
                                 "spec": {"containers": [{"name": "x", "image": "busybox"}]}}}})
}

#[tokio::test]
async fn unknown_resource_is_404() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let r = get(&c, "/api/v1/namespaces/default/gizmos").await;
    assert_status(
        &r,
        404,
        "NotFound",
        "the server could not find the requested resource",
    );
    // A group nobody serves is the API server's mux's plain-text 404.
    let r = get(&c, "/apis/nope.example.com/v1/things").await;
    assert_eq!(r.status.as_u16(), 404);
    assert_eq!(r.text.trim(), "404 page not found");
    let r = get(&c, "/api/v1/namespaces/default/configmaps/missing").await;
    assert_status(&r, 404, "NotFound", "configmaps \"missing\" not found");
    assert_eq!(
        r.body["details"],
        json!({"name": "missing", "kind": "configmaps"})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_names_are_422_per_kind_rule() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let r = post(
        &c,
        CM_PATH,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}),
    )
    .await;
    assert_status(
        &r,
        422,
        "Invalid",
        "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
    );
    assert_eq!(first_cause(&r)["field"], "metadata.name");
    assert_eq!(first_cause(&r)["reason"], "FieldValueInvalid");
    assert_eq!(r.body["details"]["kind"], "ConfigMap");

    let r = post(
        &c,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "Namespace \"a.b\" is invalid: metadata.name: Invalid value: \"a.b\": must not contain dots",
        "{}",
        r.text
    );

    let r = post(&c, "/api/v1/namespaces/default/services", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1abc"}, "spec": {"ports": [{"port": 80}]}})).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.text);
    assert!(r.body["message"].as_str().unwrap_or("").contains("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character"), "{}", r.text);

    let r = post(&c, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles", json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "a%b"}})).await;
    assert_status(
        &r,
        422,
        "Invalid",
        "Role.rbac.authorization.k8s.io \"a%b\" is invalid: metadata.name: Invalid value: \"a%b\": may not contain '%'",
    );
    assert_eq!(r.body["details"]["group"], "rbac.authorization.k8s.io");
    // RBAC names are path segments: upper case is fine there.
    let r = post(&c, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles", json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "system:Reader"}})).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);

    let long = "a".repeat(254);
    let r = post(
        &c,
        CM_PATH,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": long}}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 422);
    assert!(
        r.text.contains("must be no more than 253 characters"),
        "{}",
        r.text
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn type_errors_in_builtins_are_422_with_field_path() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let path = "/apis/apps/v1/namespaces/default/deployments";
    let r = post(&c, path, deployment("web", json!("three"))).await;
    assert_status(
        &r,
        422,
        "Invalid",
        "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
    );
    assert_eq!(first_cause(&r)["field"], "spec.replicas");

    // The same through server-side apply.
    let body = serde_json::to_string(&deployment("web", json!("three"))).unwrap_or_default();
    let r = raw(
        &c,
        "PATCH",
        &format!("{path}/web?fieldManager=t"),
        "application/apply-patch+yaml",
        body,
    )
    .await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.text);
    assert_eq!(first_cause(&r)["field"], "spec.replicas");

    let mut bad = deployment("web", json!(1));
    bad["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": "http"}]);
    let r = post(&c, path, bad).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.text);
    assert_eq!(
        first_cause(&r)["field"],
        "spec.template.spec.containers[0].ports[0].containerPort"
    );

    let mut missing = deployment("web", json!(1));
    missing["spec"]
        .as_object_mut()
        .map(|s| s.remove("selector"));
    let r = post(&c, path, missing).await;
    assert_status(
        &r,
        422,
        "Invalid",
        "Deployment.apps \"web\" is invalid: [spec.selector: Required value, \
         spec.template.metadata.labels: Invalid value: {\"app\":\"x\"}: `selector` does not \
         match template `labels`]",
    );
    assert_eq!(first_cause(&r)["reason"], "FieldValueRequired");

    let r = post(&c, path, deployment("web", json!(-1))).await;
    assert_status(
        &r,
        422,
        "Invalid",
        "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0",
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn field_validation_strict_rejects_and_warn_warns_on_unknown_fields() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}, "bogus": 1});
    let r = post(&c, &format!("{CM_PATH}?fieldValidation=Strict"), cm.clone()).await;
    assert_status(
        &r,
        400,
        "BadRequest",
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: \
         unknown field \"bogus\"",
    );

    let mut d = deployment("web", json!(1));
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = json!("Always");
    let r = post(
        &c,
        "/apis/apps/v1/namespaces/default/deployments?fieldValidation=Strict",
        d.clone(),
    )
    .await;
    assert_status(
        &r,
        400,
        "BadRequest",
        "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: \
         unknown field \"spec.template.spec.containers[0].imagePullPolice\"",
    );

    let r = post(&c, &format!("{CM_PATH}?fieldValidation=Warn"), cm.clone()).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    let warning = r
        .headers
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(warning, "299 - \"unknown field \\\"bogus\\\"\"");
    assert!(
        r.body.get("bogus").is_none(),
        "unknown field was stored: {}",
        r.text
    );

    let r = post(
        &c,
        &format!("{CM_PATH}?fieldValidation=Ignore"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "y"}, "bogus": 1}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 201);
    assert!(r.headers.get("warning").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn object_in_missing_namespace_is_404() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let r = post(
        &c,
        "/api/v1/namespaces/nope/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
    )
    .await;
    assert_status(&r, 404, "NotFound", "namespaces \"nope\" not found");
    assert_eq!(
        r.body["details"],
        json!({"name": "nope", "kind": "namespaces"})
    );
    let r = raw(
        &c,
        "PATCH",
        "/api/v1/namespaces/nope/configmaps/x?fieldManager=t",
        "application/apply-patch+yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .await;
    assert_status(&r, 404, "NotFound", "namespaces \"nope\" not found");
    sim.shutdown().await;
}

#[tokio::test]
async fn oversized_body_is_413_and_malformed_bodies_are_400() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"x": "a".repeat(3 * 1024 * 1024 + 10)}});
    let r = post(&c, CM_PATH, big).await;
    assert_status(
        &r,
        413,
        "RequestEntityTooLarge",
        "Request entity too large: limit is 3145728",
    );

    let r = raw(
        &c,
        "POST",
        CM_PATH,
        "application/json",
        "{\"apiVersion\": \"v1\", ",
    )
    .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    assert_eq!(r.body["reason"], "BadRequest");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("error decoding request body"),
        "{}",
        r.text
    );

    let r = raw(
        &c,
        "PATCH",
        &format!("{CM_PATH}/x?fieldManager=t"),
        "application/apply-patch+yaml",
        "apiVersion: v1\nkind: [unclosed\n",
    )
    .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("error decoding YAML"),
        "{}",
        r.text
    );

    let r = raw(
        &c,
        "PATCH",
        &format!("{CM_PATH}/x"),
        "application/merge-patch+json",
        "{nope",
    )
    .await;
    assert_eq!(
        r.status.as_u16(),
        404,
        "patching a missing object is 404 before the body is read: {}",
        r.text
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn conflicts_are_409() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}});
    let created = post(&c, CM_PATH, cm.clone()).await;
    assert_eq!(created.status.as_u16(), 201);
    let r = post(&c, CM_PATH, cm.clone()).await;
    assert_status(&r, 409, "AlreadyExists", "configmaps \"x\" already exists");

    let mut update = created.body.clone();
    update["data"]["a"] = json!("2");
    let ok = raw(
        &c,
        "PUT",
        &format!("{CM_PATH}/x"),
        "application/json",
        update.to_string(),
    )
    .await;
    assert_eq!(ok.status.as_u16(), 200, "{}", ok.text);
    // The same resourceVersion again is now stale.
    let r = raw(
        &c,
        "PUT",
        &format!("{CM_PATH}/x"),
        "application/json",
        update.to_string(),
    )
    .await;
    assert_status(
        &r,
        409,
        "Conflict",
        "Operation cannot be fulfilled on configmaps \"x\": the object has been modified; please apply your changes to the latest version and try again",
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn apply_requires_field_manager_and_rejects_managed_fields() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let body = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n";
    let r = raw(
        &c,
        "PATCH",
        &format!("{CM_PATH}/x"),
        "application/apply-patch+yaml",
        body,
    )
    .await;
    assert_status(
        &r,
        422,
        "Invalid",
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
    );

    let with_mf = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  managedFields: [{manager: m, operation: Apply}]\n";
    let r = raw(
        &c,
        "PATCH",
        &format!("{CM_PATH}/x?fieldManager=t"),
        "application/apply-patch+yaml",
        with_mf,
    )
    .await;
    assert_status(&r, 400, "BadRequest", "metadata.managedFields must be nil");

    let wrong = "apiVersion: apps/v1\nkind: ConfigMap\nmetadata: {name: x}\n";
    let r = raw(
        &c,
        "PATCH",
        &format!("{CM_PATH}/x?fieldManager=t"),
        "application/apply-patch+yaml",
        wrong,
    )
    .await;
    assert_status(
        &r,
        400,
        "BadRequest",
        "invalid object type: apps/v1, Kind=ConfigMap",
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn custom_resources_are_checked_against_their_schema() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object",
                        "required": ["size"],
                        "properties": {"size": {"type": "integer"}, "color": {"type": "string", "enum": ["red", "blue"]}}}}}}}]}
    });
    let r = post(
        &c,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        crd,
    )
    .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    let path = "/apis/example.com/v1/namespaces/default/widgets";
    let w = |spec: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec});

    let r = post(&c, path, w(json!({"size": "big"}))).await;
    assert_status(
        &r,
        422,
        "Invalid",
        "Widget.example.com \"w\" is invalid: spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\"",
    );
    let r = post(&c, path, w(json!({"color": "red"}))).await;
    assert_status(
        &r,
        422,
        "Invalid",
        "Widget.example.com \"w\" is invalid: spec.size: Required value",
    );
    let r = post(&c, path, w(json!({"size": 1, "color": "green"}))).await;
    assert_status(
        &r,
        422,
        "Invalid",
        "Widget.example.com \"w\" is invalid: spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\"",
    );
    let r = post(
        &c,
        &format!("{path}?fieldValidation=Strict"),
        w(json!({"size": 1, "shape": "round"})),
    )
    .await;
    assert_status(
        &r,
        400,
        "BadRequest",
        "Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: \
         unknown field \"spec.shape\"",
    );
    let r = post(&c, path, w(json!({"size": 1, "shape": "round"}))).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    assert!(
        r.body["spec"].get("shape").is_none(),
        "unknown fields are pruned: {}",
        r.text
    );

    let bad_crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "wrong"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "things", "kind": "Thing"},
                 "versions": [{"name": "v1", "served": true, "storage": true}]}});
    let r = post(
        &c,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        bad_crd,
    )
    .await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.text);
    assert!(
        r.text
            .contains("must be spec.names.plural+\\\".\\\"+spec.group"),
        "{}",
        r.text
    );
    sim.shutdown().await;
}
