//! Simulated controllers: rollouts become Available, Jobs complete, Pods get ready,
//! load balancers and Ingresses get an address, claims bind, autoscalers report on their
//! targets; the fail annotation makes each fail the way a real cluster shows it.

use crate::support::harness as support;

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

    // Made to fail, a claim stays Pending: no volume matches and no provisioner makes one.
    create(
        &c,
        pvc,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "unbound", "annotations": {flotilla_sim::FAIL_ANNOTATION: "true"}},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    let marker = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "after"},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    create(&c, pvc, marker).await;
    wait_for(&c, &format!("{pvc}/after"), "Bound", |p| {
        p["status"]["phase"] == "Bound"
    })
    .await;
    let unbound = get(&c, &format!("{pvc}/unbound")).await.body;
    assert_eq!(unbound["status"]["phase"], "Pending");

    // PersistentVolumes are served, cluster-scoped, and stored as the PV controller leaves
    // them before a claim binds: Available.
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-1"},
                    "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                             "storageClassName": "manual", "hostPath": {"path": "/data/pv-1"}}});
    create(&c, "/api/v1/persistentvolumes", pv).await;
    let stored = get(&c, "/api/v1/persistentvolumes/pv-1").await.body;
    assert_eq!(stored["status"]["phase"], "Available");
    assert_eq!(stored["spec"]["persistentVolumeReclaimPolicy"], "Retain");
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

/// Server-side apply, as the agent writes objects.
async fn apply(c: &kube::Client, path: &str, body: Value) -> support::Raw {
    let r = raw(
        c,
        "PATCH",
        &format!("{path}?fieldManager=flotilla"),
        "application/apply-patch+yaml",
        body.to_string(),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text);
    r
}

fn ingress(name: &str, fail: bool) -> Value {
    let mut annotations = json!({});
    if fail {
        annotations[flotilla_sim::FAIL_ANNOTATION] = json!("true");
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": name, "annotations": annotations},
           "spec": {"rules": [{"host": format!("{name}.example.com"), "http": {"paths": [{"path": "/", "pathType": "Prefix",
               "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
}

#[tokio::test]
async fn ingress_gets_an_address_unless_made_to_fail() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let path = "/apis/networking.k8s.io/v1/namespaces/default/ingresses";
    let created = apply(&c, &format!("{path}/good"), ingress("good", false)).await;
    assert_eq!(created.body["status"], json!({"loadBalancer": {}}));
    apply(&c, &format!("{path}/bad"), ingress("bad", true)).await;
    let svc = "/api/v1/namespaces/default/services";
    apply(
        &c,
        &format!("{svc}/lb-bad"),
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "lb-bad", "annotations": {flotilla_sim::FAIL_ANNOTATION: "true"}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
    )
    .await;

    let good = wait_for(&c, &format!("{path}/good"), "Ingress address", |i| {
        i["status"]["loadBalancer"]["ingress"][0]["ip"].is_string()
    })
    .await;
    let status_manager = good["metadata"]["managedFields"]
        .as_array()
        .and_then(|m| m.iter().find(|e| e["subresource"] == "status"))
        .map(|e| e["manager"].clone());
    assert_eq!(status_manager, Some(json!("kube-controller-manager")));
    // The status the controller wrote survives the agent's next apply unchanged.
    let again = apply(&c, &format!("{path}/good"), ingress("good", false)).await;
    assert!(
        again.headers.get("warning").is_none(),
        "{:?}",
        again.headers
    );
    assert_eq!(again.body["status"], good["status"]);
    assert_eq!(
        again.body["metadata"]["resourceVersion"],
        good["metadata"]["resourceVersion"]
    );

    // Several rollout delays later the failing Ingress and Service still have no address.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let bad = get(&c, &format!("{path}/bad")).await.body;
    assert_eq!(bad["status"], json!({"loadBalancer": {}}));
    let lb = get(&c, &format!("{svc}/lb-bad")).await.body;
    assert_eq!(lb["status"], json!({"loadBalancer": {}}));
    sim.shutdown().await;
}

fn hpa(name: &str, target: &str, min: i64, annotations: Value, metrics: Option<Value>) -> Value {
    let mut spec = json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                          "minReplicas": min, "maxReplicas": 5});
    if let Some(m) = metrics {
        spec["metrics"] = m;
    }
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": name, "annotations": annotations}, "spec": spec})
}

fn cpu(percent: i64) -> Value {
    json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}}])
}

/// (type, status, reason) of every condition, in order.
fn conditions(obj: &Value) -> Vec<(String, String, String)> {
    obj["status"]["conditions"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|c| {
                    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                    (s("type"), s("status"), s("reason"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn triple(kind: &str, status: &str, reason: &str) -> (String, String, String) {
    (kind.to_string(), status.to_string(), reason.to_string())
}

#[tokio::test]
async fn hpa_reports_able_to_scale_valid_metric_and_its_targets_replicas() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    apply(
        &c,
        &format!("{deployments}/web"),
        workload("Deployment", "web", false),
    )
    .await;
    let path = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";
    apply(
        &c,
        &format!("{path}/web"),
        hpa("web", "web", 1, json!({}), Some(cpu(50))),
    )
    .await;
    // Its own target: two HPAs on one would refuse to scale (AmbiguousSelector).
    apply(
        &c,
        &format!("{deployments}/base"),
        workload("Deployment", "base", false),
    )
    .await;
    apply(
        &c,
        &format!("{path}/floor"),
        hpa("floor", "base", 3, json!({}), Some(cpu(50))),
    )
    .await;

    let web = wait_for(&c, &format!("{path}/web"), "HPA conditions", |h| {
        conditions(h).len() == 3
    })
    .await;
    assert_eq!(
        conditions(&web),
        vec![
            triple("AbleToScale", "True", "ReadyForNewScale"),
            triple("ScalingActive", "True", "ValidMetricFound"),
            triple("ScalingLimited", "False", "DesiredWithinRange"),
        ]
    );
    assert_eq!(
        condition(&web, "ScalingActive").map(|c| c["message"].clone()),
        Some(json!(
            "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)"
        ))
    );
    assert_eq!(web["status"]["currentReplicas"], 2);
    assert_eq!(web["status"]["desiredReplicas"], 2);
    assert_eq!(
        web["status"]["currentMetrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 50}}}])
    );

    let floor = wait_for(&c, &format!("{path}/floor"), "HPA conditions", |h| {
        conditions(h).len() == 3
    })
    .await;
    assert_eq!(
        condition(&floor, "ScalingLimited").map(|c| (c["status"].clone(), c["reason"].clone())),
        Some((json!("True"), json!("TooFewReplicas")))
    );
    assert_eq!(floor["status"]["desiredReplicas"], 3);

    // The status survives the agent's next apply, which changes nothing.
    let again = apply(
        &c,
        &format!("{path}/web"),
        hpa("web", "web", 1, json!({}), Some(cpu(50))),
    )
    .await;
    assert!(
        again.headers.get("warning").is_none(),
        "{:?}",
        again.headers
    );
    assert_eq!(
        again.body["metadata"]["resourceVersion"],
        web["metadata"]["resourceVersion"]
    );
    sim.shutdown().await;
}

/// The real controller names the condition after the first metric it failed to read: a
/// Pods, Object or External metric fails with its own reason, not `FailedGetResourceMetric`.
#[tokio::test]
async fn hpa_fail_annotation_names_the_first_metric_s_source() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    let path = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";
    let failing = json!({flotilla_sim::FAIL_ANNOTATION: "true"});
    let average = json!({"type": "AverageValue", "averageValue": "10"});
    let cases = [
        (
            "external",
            json!([{"type": "External", "external": {"metric": {"name": "queue_depth"}, "target": average}}]),
            "FailedGetExternalMetric",
            "unable to get external metric default/queue_depth/nil: no metrics returned from external metrics API",
        ),
        (
            "pods",
            json!([{"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": average}}, cpu(50)[0]]),
            "FailedGetPodsMetric",
            "unable to get metric rps: no metrics returned from custom metrics API",
        ),
        (
            "object",
            json!([{"type": "Object", "object": {"metric": {"name": "hits"}, "target": {"type": "Value", "value": "10"},
                    "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"}}}]),
            "FailedGetObjectMetric",
            "unable to get metric hits on Ingress default/main: no metrics returned from custom metrics API",
        ),
    ];
    for (name, metrics, reason, error) in cases {
        apply(
            &c,
            &format!("{deployments}/{name}"),
            workload("Deployment", name, false),
        )
        .await;
        apply(
            &c,
            &format!("{path}/{name}"),
            hpa(name, name, 1, failing.clone(), Some(metrics)),
        )
        .await;
        let bad = wait_for(&c, &format!("{path}/{name}"), "ScalingActive", |h| {
            condition(h, "ScalingActive").is_some()
        })
        .await;
        assert_eq!(
            conditions(&bad),
            vec![
                triple("AbleToScale", "True", "SucceededGetScale"),
                triple("ScalingActive", "False", reason),
            ],
            "{name}"
        );
        assert_eq!(
            condition(&bad, "ScalingActive").map(|c| c["message"].clone()),
            Some(json!(format!(
                "the HPA was unable to compute the replica count: {error}"
            ))),
            "{name}"
        );
    }
    sim.shutdown().await;
}

/// Two HPAs scaling one target: the real controller refuses to autoscale with either
/// (`AmbiguousSelector`, naming the target's selector and the HPAs), until one is gone.
#[tokio::test]
async fn hpas_sharing_a_target_report_an_ambiguous_selector_until_one_is_removed() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    apply(
        &c,
        &format!("{deployments}/web"),
        workload("Deployment", "web", false),
    )
    .await;
    let path = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";
    // The first autoscales alone; the second makes both stop.
    for name in ["a", "b"] {
        apply(
            &c,
            &format!("{path}/{name}"),
            hpa(name, "web", 1, json!({}), Some(cpu(50))),
        )
        .await;
        if name == "a" {
            wait_for(&c, &format!("{path}/a"), "ScalingActive=True", |h| {
                condition(h, "ScalingActive").is_some_and(|c| c["status"] == "True")
            })
            .await;
        }
    }
    for name in ["a", "b"] {
        let hpa = wait_for(&c, &format!("{path}/{name}"), "AmbiguousSelector", |h| {
            condition(h, "ScalingActive").is_some_and(|c| c["reason"] == "AmbiguousSelector")
        })
        .await;
        assert_eq!(
            condition(&hpa, "AbleToScale").map(|c| c["status"].clone()),
            Some(json!("True"))
        );
        assert_eq!(
            condition(&hpa, "ScalingActive").map(|c| c["message"].clone()),
            Some(json!(
                "pods by selector app=web are controlled by more than one HPA (e.g. [default/a default/b])"
            ))
        );
    }
    let r = raw(
        &c,
        "DELETE",
        &format!("{path}/b"),
        "application/json",
        String::new(),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text);
    wait_for(&c, &format!("{path}/a"), "ScalingActive=True", |h| {
        condition(h, "ScalingActive").is_some_and(|c| c["status"] == "True")
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn hpa_fail_annotation_reports_failed_get_resource_metric_until_removed() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    apply(
        &c,
        &format!("{deployments}/web"),
        workload("Deployment", "web", false),
    )
    .await;
    let path = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";
    let failing = json!({flotilla_sim::FAIL_ANNOTATION: "true"});
    apply(
        &c,
        &format!("{path}/web"),
        hpa("web", "web", 1, failing, Some(cpu(60))),
    )
    .await;
    let bad = wait_for(&c, &format!("{path}/web"), "ScalingActive=False", |h| {
        condition(h, "ScalingActive").is_some()
    })
    .await;
    // The real controller's order: it read the scale before the metrics failed.
    assert_eq!(
        conditions(&bad),
        vec![
            triple("AbleToScale", "True", "SucceededGetScale"),
            triple("ScalingActive", "False", "FailedGetResourceMetric"),
        ]
    );
    assert_eq!(
        condition(&bad, "ScalingActive").map(|c| c["message"].clone()),
        Some(json!(
            "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: no metrics returned from resource metrics API"
        ))
    );
    assert_eq!(bad["status"]["currentReplicas"], 2);
    assert_eq!(bad["status"]["desiredReplicas"], 0);

    apply(
        &c,
        &format!("{path}/web"),
        hpa("web", "web", 1, json!({}), Some(cpu(60))),
    )
    .await;
    let good = wait_for(&c, &format!("{path}/web"), "ScalingActive=True", |h| {
        condition(h, "ScalingActive").is_some_and(|c| c["status"] == "True")
    })
    .await;
    assert_eq!(
        conditions(&good),
        vec![
            triple("AbleToScale", "True", "ReadyForNewScale"),
            triple("ScalingActive", "True", "ValidMetricFound"),
            triple("ScalingLimited", "False", "DesiredWithinRange"),
        ]
    );
    assert_eq!(good["status"]["desiredReplicas"], 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn hpa_without_its_target_reports_failed_get_scale_until_the_target_exists() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let path = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";
    // No metrics given: the server's default (80% CPU) applies.
    let created = apply(
        &c,
        &format!("{path}/late"),
        hpa("late", "late", 1, json!({}), None),
    )
    .await;
    assert_eq!(created.body["spec"]["metrics"], cpu(80));
    let waiting = wait_for(&c, &format!("{path}/late"), "FailedGetScale", |h| {
        condition(h, "AbleToScale").is_some()
    })
    .await;
    assert_eq!(
        conditions(&waiting),
        vec![triple("AbleToScale", "False", "FailedGetScale")]
    );
    assert_eq!(
        condition(&waiting, "AbleToScale").map(|c| c["message"].clone()),
        Some(json!(
            "the HPA controller was unable to get the target's current scale: deployments.apps \"late\" not found"
        ))
    );

    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    apply(
        &c,
        &format!("{deployments}/late"),
        workload("Deployment", "late", false),
    )
    .await;
    let found = wait_for(&c, &format!("{path}/late"), "AbleToScale=True", |h| {
        condition(h, "AbleToScale").is_some_and(|c| c["status"] == "True")
    })
    .await;
    assert_eq!(
        condition(&found, "ScalingActive").map(|c| c["message"].clone()),
        Some(json!(
            "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)"
        ))
    );
    assert_eq!(found["status"]["currentReplicas"], 2);
    sim.shutdown().await;
}
