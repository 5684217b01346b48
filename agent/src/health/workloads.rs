//! Workload health: the rollout rules of `kubectl rollout status`, as Argo CD applies them.

use serde_json::Value;

use super::{Health, ObjectHealth, condition, conditions, generation_observed, int, text};

pub(super) fn deployment(live: &Value) -> ObjectHealth {
    if live.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return ObjectHealth::new(Health::Suspended, "deployment is paused");
    }
    if !generation_observed(live) {
        return ObjectHealth::new(
            Health::Progressing,
            "waiting for the controller to observe the latest spec",
        );
    }
    if let Some(stalled) = past_deadline(live) {
        return stalled;
    }
    let updated = int(live, "/status/updatedReplicas").unwrap_or(0);
    let replicas = int(live, "/status/replicas").unwrap_or(0);
    let available = int(live, "/status/availableReplicas").unwrap_or(0);
    if let Some(desired) = int(live, "/spec/replicas")
        && updated < desired
    {
        return ObjectHealth::new(
            Health::Progressing,
            format!("waiting for rollout: {updated} of {desired} replicas updated"),
        );
    }
    if replicas > updated {
        return ObjectHealth::new(
            Health::Progressing,
            format!(
                "waiting for rollout: {} old replicas pending termination",
                replicas - updated
            ),
        );
    }
    if available < updated {
        return ObjectHealth::new(
            Health::Progressing,
            format!("waiting for rollout: {available} of {updated} updated replicas available"),
        );
    }
    ObjectHealth::healthy()
}

/// A `Progressing` condition saying the rollout gave up. Deployments set it; other
/// workload controllers that adopt the same convention are judged by it too.
fn past_deadline(live: &Value) -> Option<ObjectHealth> {
    let progressing = condition(live, "Progressing")?;
    (progressing.reason == "ProgressDeadlineExceeded").then(|| {
        ObjectHealth::new(
            Health::Degraded,
            format!("exceeded its progress deadline: {}", progressing.message),
        )
    })
}

pub(super) fn stateful_set(live: &Value) -> ObjectHealth {
    let observed = int(live, "/status/observedGeneration").unwrap_or(0);
    if observed == 0 || !generation_observed(live) {
        return ObjectHealth::new(
            Health::Progressing,
            "waiting for the controller to observe the latest spec",
        );
    }
    if let Some(stalled) = past_deadline(live) {
        return stalled;
    }
    let ready = int(live, "/status/readyReplicas").unwrap_or(0);
    let desired = int(live, "/spec/replicas");
    if let Some(desired) = desired
        && ready < desired
    {
        return ObjectHealth::new(
            Health::Progressing,
            format!("waiting for {} pods to be ready", desired - ready),
        );
    }
    let updated = int(live, "/status/updatedReplicas").unwrap_or(0);
    if text(live, "/spec/updateStrategy/type") == "OnDelete" {
        return ObjectHealth::healthy();
    }
    if let (Some(desired), Some(partition)) = (
        desired,
        int(live, "/spec/updateStrategy/rollingUpdate/partition"),
    ) {
        let target = desired - partition;
        if updated < target {
            return ObjectHealth::new(
                Health::Progressing,
                format!("waiting for partitioned rollout: {updated} of {target} pods updated"),
            );
        }
        return ObjectHealth::healthy();
    }
    let update_revision = text(live, "/status/updateRevision");
    if update_revision != text(live, "/status/currentRevision") {
        return ObjectHealth::new(
            Health::Progressing,
            format!("waiting for rolling update: {updated} pods at revision {update_revision}"),
        );
    }
    ObjectHealth::healthy()
}

pub(super) fn daemon_set(live: &Value) -> ObjectHealth {
    if !generation_observed(live) {
        return ObjectHealth::new(
            Health::Progressing,
            "waiting for the controller to observe the latest spec",
        );
    }
    if let Some(stalled) = past_deadline(live) {
        return stalled;
    }
    if text(live, "/spec/updateStrategy/type") == "OnDelete" {
        return ObjectHealth::healthy();
    }
    let desired = int(live, "/status/desiredNumberScheduled").unwrap_or(0);
    let updated = int(live, "/status/updatedNumberScheduled").unwrap_or(0);
    let available = int(live, "/status/numberAvailable").unwrap_or(0);
    if updated < desired {
        return ObjectHealth::new(
            Health::Progressing,
            format!("waiting for rollout: {updated} of {desired} pods updated"),
        );
    }
    if available < desired {
        return ObjectHealth::new(
            Health::Progressing,
            format!("waiting for rollout: {available} of {desired} updated pods available"),
        );
    }
    ObjectHealth::healthy()
}

pub(super) fn replica_set(live: &Value) -> ObjectHealth {
    if !generation_observed(live) {
        return ObjectHealth::new(
            Health::Progressing,
            "waiting for the controller to observe the latest spec",
        );
    }
    if let Some(failure) = condition(live, "ReplicaFailure")
        && failure.status == "True"
    {
        return ObjectHealth::new(Health::Degraded, failure.message);
    }
    let available = int(live, "/status/availableReplicas").unwrap_or(0);
    if let Some(desired) = int(live, "/spec/replicas")
        && available < desired
    {
        return ObjectHealth::new(
            Health::Progressing,
            format!("waiting for rollout: {available} of {desired} replicas available"),
        );
    }
    ObjectHealth::healthy()
}

pub(super) fn job(live: &Value) -> ObjectHealth {
    let mut verdict = None;
    for c in conditions(live) {
        if c.status != "True" {
            continue;
        }
        match c.kind {
            "Failed" => {
                return ObjectHealth::new(Health::Degraded, failure_message(c.reason, c.message));
            }
            "Complete" => verdict = Some(ObjectHealth::new(Health::Healthy, c.message)),
            "Suspended" => verdict = Some(ObjectHealth::new(Health::Suspended, "job is suspended")),
            _ => {}
        }
    }
    verdict.unwrap_or_else(|| {
        let active = int(live, "/status/active").unwrap_or(0);
        ObjectHealth::new(
            Health::Progressing,
            format!("job is running ({active} active pods)"),
        )
    })
}

pub(super) fn pod(live: &Value) -> ObjectHealth {
    let restart_policy = match text(live, "/spec/restartPolicy") {
        "" => "Always",
        policy => policy,
    };
    let containers = container_statuses(live, "containerStatuses");
    // Pods that restart forever never reach a failed phase, so a container stuck in a back-off
    // or an error is the only sign that they will not become healthy on their own.
    if restart_policy == "Always" {
        let stuck: Vec<String> = containers
            .iter()
            .filter_map(|c| {
                let waiting = c.pointer("/state/waiting")?;
                let reason = waiting.get("reason")?.as_str()?;
                let failing = reason.starts_with("Err")
                    || reason.ends_with("Error")
                    || reason.ends_with("BackOff");
                failing.then(|| {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
                    let message = waiting.get("message").and_then(Value::as_str).unwrap_or("");
                    container_message(name, reason, message)
                })
            })
            .collect();
        if !stuck.is_empty() {
            return ObjectHealth::new(Health::Degraded, stuck.join("; "));
        }
    }
    let message = text(live, "/status/message");
    match text(live, "/status/phase") {
        "Pending" => ObjectHealth::new(Health::Progressing, or(message, "pod is pending")),
        "Succeeded" => ObjectHealth::new(Health::Healthy, message),
        "Failed" => ObjectHealth::new(Health::Degraded, or(message, &failed_pod_message(live))),
        "Running" if restart_policy == "Always" => {
            if condition(live, "Ready").is_some_and(|c| c.status == "True") {
                return ObjectHealth::new(Health::Healthy, message);
            }
            let restarted = containers.iter().any(|c| {
                c.pointer("/lastState/terminated")
                    .is_some_and(|t| !t.is_null())
            });
            if restarted {
                ObjectHealth::new(
                    Health::Degraded,
                    or(message, "a container terminated and the pod is not ready"),
                )
            } else {
                ObjectHealth::new(
                    Health::Progressing,
                    or(message, "waiting for the pod to be ready"),
                )
            }
        }
        // Pods that run to completion are still working while they run.
        "Running" => ObjectHealth::new(Health::Progressing, or(message, "pod is running")),
        phase => ObjectHealth::new(Health::Unknown, format!("pod phase {phase:?}")),
    }
}

fn container_statuses<'a>(live: &'a Value, field: &str) -> &'a [Value] {
    live.get("status")
        .and_then(|s| s.get(field))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn failed_pod_message(live: &Value) -> String {
    let init = container_statuses(live, "initContainerStatuses");
    let main = container_statuses(live, "containerStatuses");
    for c in init.iter().chain(main) {
        let Some(terminated) = c.pointer("/state/terminated") else {
            continue;
        };
        let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
        let message = terminated
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("");
        let reason = terminated
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        let code = terminated
            .get("exitCode")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if !message.is_empty() || reason == "OOMKilled" {
            return container_message(name, reason, message);
        }
        if code != 0 {
            return format!("container {name} failed with exit code {code}");
        }
    }
    "pod failed".to_string()
}

fn container_message(name: &str, reason: &str, message: &str) -> String {
    match (reason.is_empty(), message.is_empty()) {
        (_, true) => format!("container {name}: {reason}"),
        (true, false) => format!("container {name}: {message}"),
        (false, false) => format!("container {name}: {reason}: {message}"),
    }
}

fn failure_message(reason: &str, message: &str) -> String {
    match (reason.is_empty(), message.is_empty()) {
        (true, true) => "job failed".to_string(),
        (false, true) => format!("job failed: {reason}"),
        (true, false) => format!("job failed: {message}"),
        (false, false) => format!("job failed: {reason}: {message}"),
    }
}

fn or(message: &str, fallback: &str) -> String {
    if message.is_empty() {
        fallback
    } else {
        message
    }
    .to_string()
}
