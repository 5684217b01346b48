//! Rules the differential corpus found a real API server enforcing (docs/simulator.md), held
//! here too so they stay without a real cluster: what is refused, what is converted, and how
//! deletions and watches answer.

use crate::support::harness as support;

use serde_json::{Value, json};
use support::{Raw, client, get, raw, start};

const CM: &str = "/api/v1/namespaces/default/configmaps";

async fn post(c: &kube::Client, path: &str, body: Value) -> Raw {
    raw(c, "POST", path, "application/json", body.to_string()).await
}

async fn merge(c: &kube::Client, path: &str, body: Value) -> Raw {
    raw(
        c,
        "PATCH",
        path,
        "application/merge-patch+json",
        body.to_string(),
    )
    .await
}

fn cause_fields(r: &Raw) -> Vec<String> {
    r.body["details"]["causes"]
        .as_array()
        .map(|c| c.iter().map(|c| c["field"].to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn labels_finalizers_and_immutable_fields_are_refused() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let bad_label = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "l", "labels": {"app": "not valid!"}}});
    let r = post(&c, CM, bad_label).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.text);
    assert_eq!(cause_fields(&r), ["\"metadata.labels\""]);

    let bad_finalizer = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "f", "finalizers": ["hold"]}});
    let r = post(&c, CM, bad_finalizer).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.text);
    assert_eq!(cause_fields(&r), ["\"metadata.finalizers[0]\""]);

    let held = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "h", "finalizers": ["example.com/hold"]}});
    assert_eq!(post(&c, CM, held).await.status.as_u16(), 201);
    let r = raw(&c, "DELETE", &format!("{CM}/h"), "application/json", "").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    let more = json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}});
    let r = merge(&c, &format!("{CM}/h"), more).await;
    assert_eq!(
        r.status.as_u16(),
        422,
        "no finalizer is added while deleting: {}",
        r.text
    );
    let r = merge(
        &c,
        &format!("{CM}/h"),
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(
        r.body["metadata"]["finalizers"],
        Value::Null,
        "the answer is the write"
    );
    assert_eq!(get(&c, &format!("{CM}/h")).await.status.as_u16(), 404);

    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s"}, "immutable": true, "stringData": {"k": "v"}});
    let r = post(&c, "/api/v1/namespaces/default/secrets", secret).await;
    assert_eq!(
        r.body["data"],
        json!({"k": "dg=="}),
        "stringData is stored as data"
    );
    assert_eq!(r.body.get("stringData"), None);
    let r = merge(
        &c,
        "/api/v1/namespaces/default/secrets/s",
        json!({"data": {"k": "dw=="}}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.text);

    let binding = |role: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "b"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}})
    };
    let bindings = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings";
    assert_eq!(
        post(&c, bindings, binding("one")).await.status.as_u16(),
        201
    );
    let r = raw(
        &c,
        "PUT",
        &format!("{bindings}/b"),
        "application/json",
        binding("two").to_string(),
    )
    .await;
    assert_eq!(r.status.as_u16(), 422, "roleRef is immutable: {}", r.text);

    let portless = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "p"},
        "spec": {"selector": {"app": "p"}}});
    let r = post(&c, "/api/v1/namespaces/default/services", portless).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.text);
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_list_options_are_refused() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let r = get(&c, &format!("{CM}?labelSelector=app%3D%3D%3Dweb")).await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "unable to parse requirement: found '=', expected: identifier"
    );
    let r = get(&c, &format!("{CM}?resourceVersionMatch=NotOlderThan")).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.text);
    let r = get(&c, "/api/v1/configmaps/a").await;
    assert_eq!(r.status.as_u16(), 404);
    assert_eq!(
        r.body["message"],
        "the server could not find the requested resource"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn deletes_answer_with_what_a_controller_finishes() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}});
    post(&c, "/api/v1/namespaces", ns).await;
    let r = raw(
        &c,
        "DELETE",
        "/api/v1/namespaces/gone",
        "application/json",
        "",
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.body["kind"], "Namespace");
    assert_eq!(r.body["status"]["phase"], "Terminating");

    post(
        &c,
        CM,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fg"}}),
    )
    .await;
    let r = raw(
        &c,
        "DELETE",
        &format!("{CM}/fg"),
        "application/json",
        json!({"propagationPolicy": "Foreground"}).to_string(),
    )
    .await;
    assert_eq!(
        r.body["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    assert_eq!(get(&c, &format!("{CM}/fg")).await.status.as_u16(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_object_leaving_a_watched_selector_is_deleted_as_it_last_matched() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "w", "labels": {"w": "yes"}}});
    let created = post(&c, CM, cm).await;
    let rv = created.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    merge(
        &c,
        &format!("{CM}/w"),
        json!({"metadata": {"labels": {"w": "no"}}}),
    )
    .await;
    let r = get(
        &c,
        &format!("{CM}?watch=true&labelSelector=w%3Dyes&resourceVersion={rv}&timeoutSeconds=1"),
    )
    .await;
    let events: Vec<Value> = r
        .text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(events.len(), 1, "{}", r.text);
    assert_eq!(events[0]["type"], "DELETED");
    assert_eq!(events[0]["object"]["metadata"]["labels"]["w"], "yes");
    sim.shutdown().await;
}
