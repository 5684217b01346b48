//! Defaults the API server fills in, applied on every write to the main resource so a
//! client that omits them sees the same object as on a real cluster.

use serde_json::{Map, Value, json};

use crate::catalog::{Builtin, ResourceType};
use crate::pointer::At;

fn object_at<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let map = v.as_object_mut()?;
    let entry = map.entry(key).or_insert_with(|| json!({}));
    entry.as_object_mut()
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.entry(key).or_insert(value);
}

/// Applies the defaults of a kind; `old` is the stored object on updates.
pub(crate) fn apply(rt: &ResourceType, old: Option<&Value>, obj: &mut Value, name: &str) {
    let Some(builtin) = rt.builtin else { return };
    // Status is a struct the server always serializes: a new workload's is `{}`.
    if old.is_none()
        && matches!(
            builtin,
            Builtin::Deployment
                | Builtin::StatefulSet
                | Builtin::DaemonSet
                | Builtin::ReplicaSet
                | Builtin::Job
                | Builtin::CronJob
        )
        && let Some(map) = obj.as_object_mut()
    {
        set_default(map, "status", json!({}));
    }
    match builtin {
        Builtin::Namespace => namespace(old, obj, name),
        Builtin::Service => service(old, obj, name),
        Builtin::NetworkPolicy => {
            if let Some(spec) = object_at(obj, "spec") {
                let mut types = vec![json!("Ingress")];
                if spec.contains_key("egress") {
                    types.push(json!("Egress"));
                }
                set_default(spec, "policyTypes", Value::Array(types));
            }
        }
        Builtin::CustomResourceDefinition => {
            if let Some(spec) = object_at(obj, "spec") {
                set_default(spec, "conversion", json!({"strategy": "None"}));
            }
        }
        Builtin::Deployment => {
            if let Some(spec) = object_at(obj, "spec") {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(spec, "progressDeadlineSeconds", json!(600));
                let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
                if let Some(s) = strategy.as_object_mut() {
                    set_default(s, "type", json!("RollingUpdate"));
                    if s.get("type") == Some(&json!("RollingUpdate")) {
                        set_default(
                            s,
                            "rollingUpdate",
                            json!({"maxSurge": "25%", "maxUnavailable": "25%"}),
                        );
                    }
                }
            }
            pod_template(obj.at_mut("/spec/template/spec"));
        }
        Builtin::StatefulSet => {
            if let Some(spec) = object_at(obj, "spec") {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(spec, "podManagementPolicy", json!("OrderedReady"));
                set_default(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": 1}}),
                );
                set_default(
                    spec,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
            }
            pod_template(obj.at_mut("/spec/template/spec"));
        }
        Builtin::DaemonSet => {
            if let Some(spec) = object_at(obj, "spec") {
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
                );
            }
            pod_template(obj.at_mut("/spec/template/spec"));
        }
        Builtin::ReplicaSet => {
            if let Some(spec) = object_at(obj, "spec") {
                set_default(spec, "replicas", json!(1));
            }
            pod_template(obj.at_mut("/spec/template/spec"));
        }
        Builtin::Job => {
            if let Some(spec) = object_at(obj, "spec") {
                set_default(spec, "completions", json!(1));
                set_default(spec, "parallelism", json!(1));
                set_default(spec, "backoffLimit", json!(6));
                set_default(spec, "completionMode", json!("NonIndexed"));
                set_default(spec, "suspend", json!(false));
                set_default(spec, "manualSelector", json!(false));
                set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
            }
            pod_template(obj.at_mut("/spec/template/spec"));
        }
        Builtin::CronJob => {
            if let Some(spec) = object_at(obj, "spec") {
                set_default(spec, "concurrencyPolicy", json!("Allow"));
                set_default(spec, "suspend", json!(false));
                set_default(spec, "successfulJobsHistoryLimit", json!(3));
                set_default(spec, "failedJobsHistoryLimit", json!(1));
                // Object metadata is a struct the server always serializes, empty or not.
                if let Some(job) = spec.get_mut("jobTemplate").and_then(Value::as_object_mut) {
                    set_default(job, "metadata", json!({}));
                    if let Some(template) = job
                        .get_mut("spec")
                        .and_then(|s| s.get_mut("template"))
                        .and_then(Value::as_object_mut)
                    {
                        set_default(template, "metadata", json!({}));
                    }
                }
            }
            pod_template(obj.at_mut("/spec/jobTemplate/spec/template/spec"));
        }
        Builtin::Pod => {
            pod_template(obj.at_mut("/spec"));
            if old.is_none() {
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
        }
        Builtin::PersistentVolumeClaim => {
            if let Some(spec) = object_at(obj, "spec") {
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
            if old.is_none() {
                obj["status"] = json!({"phase": "Pending"});
            }
        }
        Builtin::PersistentVolume => {
            if let Some(spec) = object_at(obj, "spec") {
                set_default(spec, "volumeMode", json!("Filesystem"));
                set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            }
            // Stored Pending, then made Available at once by the real PV controller; the
            // simulator has no PV controller, so it stores what that controller leaves.
            if old.is_none() {
                obj["status"] = json!({"phase": "Available"});
            }
        }
        Builtin::Secret => {
            if let Some(map) = obj.as_object_mut() {
                set_default(map, "type", json!("Opaque"));
                string_data(map);
            }
        }
        Builtin::Ingress if old.is_none() => obj["status"] = json!({"loadBalancer": {}}),
        Builtin::HorizontalPodAutoscaler => {
            if let Some(spec) = object_at(obj, "spec") {
                set_default(spec, "minReplicas", json!(1));
                let no_metrics = spec
                    .get("metrics")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
                if no_metrics {
                    // autoscaling/v2 defaults to 80% average CPU utilization.
                    spec.insert(
                        "metrics".to_string(),
                        json!([{"type": "Resource", "resource": {"name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 80}}}]),
                    );
                }
            }
            if old.is_none() {
                obj["status"] = json!({"desiredReplicas": 0});
            }
        }
        _ => {}
    }
}

/// Pod spec defaults, in pods and in workload templates.
fn pod_template(spec: Option<&mut Value>) {
    let Some(Value::Object(spec)) = spec else {
        return;
    };
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                let latest = c
                    .get("image")
                    .and_then(Value::as_str)
                    .is_some_and(|i| !i.contains(':') || i.ends_with(":latest"));
                set_default(
                    c,
                    "imagePullPolicy",
                    json!(if latest { "Always" } else { "IfNotPresent" }),
                );
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                set_default(c, "resources", json!({}));
            }
        }
    }
}

fn namespace(old: Option<&Value>, obj: &mut Value, name: &str) {
    if let Some(meta) = object_at(obj, "metadata")
        && let Some(labels) = meta
            .entry("labels")
            .or_insert_with(|| json!({}))
            .as_object_mut()
    {
        labels.insert("kubernetes.io/metadata.name".to_string(), json!(name));
    }
    if let Some(spec) = object_at(obj, "spec") {
        set_default(spec, "finalizers", json!(["kubernetes"]));
    }
    if old.is_none() {
        obj["status"] = json!({"phase": "Active"});
    }
}

fn service(old: Option<&Value>, obj: &mut Value, name: &str) {
    let Some(spec) = object_at(obj, "spec") else {
        return;
    };
    // Allocated values a client did not send again are kept, as the server does.
    if let Some(old_spec) = old.and_then(|o| o.get("spec")).and_then(Value::as_object) {
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if let Some(v) = old_spec.get(f) {
                set_default(spec, f, v.clone());
            }
        }
    }
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(port) = p.get("port").cloned() {
                set_default(p, "targetPort", port);
            }
        }
    }
    if spec.get("type") != Some(&json!("ExternalName")) {
        // A headless Service gets the same families and policies, its address being None.
        let ip = cluster_ip(name);
        set_default(spec, "clusterIP", json!(ip));
        let ip = spec.get("clusterIP").cloned().unwrap_or(json!(ip));
        set_default(spec, "clusterIPs", json!([ip]));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if matches!(
        spec.get("type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    ) {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if spec.get("type") == Some(&json!("LoadBalancer")) {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if old.is_none() {
        obj["status"] = json!({"loadBalancer": {}});
    }
}

/// A Secret's `stringData` is written into `data`, base64-encoded, and never stored, as the
/// API server converts it.
fn string_data(secret: &mut Map<String, Value>) {
    use base64::Engine as _;
    let Some(Value::Object(strings)) = secret.shift_remove("stringData") else {
        return;
    };
    let data = secret.entry("data").or_insert_with(|| json!({}));
    if let Some(data) = data.as_object_mut() {
        for (key, value) in strings {
            let text = value.as_str().unwrap_or_default();
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            data.insert(key, json!(encoded));
        }
    }
}

/// A stable cluster IP from the service CIDR 10.96.0.0/12, derived from the name.
fn cluster_ip(name: &str) -> String {
    let h = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("10.96.{}.{}", (h >> 8) % 256, (h % 254) + 1)
}
