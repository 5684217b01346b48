//! Health of live objects, following the kstatus and Argo CD rules, and its roll-up per bundle.
//!
//! Every function here is pure: it reads one live object (as JSON, whatever its API version)
//! and says how healthy it is and why. The engine feeds it objects from its watches.

mod custom;
mod services;
mod workloads;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use flotilla_core::health::Health;

use crate::object::ObjectRef;

/// How many unhealthy objects a bundle's health names.
pub const UNHEALTHY_LISTED: usize = 5;

/// The health of one object and the reason for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHealth {
    /// The verdict.
    pub health: Health,
    /// Why, in words; empty when there is nothing to add.
    pub message: String,
}

impl ObjectHealth {
    /// A verdict with a message.
    pub fn new(health: Health, message: impl Into<String>) -> Self {
        ObjectHealth {
            health,
            message: message.into(),
        }
    }

    /// Healthy, with nothing to add.
    pub fn healthy() -> Self {
        ObjectHealth::new(Health::Healthy, "")
    }

    /// The object does not exist in the cluster.
    pub fn missing() -> Self {
        ObjectHealth::new(Health::Missing, "object does not exist in the cluster")
    }
}

/// The health of a bundle: the worst of its objects, and the first few that are not healthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleHealth {
    /// The worst health of any object (Healthy for an empty bundle).
    pub health: Health,
    /// Up to [`UNHEALTHY_LISTED`] objects that are not healthy, worst first.
    pub unhealthy: Vec<(ObjectRef, ObjectHealth)>,
}

/// Rolls object health up into bundle health: worst-of, listing the worst objects first.
pub fn roll_up<'a>(
    objects: impl IntoIterator<Item = (&'a ObjectRef, &'a ObjectHealth)>,
) -> BundleHealth {
    let mut unhealthy: Vec<(&ObjectRef, &ObjectHealth)> = objects
        .into_iter()
        .filter(|(_, h)| h.health != Health::Healthy)
        .collect();
    // Worst first, then by identity so the listing is stable between reports.
    unhealthy.sort_by(|a, b| b.1.health.cmp(&a.1.health).then_with(|| a.0.cmp(b.0)));
    BundleHealth {
        health: unhealthy.first().map_or(Health::Healthy, |(_, h)| h.health),
        unhealthy: unhealthy
            .into_iter()
            .take(UNHEALTHY_LISTED)
            .map(|(o, h)| (o.clone(), h.clone()))
            .collect(),
    }
}

/// The health of one live object.
pub fn assess(object: &ObjectRef, live: &Value) -> ObjectHealth {
    if live
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        return ObjectHealth::new(Health::Progressing, "pending deletion");
    }
    match (object.group.as_str(), object.kind.as_str()) {
        ("apps", "Deployment") => workloads::deployment(live),
        ("apps", "StatefulSet") => workloads::stateful_set(live),
        ("apps", "DaemonSet") => workloads::daemon_set(live),
        ("apps", "ReplicaSet") => workloads::replica_set(live),
        ("batch", "Job") => workloads::job(live),
        ("", "Pod") => workloads::pod(live),
        ("", "PersistentVolumeClaim") => services::persistent_volume_claim(live),
        ("", "PersistentVolume") => services::persistent_volume(live),
        ("", "Service") => services::service(live),
        ("networking.k8s.io" | "extensions", "Ingress") => services::ingress(live),
        ("autoscaling", "HorizontalPodAutoscaler") => services::horizontal_pod_autoscaler(live),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => custom::definition(live),
        ("apiregistration.k8s.io", "APIService") => services::api_service(live),
        // The ReplicaSet's predecessor has the same status fields.
        ("", "ReplicationController") => workloads::replica_set(live),
        // Built-in kinds without a status to judge exist, and existing is all they do (every
        // built-in kind whose status carries conditions or replica counts has a rule above).
        ("", _) | ("apps" | "batch" | "policy" | "autoscaling", _) => ObjectHealth::healthy(),
        (group, _) if group.ends_with(".k8s.io") => ObjectHealth::healthy(),
        _ => custom::resource(live),
    }
}

/// One entry of `status.conditions`.
#[derive(Debug, Default)]
struct Condition<'a> {
    kind: &'a str,
    status: &'a str,
    reason: &'a str,
    message: &'a str,
}

/// The object's `status.conditions`, skipping malformed entries.
fn conditions(live: &Value) -> Vec<Condition<'_>> {
    let Some(Value::Array(items)) = live.pointer("/status/conditions") else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|c| {
            Some(Condition {
                kind: c.get("type")?.as_str()?,
                status: c.get("status").and_then(Value::as_str).unwrap_or(""),
                reason: c.get("reason").and_then(Value::as_str).unwrap_or(""),
                message: c.get("message").and_then(Value::as_str).unwrap_or(""),
            })
        })
        .collect()
}

fn condition<'a>(live: &'a Value, kind: &str) -> Option<Condition<'a>> {
    conditions(live).into_iter().find(|c| c.kind == kind)
}

/// An integer at a JSON pointer; absent or non-integer is `None`.
fn int(live: &Value, pointer: &str) -> Option<i64> {
    live.pointer(pointer).and_then(Value::as_i64)
}

/// A string at a JSON pointer; absent or non-string is `""`.
fn text<'a>(live: &'a Value, pointer: &str) -> &'a str {
    live.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Whether the controller has seen the latest spec: `status.observedGeneration` is at least
/// `metadata.generation` (or either is absent, when there is nothing to compare).
fn generation_observed(live: &Value) -> bool {
    match (
        int(live, "/metadata/generation"),
        int(live, "/status/observedGeneration"),
    ) {
        (Some(generation), Some(observed)) => observed >= generation,
        (Some(_), None) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests;
