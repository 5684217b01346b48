use serde_json::{Value, json};

use super::*;

fn of(group: &str, kind: &str) -> ObjectRef {
    ObjectRef {
        group: group.into(),
        kind: kind.into(),
        namespace: Some("web".into()),
        name: "x".into(),
    }
}

fn health(group: &str, kind: &str, live: Value) -> ObjectHealth {
    assess(&of(group, kind), &live)
}

fn deployment(status: Value) -> Value {
    json!({"metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": status})
}

#[test]
fn deployment_rolled_out_is_healthy() {
    let live = deployment(
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
    );
    assert_eq!(health("apps", "Deployment", live).health, Health::Healthy);
}

#[test]
fn deployment_with_unobserved_generation_is_progressing() {
    let live = deployment(
        json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
    );
    assert_eq!(
        health("apps", "Deployment", live).health,
        Health::Progressing
    );
}

#[test]
fn deployment_waiting_for_replicas_is_progressing_with_counts() {
    let live = deployment(
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 1}),
    );
    let h = health("apps", "Deployment", live);
    assert_eq!(h.health, Health::Progressing);
    assert!(h.message.contains("1 of 3"), "{}", h.message);
    let live = deployment(json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1}));
    assert!(
        health("apps", "Deployment", live)
            .message
            .contains("1 of 3 replicas updated")
    );
    let live = deployment(
        json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
    );
    assert!(
        health("apps", "Deployment", live)
            .message
            .contains("1 old replicas")
    );
}

#[test]
fn deployment_past_its_progress_deadline_is_degraded() {
    let live = deployment(json!({
        "observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                        "message": "ReplicaSet \"x-1\" has timed out progressing."}]
    }));
    let h = health("apps", "Deployment", live);
    assert_eq!(h.health, Health::Degraded);
    assert!(h.message.contains("timed out progressing"), "{}", h.message);
}

#[test]
fn paused_deployment_is_suspended() {
    let live = json!({"metadata": {"generation": 1}, "spec": {"paused": true, "replicas": 1}, "status": {}});
    assert_eq!(health("apps", "Deployment", live).health, Health::Suspended);
}

#[test]
fn anything_being_deleted_is_progressing() {
    let live = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}});
    assert_eq!(health("", "ConfigMap", live).health, Health::Progressing);
}

fn stateful_set(spec: Value, status: Value) -> Value {
    json!({"metadata": {"generation": 1}, "spec": spec, "status": status})
}

#[test]
fn stateful_set_rules() {
    let never_observed = stateful_set(json!({"replicas": 2}), json!({}));
    assert_eq!(
        health("apps", "StatefulSet", never_observed).health,
        Health::Progressing
    );
    let not_ready = stateful_set(
        json!({"replicas": 2}),
        json!({"observedGeneration": 1, "readyReplicas": 1}),
    );
    let h = health("apps", "StatefulSet", not_ready);
    assert_eq!(
        (h.health, h.message.as_str()),
        (Health::Progressing, "waiting for 1 pods to be ready")
    );
    let rolling = stateful_set(
        json!({"replicas": 2}),
        json!({"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 1, "updateRevision": "b", "currentRevision": "a"}),
    );
    assert_eq!(
        health("apps", "StatefulSet", rolling).health,
        Health::Progressing
    );
    let done = stateful_set(
        json!({"replicas": 2}),
        json!({"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2, "updateRevision": "b", "currentRevision": "b"}),
    );
    assert_eq!(health("apps", "StatefulSet", done).health, Health::Healthy);
    let partitioned = stateful_set(
        json!({"replicas": 4, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
        json!({"observedGeneration": 1, "readyReplicas": 4, "updatedReplicas": 1}),
    );
    assert_eq!(
        health("apps", "StatefulSet", partitioned).health,
        Health::Progressing
    );
    let on_delete = stateful_set(
        json!({"replicas": 2, "updateStrategy": {"type": "OnDelete"}}),
        json!({"observedGeneration": 1, "readyReplicas": 2, "updateRevision": "b", "currentRevision": "a"}),
    );
    assert_eq!(
        health("apps", "StatefulSet", on_delete).health,
        Health::Healthy
    );
}

#[test]
fn stateful_and_daemon_sets_past_a_progress_deadline_are_degraded() {
    let stalled = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}]);
    let sts = stateful_set(
        json!({"replicas": 2}),
        json!({"observedGeneration": 1, "readyReplicas": 0, "conditions": stalled}),
    );
    assert_eq!(health("apps", "StatefulSet", sts).health, Health::Degraded);
    let ds = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "desiredNumberScheduled": 1, "conditions": stalled}});
    assert_eq!(health("apps", "DaemonSet", ds).health, Health::Degraded);
}

#[test]
fn daemon_set_rules() {
    let live = |status: Value| json!({"metadata": {"generation": 1}, "spec": {}, "status": status});
    let rolling = live(
        json!({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 2, "numberAvailable": 2}),
    );
    assert_eq!(
        health("apps", "DaemonSet", rolling).health,
        Health::Progressing
    );
    let unavailable = live(
        json!({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2}),
    );
    assert!(
        health("apps", "DaemonSet", unavailable)
            .message
            .contains("2 of 3")
    );
    let done = live(
        json!({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}),
    );
    assert_eq!(health("apps", "DaemonSet", done).health, Health::Healthy);
    let stale = live(json!({"observedGeneration": 0}));
    assert_eq!(
        health("apps", "DaemonSet", stale).health,
        Health::Progressing
    );
}

#[test]
fn replica_set_rules() {
    let live = |status: Value| json!({"metadata": {"generation": 1}, "spec": {"replicas": 2}, "status": status});
    let failed = live(json!({"observedGeneration": 1, "conditions": [
        {"type": "ReplicaFailure", "status": "True", "message": "pods \"x\" is forbidden: quota"}]}));
    let h = health("apps", "ReplicaSet", failed);
    assert_eq!(h.health, Health::Degraded);
    assert!(h.message.contains("quota"));
    let waiting = live(json!({"observedGeneration": 1, "availableReplicas": 1}));
    assert_eq!(
        health("apps", "ReplicaSet", waiting).health,
        Health::Progressing
    );
    let done = live(json!({"observedGeneration": 1, "availableReplicas": 2}));
    assert_eq!(health("apps", "ReplicaSet", done).health, Health::Healthy);
}

#[test]
fn job_rules() {
    let live = |conditions: Value| json!({"status": {"active": 1, "conditions": conditions}});
    assert_eq!(
        health("batch", "Job", live(json!([]))).health,
        Health::Progressing
    );
    let complete = live(json!([{"type": "Complete", "status": "True"}]));
    assert_eq!(health("batch", "Job", complete).health, Health::Healthy);
    let failed = live(
        json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                              "message": "Job has reached the specified backoff limit"}]),
    );
    let h = health("batch", "Job", failed);
    assert_eq!(h.health, Health::Degraded);
    assert_eq!(
        h.message,
        "job failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
    );
    let suspended = live(json!([{"type": "Suspended", "status": "True"}]));
    assert_eq!(health("batch", "Job", suspended).health, Health::Suspended);
    // A condition that is no longer true says nothing.
    let resumed = live(json!([{"type": "Suspended", "status": "False"}]));
    assert_eq!(health("batch", "Job", resumed).health, Health::Progressing);
}

fn pod(phase: &str, containers: Value, ready: bool) -> Value {
    json!({"spec": {}, "status": {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        "containerStatuses": containers,
    }})
}

#[test]
fn crash_looping_pod_is_degraded_with_the_container_and_reason() {
    let live = pod(
        "Running",
        json!([{"name": "api", "state": {"waiting": {
        "reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}},
        "lastState": {"terminated": {"exitCode": 1}}}]),
        false,
    );
    let h = health("", "Pod", live);
    assert_eq!(h.health, Health::Degraded);
    assert_eq!(
        h.message,
        "container api: CrashLoopBackOff: back-off 10s restarting failed container"
    );
}

#[test]
fn image_pull_errors_are_degraded() {
    let live = pod(
        "Pending",
        json!([{"name": "api", "state": {"waiting": {"reason": "ErrImagePull"}}}]),
        false,
    );
    assert_eq!(health("", "Pod", live).health, Health::Degraded);
    let live = pod(
        "Pending",
        json!([{"name": "api", "state": {"waiting": {"reason": "ContainerCreating"}}}]),
        false,
    );
    assert_eq!(health("", "Pod", live).health, Health::Progressing);
}

#[test]
fn pod_phases() {
    assert_eq!(
        health("", "Pod", pod("Running", json!([]), true)).health,
        Health::Healthy
    );
    assert_eq!(
        health("", "Pod", pod("Running", json!([]), false)).health,
        Health::Progressing
    );
    assert_eq!(
        health("", "Pod", pod("Succeeded", json!([]), false)).health,
        Health::Healthy
    );
    let failed = pod(
        "Failed",
        json!([{"name": "api", "state": {"terminated": {"exitCode": 3}}}]),
        false,
    );
    let h = health("", "Pod", failed);
    assert_eq!(
        (h.health, h.message.as_str()),
        (Health::Degraded, "container api failed with exit code 3")
    );
    let restarted = pod(
        "Running",
        json!([{"name": "api", "lastState": {"terminated": {"exitCode": 1}}}]),
        false,
    );
    assert_eq!(health("", "Pod", restarted).health, Health::Degraded);
    assert_eq!(
        health("", "Pod", json!({"status": {}})).health,
        Health::Unknown
    );
}

#[test]
fn pods_that_run_to_completion_are_progressing_while_running() {
    let mut live = pod(
        "Running",
        json!([{"name": "t", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]),
        false,
    );
    live["spec"]["restartPolicy"] = json!("Never");
    assert_eq!(health("", "Pod", live).health, Health::Progressing);
}

#[test]
fn pvc_phases() {
    let pvc = |phase: &str| json!({"status": {"phase": phase}});
    assert_eq!(
        health("", "PersistentVolumeClaim", pvc("Bound")).health,
        Health::Healthy
    );
    assert_eq!(
        health("", "PersistentVolumeClaim", pvc("Pending")).health,
        Health::Progressing
    );
    assert_eq!(
        health("", "PersistentVolumeClaim", pvc("Lost")).health,
        Health::Degraded
    );
    assert_eq!(
        health("", "PersistentVolumeClaim", json!({})).health,
        Health::Unknown
    );
}

#[test]
fn a_pending_claim_says_which_volume_it_waits_for() {
    let pending = |spec: Value| json!({"spec": spec, "status": {"phase": "Pending"}});
    let message = |spec: Value| health("", "PersistentVolumeClaim", pending(spec)).message;
    assert_eq!(
        message(json!({"storageClassName": "manual"})),
        "waiting for a volume of storage class \"manual\" to bind the claim (a matching one, or \
         one its provisioner makes)"
    );
    assert_eq!(
        message(json!({})),
        "waiting for a volume without a storage class to bind the claim"
    );
    assert_eq!(
        message(json!({"storageClassName": "manual", "volumeName": "pv-1"})),
        "waiting for the claim to be bound to volume \"pv-1\""
    );
}

#[test]
fn a_volume_is_healthy_unless_its_reclamation_failed() {
    let pv = |phase: &str| json!({"status": {"phase": phase, "message": "recycler failed"}});
    for phase in ["Available", "Bound", "Released"] {
        assert_eq!(
            health("", "PersistentVolume", pv(phase)).health,
            Health::Healthy
        );
    }
    let failed = health("", "PersistentVolume", pv("Failed"));
    assert_eq!(
        (failed.health, failed.message.as_str()),
        (Health::Degraded, "volume failed: recycler failed")
    );
    assert_eq!(
        health("", "PersistentVolume", pv("Pending")).health,
        Health::Progressing
    );
}

#[test]
fn load_balancers_wait_for_an_address() {
    let cluster_ip = json!({"spec": {"type": "ClusterIP"}});
    assert_eq!(health("", "Service", cluster_ip).health, Health::Healthy);
    let pending = json!({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {}}});
    assert_eq!(health("", "Service", pending).health, Health::Progressing);
    let ready = json!({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}});
    assert_eq!(health("", "Service", ready).health, Health::Healthy);
    let ingress = json!({"status": {"loadBalancer": {"ingress": []}}});
    let waiting = health("networking.k8s.io", "Ingress", ingress);
    assert_eq!(
        (waiting.health, waiting.message.as_str()),
        (
            Health::Progressing,
            "waiting for the default ingress class's controller to publish an address"
        )
    );
    let classed = json!({"spec": {"ingressClassName": "nginx"}, "status": {"loadBalancer": {}}});
    assert_eq!(
        health("networking.k8s.io", "Ingress", classed).message,
        "waiting for the controller of ingress class \"nginx\" to publish an address"
    );
    let ingress = json!({"status": {"loadBalancer": {"ingress": [{"hostname": "lb"}]}}});
    assert_eq!(
        health("networking.k8s.io", "Ingress", ingress).health,
        Health::Healthy
    );
}

#[test]
fn hpa_rules() {
    let hpa = |conditions: Value| json!({"status": {"conditions": conditions}});
    let judge = |conditions: Value| {
        let h = health("autoscaling", "HorizontalPodAutoscaler", hpa(conditions));
        (h.health, h.message)
    };
    assert_eq!(
        judge(json!([])),
        (
            Health::Progressing,
            "waiting for the autoscaler controller to read its target's scale".into()
        )
    );
    let able = json!({"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale", "message": "ok"});
    assert_eq!(judge(json!([able])).0, Health::Progressing);
    let active = json!({"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound", "message": "ok"});
    assert_eq!(judge(json!([able, active])).0, Health::Healthy);
    let limited = json!({"type": "ScalingLimited", "status": "True", "reason": "TooManyReplicas", "message": "at the maximum"});
    assert_eq!(judge(json!([able, active, limited])).0, Health::Healthy);
    let missing_target = json!({"type": "AbleToScale", "status": "False", "reason": "FailedGetScale", "message": "deployments.apps \"web\" not found"});
    assert_eq!(
        judge(json!([missing_target])),
        (
            Health::Degraded,
            "FailedGetScale: deployments.apps \"web\" not found".into()
        )
    );
}

/// Every reason with which the real controller sets `ScalingActive=False` after reading the
/// target's scale (`AbleToScale=True`, listed first): none of them autoscales.
#[test]
fn an_hpa_that_cannot_compute_a_replica_count_is_never_healthy() {
    let able = json!({"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale", "message": "ok"});
    for reason in [
        "FailedGetResourceMetric",
        "FailedGetContainerResourceMetric",
        "FailedGetPodsMetric",
        "FailedGetObjectMetric",
        "FailedGetExternalMetric",
        "InvalidSelector",
        "AmbiguousSelector",
    ] {
        let inactive = json!({"type": "ScalingActive", "status": "False", "reason": reason, "message": "cannot"});
        let live = json!({"status": {"conditions": [able, inactive]}});
        let h = health("autoscaling", "HorizontalPodAutoscaler", live);
        assert_eq!(
            (h.health, h.message),
            (Health::Degraded, format!("{reason}: cannot")),
            "{reason}"
        );
    }
    let disabled = json!({"type": "ScalingActive", "status": "False", "reason": "ScalingDisabled",
                          "message": "scaling is disabled since the replica count of the target is zero"});
    let live = json!({"status": {"conditions": [able, disabled]}});
    let h = health("autoscaling", "HorizontalPodAutoscaler", live);
    assert_eq!(
        (h.health, h.message.as_str()),
        (
            Health::Suspended,
            "ScalingDisabled: scaling is disabled since the replica count of the target is zero"
        ),
        "a target scaled to zero switches autoscaling off on purpose"
    );
}

#[test]
fn an_autoscaling_v1_hpa_is_judged_by_the_conditions_in_its_annotation() {
    let v1 = |conditions: Value| {
        json!({"metadata": {"annotations": {
            "autoscaling.alpha.kubernetes.io/conditions": conditions.to_string()
        }}, "status": {"currentReplicas": 2, "desiredReplicas": 2}})
    };
    let able = v1(json!([
        {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "message": "ready"},
        {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound", "message": "ok"}
    ]));
    assert_eq!(
        health("autoscaling", "HorizontalPodAutoscaler", able).health,
        Health::Healthy,
        "a healthy v1 HPA is not left waiting to autoscale"
    );
    let failing = v1(json!([
        {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale", "message": "ok"},
        {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric", "message": "missing request for cpu"}
    ]));
    let h = health("autoscaling", "HorizontalPodAutoscaler", failing);
    assert_eq!(
        (h.health, h.message.as_str()),
        (
            Health::Degraded,
            "FailedGetResourceMetric: missing request for cpu"
        )
    );
    let garbage = json!({"metadata": {"annotations": {"autoscaling.alpha.kubernetes.io/conditions": "not json"}}});
    assert_eq!(
        health("autoscaling", "HorizontalPodAutoscaler", garbage).health,
        Health::Progressing
    );
}

#[test]
fn an_api_service_is_healthy_only_when_available() {
    let service = |conditions: Value| json!({"status": {"conditions": conditions}});
    let group = "apiregistration.k8s.io";
    let down = service(
        json!([{"type": "Available", "status": "False", "reason": "MissingEndpoints", "message": "endpoints for service/metrics-server in kube-system have no addresses"}]),
    );
    let h = health(group, "APIService", down);
    assert_eq!(h.health, Health::Progressing);
    assert!(h.message.contains("MissingEndpoints"), "{}", h.message);
    assert_eq!(
        health(group, "APIService", service(json!([]))).health,
        Health::Progressing
    );
    let up = service(json!([{"type": "Available", "status": "True", "reason": "Passed"}]));
    assert_eq!(health(group, "APIService", up).health, Health::Healthy);
}

#[test]
fn a_replication_controller_is_judged_like_a_replica_set() {
    let live = json!({"metadata": {"generation": 1}, "spec": {"replicas": 3},
        "status": {"observedGeneration": 1, "replicas": 3, "readyReplicas": 1, "availableReplicas": 1}});
    assert_ne!(
        health("", "ReplicationController", live).health,
        Health::Healthy
    );
}

#[test]
fn crd_rules() {
    let crd = |conditions: Value| json!({"status": {"conditions": conditions}});
    let group = "apiextensions.k8s.io";
    let kind = "CustomResourceDefinition";
    assert_eq!(
        health(group, kind, crd(json!([]))).health,
        Health::Progressing
    );
    let established = crd(
        json!([{"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "True"}]),
    );
    assert_eq!(health(group, kind, established).health, Health::Healthy);
    let pending = crd(
        json!([{"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "False", "message": "installing"}]),
    );
    assert_eq!(health(group, kind, pending).health, Health::Degraded);
    let clash = crd(
        json!([{"type": "NamesAccepted", "status": "False", "message": "\"widgets\" is already in use"}]),
    );
    let h = health(group, kind, clash);
    assert_eq!(h.health, Health::Degraded);
    assert!(h.message.contains("already in use"));
}

#[test]
fn custom_resources_follow_kstatus_conditions() {
    let cr = |generation: i64, status: Value| json!({"metadata": {"generation": generation}, "status": status});
    let kind = ("example.com", "Widget");
    assert_eq!(
        health(kind.0, kind.1, json!({"spec": {}})).health,
        Health::Healthy
    );
    let stale = cr(2, json!({"observedGeneration": 1}));
    assert_eq!(health(kind.0, kind.1, stale).health, Health::Progressing);
    let stalled = cr(
        1,
        json!({"observedGeneration": 1, "conditions": [
        {"type": "Stalled", "status": "True", "reason": "BadConfig", "message": "bucket name taken"}]}),
    );
    let h = health(kind.0, kind.1, stalled);
    assert_eq!(
        (h.health, h.message.as_str()),
        (Health::Degraded, "BadConfig: bucket name taken")
    );
    let reconciling = cr(
        1,
        json!({"conditions": [{"type": "Reconciling", "status": "True"}]}),
    );
    assert_eq!(
        health(kind.0, kind.1, reconciling).health,
        Health::Progressing
    );
    let not_ready = cr(
        1,
        json!({"conditions": [{"type": "Ready", "status": "False", "reason": "Waiting"}]}),
    );
    assert_eq!(
        health(kind.0, kind.1, not_ready).health,
        Health::Progressing
    );
    let ready = cr(
        1,
        json!({"conditions": [{"type": "Ready", "status": "True"}, {"type": "Stalled", "status": "False"}]}),
    );
    assert_eq!(health(kind.0, kind.1, ready).health, Health::Healthy);
}

#[test]
fn kinds_without_status_are_healthy_when_present() {
    assert_eq!(
        health("", "ConfigMap", json!({"data": {}})).health,
        Health::Healthy
    );
    assert_eq!(
        health("rbac.authorization.k8s.io", "Role", json!({})).health,
        Health::Healthy
    );
}

#[test]
fn roll_up_is_worst_of_and_lists_the_worst_first() {
    let objects: Vec<(ObjectRef, ObjectHealth)> = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .zip([
            Health::Healthy,
            Health::Progressing,
            Health::Degraded,
            Health::Progressing,
            Health::Healthy,
            Health::Missing,
            Health::Suspended,
        ])
        .map(|(name, h)| {
            let mut o = of("", "ConfigMap");
            o.name = (*name).into();
            (o, ObjectHealth::new(h, *name))
        })
        .collect();
    let bundle = roll_up(objects.iter().map(|(o, h)| (o, h)));
    assert_eq!(bundle.health, Health::Degraded);
    let names: Vec<&str> = bundle
        .unhealthy
        .iter()
        .map(|(o, _)| o.name.as_str())
        .collect();
    assert_eq!(names, ["c", "f", "b", "d", "g"]);
    assert_eq!(roll_up(std::iter::empty()).health, Health::Healthy);
}

#[test]
fn worst_of_orders_unknown_worst_and_healthy_best() {
    let mut all = vec![
        Health::Unknown,
        Health::Degraded,
        Health::Missing,
        Health::Progressing,
        Health::Suspended,
        Health::Healthy,
    ];
    all.sort();
    assert_eq!(
        all,
        [
            Health::Healthy,
            Health::Suspended,
            Health::Progressing,
            Health::Missing,
            Health::Degraded,
            Health::Unknown
        ]
    );
}
