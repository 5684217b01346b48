//! Health of networking, storage, autoscaling and API aggregation objects.

use serde_json::Value;

use super::{Health, ObjectHealth, conditions, text};

pub(super) fn persistent_volume_claim(live: &Value) -> ObjectHealth {
    match text(live, "/status/phase") {
        "Bound" => ObjectHealth::healthy(),
        "Pending" => ObjectHealth::new(Health::Progressing, "waiting for the claim to be bound"),
        "Lost" => ObjectHealth::new(Health::Degraded, "the claim lost its volume"),
        phase => ObjectHealth::new(Health::Unknown, format!("claim phase {phase:?}")),
    }
}

pub(super) fn service(live: &Value) -> ObjectHealth {
    if text(live, "/spec/type") != "LoadBalancer" || has_ingress(live) {
        return ObjectHealth::healthy();
    }
    ObjectHealth::new(Health::Progressing, "waiting for a load balancer address")
}

pub(super) fn ingress(live: &Value) -> ObjectHealth {
    if has_ingress(live) {
        return ObjectHealth::healthy();
    }
    ObjectHealth::new(Health::Progressing, "waiting for a load balancer address")
}

fn has_ingress(live: &Value) -> bool {
    live.pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|entries| !entries.is_empty())
}

/// Condition reasons with which the autoscaler says it cannot do its job.
const HPA_FAILURES: [(&str, &str); 4] = [
    ("AbleToScale", "FailedGetScale"),
    ("AbleToScale", "FailedUpdateScale"),
    ("ScalingActive", "FailedGetResourceMetric"),
    ("ScalingActive", "InvalidSelector"),
];

/// Where `autoscaling/v1` keeps the conditions `autoscaling/v2` has in `status.conditions`: an
/// annotation holding them as JSON text.
const V1_CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";

pub(super) fn horizontal_pod_autoscaler(live: &Value) -> ObjectHealth {
    if live.pointer("/status/conditions").is_none()
        && let Some(conditions) = live
            .pointer("/metadata/annotations")
            .and_then(|annotations| annotations.get(V1_CONDITIONS_ANNOTATION))
            .and_then(Value::as_str)
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
    {
        return autoscaler(&serde_json::json!({"status": {"conditions": conditions}}));
    }
    autoscaler(live)
}

fn autoscaler(live: &Value) -> ObjectHealth {
    // The controller writes `AbleToScale=True` before `ScalingActive=False`, so every condition
    // is checked for a failure before any is taken as a sign of health.
    if let Some(c) = conditions(live)
        .into_iter()
        .find(|c| HPA_FAILURES.contains(&(c.kind, c.reason)))
    {
        return ObjectHealth::new(Health::Degraded, c.message);
    }
    if let Some(c) = conditions(live)
        .into_iter()
        .find(|c| matches!(c.kind, "AbleToScale" | "ScalingLimited") && c.status == "True")
    {
        return ObjectHealth::new(Health::Healthy, c.message);
    }
    ObjectHealth::new(Health::Progressing, "waiting to autoscale")
}

/// An aggregated API is usable once `Available` is True; until then (its backing service
/// starting, or broken) it is not Healthy, with the API server's reason. Not Degraded at once:
/// `MissingEndpoints` is normal while the service's pods start; the health timeout decides.
pub(super) fn api_service(live: &Value) -> ObjectHealth {
    match conditions(live).into_iter().find(|c| c.kind == "Available") {
        Some(c) if c.status == "True" => ObjectHealth::healthy(),
        Some(c) => ObjectHealth::new(
            Health::Progressing,
            format!("not available: {}: {}", c.reason, c.message),
        ),
        None => ObjectHealth::new(Health::Progressing, "waiting for the Available condition"),
    }
}
