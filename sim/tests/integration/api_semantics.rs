//! The API server's rules for writes: resourceVersion, generation, finalizers,
//! namespace and owner deletion, status subresource, dry-run, patch types, selectors,
//! and server-side apply ownership between managers.

use crate::support::harness as support;

use serde_json::{Value, json};
use support::{Raw, client, get, raw, start};

const CM: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments";

async fn send(c: &kube::Client, method: &str, path: &str, ct: &str, body: Value) -> Raw {
    let r = raw(c, method, path, ct, body.to_string()).await;
    assert!(
        r.status.is_success(),
        "{method} {path}: {} {}",
        r.status,
        r.text
    );
    r
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn deployment(name: &str, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "main", "image": image, "env": [{"name": "A", "value": "1"}]},
                                                         {"name": "side", "image": "busybox"}]}}}})
}

#[tokio::test]
async fn resource_version_is_monotonic_per_cluster_and_server_sets_identity() {
    let sim = start(2).await;
    let c = client(&sim, "sim-0");
    let a = send(&c, "POST", CM, "application/json", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "uid": "client-chosen"}})).await;
    let b = send(
        &c,
        "POST",
        CM,
        "application/json",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}),
    )
    .await;
    assert!(rv(&b.body) > rv(&a.body));
    assert_ne!(a.body["metadata"]["uid"], "client-chosen");
    assert!(
        a.body["metadata"]["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let a2 = send(
        &c,
        "PATCH",
        &format!("{CM}/a"),
        "application/merge-patch+json",
        json!({"data": {"x": "y"}}),
    )
    .await;
    assert!(rv(&a2.body) > rv(&b.body));
    assert_eq!(a2.body["metadata"]["uid"], a.body["metadata"]["uid"]);
    let list = get(&c, CM).await;
    assert_eq!(rv(&list.body), rv(&a2.body));

    let other = client(&sim, "sim-1");
    let list = get(&other, CM).await;
    assert!(
        rv(&list.body) < rv(&a2.body),
        "clusters keep their own counters"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn generation_changes_only_with_spec() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let d = send(
        &c,
        "POST",
        DEPLOY,
        "application/json",
        deployment("g", "nginx:1"),
    )
    .await;
    assert_eq!(d.body["metadata"]["generation"], 1);
    let d = send(
        &c,
        "PATCH",
        &format!("{DEPLOY}/g"),
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"x": "y"}}}),
    )
    .await;
    assert_eq!(d.body["metadata"]["generation"], 1, "a label is not spec");
    let d = send(
        &c,
        "PATCH",
        &format!("{DEPLOY}/g/status"),
        "application/merge-patch+json",
        json!({"status": {"replicas": 9}}),
    )
    .await;
    assert_eq!(d.body["metadata"]["generation"], 1, "status is not spec");
    assert_eq!(d.body["status"]["replicas"], 9);
    let d = send(
        &c,
        "PATCH",
        &format!("{DEPLOY}/g"),
        "application/merge-patch+json",
        json!({"spec": {"replicas": 3}, "status": {"replicas": 100}}),
    )
    .await;
    assert_eq!(d.body["metadata"]["generation"], 2);
    assert_ne!(
        d.body["status"]["replicas"], 100,
        "the main resource does not write status"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_removed() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    send(&c, "POST", CM, "application/json", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/hold"]}})).await;
    let r = raw(&c, "DELETE", &format!("{CM}/held"), "application/json", "").await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(
        r.body["kind"], "ConfigMap",
        "a held object comes back, not a Status"
    );
    assert!(r.body["metadata"]["deletionTimestamp"].is_string());
    let still = get(&c, &format!("{CM}/held")).await;
    assert_eq!(still.status.as_u16(), 200);
    send(
        &c,
        "PATCH",
        &format!("{CM}/held"),
        "application/merge-patch+json",
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    assert_eq!(get(&c, &format!("{CM}/held")).await.status.as_u16(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_objects() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    send(
        &c,
        "POST",
        "/api/v1/namespaces",
        "application/json",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    )
    .await;
    let ns = get(&c, "/api/v1/namespaces/team").await;
    assert_eq!(ns.body["status"]["phase"], "Active");
    assert_eq!(
        ns.body["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team"
    );
    send(
        &c,
        "POST",
        "/api/v1/namespaces/team/configmaps",
        "application/json",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
    )
    .await;
    send(&c, "POST", "/api/v1/namespaces/team/configmaps", "application/json", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["x/y"]}})).await;
    raw(
        &c,
        "DELETE",
        "/api/v1/namespaces/team",
        "application/json",
        "",
    )
    .await;
    let ns = get(&c, "/api/v1/namespaces/team").await;
    assert_eq!(
        ns.body["status"]["phase"], "Terminating",
        "held by the object with a finalizer"
    );
    assert_eq!(
        get(&c, "/api/v1/namespaces/team/configmaps/a")
            .await
            .status
            .as_u16(),
        404
    );
    let r = raw(
        &c,
        "POST",
        "/api/v1/namespaces/team/configmaps",
        "application/json",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}}).to_string(),
    )
    .await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.text);
    assert_eq!(r.body["reason"], "Forbidden");
    send(
        &c,
        "PATCH",
        "/api/v1/namespaces/team/configmaps/held",
        "application/merge-patch+json",
        json!({"metadata": {"finalizers": []}}),
    )
    .await;
    assert_eq!(
        get(&c, "/api/v1/namespaces/team").await.status.as_u16(),
        404
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn propagation_policy_decides_the_fate_of_dependents() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    for (owner, policy) in [("bg", "Background"), ("orphan", "Orphan")] {
        let o = send(
            &c,
            "POST",
            CM,
            "application/json",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": owner}}),
        )
        .await;
        let uid = o.body["metadata"]["uid"].clone();
        send(&c, "POST", CM, "application/json", json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("{owner}-child"), "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid}]}})).await;
        let r = raw(
            &c,
            "DELETE",
            &format!("{CM}/{owner}"),
            "application/json",
            json!({"propagationPolicy": policy}).to_string(),
        )
        .await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text);
        // The API server answers with the object its garbage collector finishes deleting.
        match policy {
            "Foreground" => assert_eq!(
                r.body["metadata"]["finalizers"],
                json!(["foregroundDeletion"])
            ),
            "Orphan" => assert_eq!(r.body["metadata"]["finalizers"], json!(["orphan"])),
            _ => assert_eq!(r.body["status"], "Success"),
        }
    }
    assert_eq!(
        get(&c, &format!("{CM}/bg-child")).await.status.as_u16(),
        404
    );
    let orphan = get(&c, &format!("{CM}/orphan-child")).await;
    assert_eq!(orphan.status.as_u16(), 200);
    assert_eq!(orphan.body["metadata"]["ownerReferences"], json!([]));
    sim.shutdown().await;
}

#[tokio::test]
async fn deletecollection_and_field_selectors() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        send(&c, "POST", CM, "application/json", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n, "labels": {"l": l}}})).await;
    }
    let only_b = get(&c, &format!("{CM}?fieldSelector=metadata.name%3Db")).await;
    assert_eq!(only_b.body["items"].as_array().map(Vec::len), Some(1));
    let not_b = get(
        &c,
        &format!("{CM}?fieldSelector=metadata.name!%3Db,metadata.namespace%3Ddefault"),
    )
    .await;
    assert_eq!(not_b.body["items"].as_array().map(Vec::len), Some(2));
    let bad = get(&c, &format!("{CM}?fieldSelector=data.k%3Dv")).await;
    assert_eq!(bad.status.as_u16(), 400);
    assert_eq!(
        bad.body["message"],
        "\"data.k\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );

    let dry = raw(
        &c,
        "DELETE",
        &format!("{CM}?labelSelector=l%3Dx&dryRun=All"),
        "application/json",
        "",
    )
    .await;
    assert_eq!(dry.body["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        get(&c, CM).await.body["items"].as_array().map(Vec::len),
        Some(3)
    );
    let r = raw(
        &c,
        "DELETE",
        &format!("{CM}?labelSelector=l%3Dx"),
        "application/json",
        "",
    )
    .await;
    assert_eq!(r.status.as_u16(), 200);
    let left = get(&c, CM).await;
    let names: Vec<&str> = left.body["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["metadata"]["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, vec!["c"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn dry_run_all_stores_nothing_on_any_write() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let r = send(
        &c,
        "POST",
        &format!("{CM}?dryRun=All"),
        "application/json",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 201);
    assert_eq!(get(&c, &format!("{CM}/d")).await.status.as_u16(), 404);
    let real = send(&c, "POST", CM, "application/json", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}, "data": {"a": "1"}})).await;
    let mut put = real.body.clone();
    put["data"]["a"] = json!("2");
    send(
        &c,
        "PUT",
        &format!("{CM}/d?dryRun=All"),
        "application/json",
        put,
    )
    .await;
    send(
        &c,
        "PATCH",
        &format!("{CM}/d?dryRun=All"),
        "application/merge-patch+json",
        json!({"data": {"a": "3"}}),
    )
    .await;
    send(&c, "PATCH", &format!("{CM}/d?dryRun=All&fieldManager=m&force=true"), "application/apply-patch+yaml", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}, "data": {"a": "4"}})).await;
    send(
        &c,
        "DELETE",
        &format!("{CM}/d?dryRun=All"),
        "application/json",
        json!({}),
    )
    .await;
    let now = get(&c, &format!("{CM}/d")).await;
    assert_eq!(now.body["data"]["a"], "1");
    assert_eq!(
        now.body["metadata"]["resourceVersion"],
        real.body["metadata"]["resourceVersion"]
    );
    let bad = raw(
        &c,
        "POST",
        &format!("{CM}?dryRun=Some"),
        "application/json",
        "{}",
    )
    .await;
    assert_eq!(bad.status.as_u16(), 422, "{}", bad.text);
    assert_eq!(bad.body["reason"], "Invalid");
    sim.shutdown().await;
}

#[tokio::test]
async fn patch_types_merge_lists_by_their_keys() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    send(
        &c,
        "POST",
        DEPLOY,
        "application/json",
        deployment("p", "nginx:1"),
    )
    .await;
    let path = format!("{DEPLOY}/p");
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:2", "env": [{"name": "B", "value": "2"}]}]}}}});
    let r = send(
        &c,
        "PATCH",
        &path,
        "application/strategic-merge-patch+json",
        smp,
    )
    .await;
    let containers = &r.body["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers.as_array().map(Vec::len),
        Some(2),
        "strategic merge keeps the other container: {containers}"
    );
    assert_eq!(containers[0]["image"], "nginx:2");
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]),
        "items new to the server come first, as the API server orders them"
    );

    let delete_side = json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}});
    let r = send(
        &c,
        "PATCH",
        &path,
        "application/strategic-merge-patch+json",
        delete_side,
    )
    .await;
    assert_eq!(
        r.body["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let merge =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x"}]}}}});
    let r = send(&c, "PATCH", &path, "application/merge-patch+json", merge).await;
    let containers = &r.body["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers.as_array().map(Vec::len),
        Some(1),
        "a merge patch replaces lists: {containers}"
    );
    assert_eq!(containers[0]["name"], "only");
    // The server's defaults fill what the patch left out.
    assert_eq!(containers[0]["imagePullPolicy"], "Always");
    assert_eq!(
        containers[0]["terminationMessagePath"],
        "/dev/termination-log"
    );

    let jp = json!([{"op": "replace", "path": "/spec/replicas", "value": 4}, {"op": "add", "path": "/metadata/labels", "value": {"j": "p"}}]);
    let r = send(&c, "PATCH", &path, "application/json-patch+json", jp).await;
    assert_eq!(r.body["spec"]["replicas"], 4);
    assert_eq!(r.body["metadata"]["labels"]["j"], "p");
    let failing = raw(
        &c,
        "PATCH",
        &path,
        "application/json-patch+json",
        json!([{"op": "test", "path": "/spec/replicas", "value": 1}]).to_string(),
    )
    .await;
    assert_eq!(failing.status.as_u16(), 422, "{}", failing.text);
    sim.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_shares_a_list_between_managers() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let path = format!("{DEPLOY}/ssa");
    let base = |env: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"},
        "spec": {"selector": {"matchLabels": {"app": "s"}}, "template": {"metadata": {"labels": {"app": "s"}},
        "spec": {"containers": [{"name": "main", "image": "nginx", "env": env}]}}}})
    };
    send(
        &c,
        "PATCH",
        &format!("{path}?fieldManager=a"),
        "application/apply-patch+yaml",
        base(json!([{"name": "A", "value": "1"}])),
    )
    .await;
    let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"},
        "spec": {"template": {"spec": {"containers": [{"name": "main", "env": [{"name": "B", "value": "2"}]}]}}}});
    let r = send(
        &c,
        "PATCH",
        &format!("{path}?fieldManager=b"),
        "application/apply-patch+yaml",
        sidecar,
    )
    .await;
    let env = &r.body["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(
        env,
        &json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    );
    let b_fields = r.body["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == "b"))
        .cloned()
        .unwrap_or_default();
    assert!(b_fields["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"main\"}"]["f:env"]["k:{\"name\":\"B\"}"].is_object(), "{b_fields}");

    // Manager a stops applying its env var: only A goes; B stays, owned by b.
    let r = send(
        &c,
        "PATCH",
        &format!("{path}?fieldManager=a"),
        "application/apply-patch+yaml",
        base(json!([])),
    )
    .await;
    let env = &r.body["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env, &json!([{"name": "B", "value": "2"}]));
    assert_eq!(
        r.body["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx"
    );

    // Applying the same value as another manager shares the field without conflict.
    let same = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"},
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx"}]}}}});
    send(
        &c,
        "PATCH",
        &format!("{path}?fieldManager=c"),
        "application/apply-patch+yaml",
        same,
    )
    .await;
    let conflict = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"},
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "httpd"}]}}}});
    let r = raw(
        &c,
        "PATCH",
        &format!("{path}?fieldManager=d"),
        "application/apply-patch+yaml",
        conflict.to_string(),
    )
    .await;
    assert_eq!(r.status.as_u16(), 409, "{}", r.text);
    assert_eq!(r.body["reason"], "Conflict");
    assert_eq!(
        r.body["message"],
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.template.spec.containers[name=\"main\"].image\nconflicts with \"c\":\n- .spec.template.spec.containers[name=\"main\"].image"
    );
    assert_eq!(
        r.body["details"]["causes"][0]["reason"],
        "FieldManagerConflict"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn status_and_scale_subresources() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    send(
        &c,
        "POST",
        DEPLOY,
        "application/json",
        deployment("s", "nginx"),
    )
    .await;
    let scale = get(&c, &format!("{DEPLOY}/s/scale")).await;
    assert_eq!(scale.body["kind"], "Scale");
    assert_eq!(scale.body["spec"]["replicas"], 1);
    let r = send(
        &c,
        "PATCH",
        &format!("{DEPLOY}/s/scale"),
        "application/merge-patch+json",
        json!({"spec": {"replicas": 5}}),
    )
    .await;
    assert_eq!(r.body["spec"]["replicas"], 5);
    assert_eq!(
        get(&c, &format!("{DEPLOY}/s")).await.body["spec"]["replicas"],
        5
    );
    let r = send(
        &c,
        "PATCH",
        &format!("{DEPLOY}/s/status"),
        "application/merge-patch+json",
        json!({"spec": {"replicas": 9}, "status": {"observedGeneration": 42}}),
    )
    .await;
    assert_eq!(
        r.body["spec"]["replicas"], 5,
        "a status write leaves spec alone"
    );
    assert_eq!(r.body["status"]["observedGeneration"], 42);
    let r = get(&c, "/api/v1/namespaces/default/configmaps/x/status").await;
    assert_eq!(
        r.status.as_u16(),
        404,
        "configmaps have no status subresource"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_is_gone() {
    let sim = support::start_with(flotilla_sim::SimConfig {
        clusters: 1,
        watch_history: 4,
        ..Default::default()
    })
    .await;
    let c = client(&sim, "sim-0");
    let first = send(
        &c,
        "POST",
        CM,
        "application/json",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}}),
    )
    .await;
    for i in 0..6 {
        send(
            &c,
            "PATCH",
            &format!("{CM}/w"),
            "application/merge-patch+json",
            json!({"data": {"i": i.to_string()}}),
        )
        .await;
    }
    let old = rv(&first.body);
    let r = get(
        &c,
        &format!("{CM}?watch=true&resourceVersion={old}&timeoutSeconds=1"),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200);
    let event: Value =
        serde_json::from_str(r.text.lines().next().unwrap_or("")).unwrap_or(Value::Null);
    assert_eq!(event["type"], "ERROR", "{}", r.text);
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");

    // A recent resourceVersion replays what followed it; the timeout ends the stream.
    let recent = rv(&get(&c, &format!("{CM}/w")).await.body) - 2;
    let r = get(
        &c,
        &format!("{CM}?watch=true&resourceVersion={recent}&timeoutSeconds=1"),
    )
    .await;
    let types: Vec<String> = r
        .text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|e| e["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(types, vec!["MODIFIED", "MODIFIED"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_with_selector_reports_objects_leaving_it_and_sends_bookmarks() {
    let sim = support::start_with(flotilla_sim::SimConfig {
        clusters: 1,
        bookmark_interval: std::time::Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let c = client(&sim, "sim-0");
    let start = get(&c, CM).await;
    let from = rv(&start.body);
    let c2 = c.clone();
    let watch = tokio::spawn(async move {
        get(&c2, &format!("{CM}?watch=true&resourceVersion={from}&labelSelector=team%3Da&allowWatchBookmarks=true&timeoutSeconds=1")).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    send(&c, "POST", CM, "application/json", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s", "labels": {"team": "a"}}})).await;
    send(&c, "POST", CM, "application/json", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "labels": {"team": "b"}}})).await;
    send(
        &c,
        "PATCH",
        &format!("{CM}/s"),
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"team": "b"}}}),
    )
    .await;
    let r = watch.await.unwrap_or_else(|e| panic!("watch task: {e}"));
    let events: Vec<Value> = r
        .text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let changes: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["type"] != "BOOKMARK")
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("ADDED".to_string(), "s".to_string()),
            ("DELETED".to_string(), "s".to_string())
        ]
    );
    let bookmark = events
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .unwrap_or_else(|| panic!("no bookmark in {}", r.text));
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");
    assert!(rv(&bookmark["object"]) > from);
    sim.shutdown().await;
}

#[tokio::test]
async fn every_cluster_starts_with_system_namespaces_and_a_ready_node() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let ns = get(&c, "/api/v1/namespaces").await;
    let names: Vec<&str> = ns.body["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["metadata"]["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        names,
        vec!["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    let nodes = get(&c, "/api/v1/nodes").await;
    let node = &nodes.body["items"][0];
    assert_eq!(node["metadata"]["name"], "sim-node");
    let ready = node["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], "True");
    sim.shutdown().await;
}
