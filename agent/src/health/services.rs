//! Health of networking, storage, autoscaling and API aggregation objects.

use serde_json::Value;

use super::{Health, ObjectHealth, conditions, text};

/// A claim is usable once bound. Pending is waiting, not failing: for a matching volume, for
/// the provisioner of its storage class, or (`WaitForFirstConsumer`) for a Pod to use it; a
/// cluster where nothing will ever bind it looks the same, so the message names what it waits
/// for and the health timeout decides.
pub(super) fn persistent_volume_claim(live: &Value) -> ObjectHealth {
    match text(live, "/status/phase") {
        "Bound" => ObjectHealth::healthy(),
        "Pending" => ObjectHealth::new(Health::Progressing, claim_waits_for(live)),
        "Lost" => ObjectHealth::new(Health::Degraded, "the claim lost its volume"),
        phase => ObjectHealth::new(Health::Unknown, format!("claim phase {phase:?}")),
    }
}

fn claim_waits_for(live: &Value) -> String {
    let volume = text(live, "/spec/volumeName");
    let class = text(live, "/spec/storageClassName");
    if !volume.is_empty() {
        format!("waiting for the claim to be bound to volume {volume:?}")
    } else if !class.is_empty() {
        format!(
            "waiting for a volume of storage class {class:?} to bind the claim (a matching one, \
             or one its provisioner makes)"
        )
    } else {
        "waiting for a volume without a storage class to bind the claim".into()
    }
}

/// A volume is there to be claimed; only a failed reclamation (`Failed`) needs a person.
pub(super) fn persistent_volume(live: &Value) -> ObjectHealth {
    match text(live, "/status/phase") {
        "Failed" => ObjectHealth::new(
            Health::Degraded,
            format!("volume failed: {}", text(live, "/status/message")),
        ),
        "Pending" => ObjectHealth::new(
            Health::Progressing,
            "waiting for the volume to be available",
        ),
        _ => ObjectHealth::healthy(),
    }
}

/// Only a LoadBalancer Service waits for anything: an address, which a cloud provider or a
/// load-balancer controller publishes in `status.loadBalancer.ingress`. Without one in the
/// cluster it waits for good (a ClusterIP and NodePort still work meanwhile).
pub(super) fn service(live: &Value) -> ObjectHealth {
    if text(live, "/spec/type") != "LoadBalancer" || has_ingress(live) {
        return ObjectHealth::healthy();
    }
    ObjectHealth::new(
        Health::Progressing,
        "waiting for a load balancer controller to publish an address",
    )
}

/// An Ingress is served once the ingress controller of its class publishes an address. The API
/// server itself never does: without a controller for its class it waits for good.
pub(super) fn ingress(live: &Value) -> ObjectHealth {
    if has_ingress(live) {
        return ObjectHealth::healthy();
    }
    let message = match text(live, "/spec/ingressClassName") {
        "" => "waiting for the default ingress class's controller to publish an address".into(),
        class => {
            format!("waiting for the controller of ingress class {class:?} to publish an address")
        }
    };
    ObjectHealth::new(Health::Progressing, message)
}

fn has_ingress(live: &Value) -> bool {
    live.pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|entries| !entries.is_empty())
}

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

/// The HPA controller's pass (`pkg/controller/podautoscaler/horizontal.go`): read the target's
/// scale (`AbleToScale`), then compute a replica count from the metrics (`ScalingActive`). It
/// autoscales only while `ScalingActive` is True; every False but `ScalingDisabled` (the
/// target scaled to zero on purpose) is a failure: a metric it cannot read
/// (`FailedGet{Resource,ContainerResource,Pods,Object,External}Metric`, as without a metrics
/// server), a selector it cannot use (`InvalidSelector`, `AmbiguousSelector`: two HPAs on one
/// workload). `AbleToScale=True` comes first in the list even when the metrics then fail, so
/// every condition is checked for a failure before anything counts as healthy.
fn autoscaler(live: &Value) -> ObjectHealth {
    let conditions = conditions(live);
    let failure = conditions.iter().find(|c| {
        c.status == "False"
            && match c.kind {
                "AbleToScale" => c.reason.starts_with("Failed"),
                "ScalingActive" => c.reason != "ScalingDisabled",
                _ => false,
            }
    });
    if let Some(c) = failure {
        return ObjectHealth::new(Health::Degraded, format!("{}: {}", c.reason, c.message));
    }
    match conditions.iter().find(|c| c.kind == "ScalingActive") {
        Some(c) if c.status == "True" => ObjectHealth::healthy(),
        Some(c) => ObjectHealth::new(Health::Suspended, format!("{}: {}", c.reason, c.message)),
        None if conditions.iter().any(|c| c.kind == "AbleToScale") => ObjectHealth::new(
            Health::Progressing,
            "waiting for the autoscaler to compute a replica count from its metrics",
        ),
        None => ObjectHealth::new(
            Health::Progressing,
            "waiting for the autoscaler controller to read its target's scale",
        ),
    }
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
