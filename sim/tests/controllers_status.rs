//! Simulated controllers: rollouts become Available, Jobs complete, Pods get ready,
//! load balancers get an address, claims bind; the fail annotation makes each fail the
//! way a real cluster shows it.

#[path = "support/harness.rs"]
mod support;

use serde_json::{Value, json};
use support::{client, eventually, get, raw, start};

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

async fn create(c: &kube::Client, path: &str, body: Value) {
    let r = raw(c, "POST", path, "application/json", body.to_string()).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
}

async fn wait_for(
    c: &kube::Client,
    path: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(10, what, || async {
        let r = get(c, path).await;
        check(&r.body).then_some(r.body)
    })
    .await
}

fn workload(kind: &str, name: &str, fail: bool) -> Value {
    let mut annotations = json!({});
    if fail {
        annotations[flotilla_sim::FAIL_ANNOTATION] = json!("true");
    }
    json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "annotations": annotations},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
}

#[tokio::test]
async fn deployment_rolls_out_and_rolls_out_again_on_spec_change() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let path = "/apis/apps/v1/namespaces/default/deployments";
    create(&c, path, workload("Deployment", "web", false)).await;
    let d = wait_for(&c, &format!("{path}/web"), "Available", |d| {
        condition(d, "Available").is_some_and(|c| c["status"] == "True")
    })
    .await;
    assert_eq!(d["status"]["observedGeneration"], 1);
    assert_eq!(d["status"]["availableReplicas"], 2);
    assert_eq!(d["status"]["updatedReplicas"], 2);
    assert_eq!(
        condition(&d, "Available").map(|c| c["reason"].clone()),
        Some(json!("MinimumReplicasAvailable"))
    );
    assert_eq!(
        condition(&d, "Progressing").map(|c| c["reason"].clone()),
        Some(json!("NewReplicaSetAvailable"))
    );

    let r = raw(
        &c,
        "PATCH",
        &format!("{path}/web"),
        "application/merge-patch+json",
        json!({"spec": {"replicas": 3}}).to_string(),
    )
    .await;
    assert_eq!(r.body["metadata"]["generation"], 2);
    let d = wait_for(&c, &format!("{path}/web"), "second rollout", |d| {
        d["status"]["observedGeneration"] == 2 && d["status"]["availableReplicas"] == 3
    })
    .await;
    assert_eq!(
        condition(&d, "Progressing").map(|c| c["reason"].clone()),
        Some(json!("NewReplicaSetAvailable"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn fail_annotation_stalls_workloads_with_progress_deadline_exceeded() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    for (kind, plural) in [
        ("Deployment", "deployments"),
        ("StatefulSet", "statefulsets"),
        ("DaemonSet", "daemonsets"),
    ] {
        let path = format!("/apis/apps/v1/namespaces/default/{plural}");
        let mut body = workload(kind, "bad", true);
        if kind == "DaemonSet" {
            body["spec"].as_object_mut().map(|s| s.remove("replicas"));
        }
        create(&c, &path, body).await;
        let d = wait_for(
            &c,
            &format!("{path}/bad"),
            "ProgressDeadlineExceeded",
            |d| condition(d, "Progressing").is_some_and(|c| c["status"] == "False"),
        )
        .await;
        assert_eq!(
            condition(&d, "Progressing").map(|c| c["reason"].clone()),
            Some(json!("ProgressDeadlineExceeded")),
            "{kind}"
        );
    }
    // Removing the annotation lets the Deployment recover.
    let path = "/apis/apps/v1/namespaces/default/deployments/bad";
    let patch = json!({"metadata": {"annotations": {flotilla_sim::FAIL_ANNOTATION: null}}});
    raw(
        &c,
        "PATCH",
        path,
        "application/merge-patch+json",
        patch.to_string(),
    )
    .await;
    wait_for(&c, path, "recovery", |d| {
        condition(d, "Available").is_some_and(|c| c["status"] == "True")
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn statefulset_daemonset_and_replicaset_become_ready() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let base = "/apis/apps/v1/namespaces/default";
    create(
        &c,
        &format!("{base}/statefulsets"),
        workload("StatefulSet", "db", false),
    )
    .await;
    let mut ds = workload("DaemonSet", "agent", false);
    ds["spec"].as_object_mut().map(|s| s.remove("replicas"));
    create(&c, &format!("{base}/daemonsets"), ds).await;
    create(
        &c,
        &format!("{base}/replicasets"),
        workload("ReplicaSet", "rs", false),
    )
    .await;
    let sts = wait_for(&c, &format!("{base}/statefulsets/db"), "sts ready", |s| {
        s["status"]["readyReplicas"] == 2
    })
    .await;
    assert_eq!(
        sts["status"]["currentRevision"],
        sts["status"]["updateRevision"]
    );
    assert_eq!(sts["status"]["observedGeneration"], 1);
    let ds = wait_for(&c, &format!("{base}/daemonsets/agent"), "ds ready", |d| {
        d["status"]["numberReady"] == 1
    })
    .await;
    assert_eq!(ds["status"]["desiredNumberScheduled"], 1);
    assert_eq!(ds["status"]["updatedNumberScheduled"], 1);
    wait_for(&c, &format!("{base}/replicasets/rs"), "rs ready", |r| {
        r["status"]["availableReplicas"] == 2
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn jobs_complete_or_fail_with_backoff_limit_exceeded() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let path = "/apis/batch/v1/namespaces/default/jobs";
    let job = |name: &str, fail: bool| {
        let annotations = if fail {
            json!({flotilla_sim::FAIL_ANNOTATION: "true"})
        } else {
            json!({})
        };
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "annotations": annotations},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})
    };
    create(&c, path, job("ok", false)).await;
    create(&c, path, job("bad", true)).await;
    let ok = wait_for(&c, &format!("{path}/ok"), "Complete", |j| {
        condition(j, "Complete").is_some_and(|c| c["status"] == "True")
    })
    .await;
    assert_eq!(ok["status"]["succeeded"], 1);
    assert!(ok["status"]["completionTime"].is_string());
    let bad = wait_for(&c, &format!("{path}/bad"), "Failed", |j| {
        condition(j, "Failed").is_some_and(|c| c["status"] == "True")
    })
    .await;
    assert_eq!(
        condition(&bad, "Failed").map(|c| c["reason"].clone()),
        Some(json!("BackoffLimitExceeded"))
    );
    assert_eq!(bad["status"]["failed"], 7);
    sim.shutdown().await;
}

#[tokio::test]
async fn pods_get_ready_or_crash_loop() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let path = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, fail: bool| {
        let annotations = if fail {
            json!({flotilla_sim::FAIL_ANNOTATION: "true"})
        } else {
            json!({})
        };
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations},
               "spec": {"containers": [{"name": "app", "image": "nginx"}]}})
    };
    create(&c, path, pod("good", false)).await;
    create(&c, path, pod("crash", true)).await;
    let good = wait_for(&c, &format!("{path}/good"), "Ready", |p| {
        condition(p, "Ready").is_some_and(|c| c["status"] == "True")
    })
    .await;
    assert_eq!(good["status"]["phase"], "Running");
    assert_eq!(good["status"]["containerStatuses"][0]["ready"], true);
    let crash = wait_for(&c, &format!("{path}/crash"), "CrashLoopBackOff", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })
    .await;
    assert_eq!(
        condition(&crash, "Ready").map(|c| c["status"].clone()),
        Some(json!("False"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn load_balancers_get_an_address_and_claims_bind() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let svc = "/api/v1/namespaces/default/services";
    create(&c, svc, json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})).await;
    create(&c, svc, json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "plain"}, "spec": {"ports": [{"port": 80}]}})).await;
    let lb = wait_for(&c, &format!("{svc}/lb"), "LB ingress", |s| {
        s["status"]["loadBalancer"]["ingress"][0]["ip"].is_string()
    })
    .await;
    assert!(
        lb["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.96."))
    );
    assert_eq!(lb["spec"]["ports"][0]["protocol"], "TCP");
    let plain = get(&c, &format!("{svc}/plain")).await;
    assert_eq!(plain.body["spec"]["type"], "ClusterIP");

    let pvc = "/api/v1/namespaces/default/persistentvolumeclaims";
    create(
        &c,
        pvc,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    let bound = wait_for(&c, &format!("{pvc}/data"), "Bound", |p| {
        p["status"]["phase"] == "Bound"
    })
    .await;
    assert_eq!(bound["status"]["capacity"]["storage"], "1Gi");
    sim.shutdown().await;
}

#[tokio::test]
async fn hold_annotation_keeps_a_rollout_in_progress() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let path = "/apis/apps/v1/namespaces/default/deployments";
    let mut d = workload("Deployment", "slow", false);
    d["metadata"]["annotations"] = json!({flotilla_sim::HOLD_ANNOTATION: "true"});
    create(&c, path, d).await;
    let seen = wait_for(&c, &format!("{path}/slow"), "progressing", |d| {
        d["status"]["observedGeneration"] == 1
    })
    .await;
    assert_eq!(
        condition(&seen, "Progressing").map(|c| c["reason"].clone()),
        Some(json!("ReplicaSetUpdated"))
    );
    // Several rollout delays later it is still not available.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let later = get(&c, &format!("{path}/slow")).await.body;
    assert_eq!(
        condition(&later, "Available").map(|c| c["status"].clone()),
        Some(json!("False"))
    );
    sim.shutdown().await;
}
