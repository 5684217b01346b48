//! The horizontal pod autoscaler: reads its target's scale and reports the conditions the
//! real controller sets, with the simulated load sitting exactly at every metric's target
//! (so the desired count is the current one, kept within min/max), or with no metrics at
//! all when the fault annotation asks.
//!
//! The target's scale is never written: the simulated autoscaler reports, it does not
//! resize workloads.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Sim;
use crate::cluster::{ClusterState, ObjectKey};
use crate::pointer::At;

/// The replicas of the HPA's scale target, or why the controller cannot read them (the
/// text the real controller puts after "unable to get the target's current scale: ").
pub(super) fn target_replicas(state: &ClusterState, hpa: &Value) -> Result<i64, String> {
    let target = hpa.at("/spec/scaleTargetRef");
    let field = |k: &str| {
        target
            .and_then(|t| t.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let group = field("apiVersion")
        .rsplit_once('/')
        .map_or("", |(group, _)| group);
    let kind = field("kind");
    let rt = state
        .resource_types()
        .into_iter()
        .find(|rt| rt.group == group && rt.kind == kind)
        .ok_or_else(|| format!("no matches for kind {kind:?} in group {group:?}"))?;
    if !rt.scale_subresource {
        return Err("the server could not find the requested resource".to_string());
    }
    let namespace = hpa
        .at("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = field("name");
    let obj = state
        .get(&rt.key(), &(namespace.to_string(), name.to_string()))
        .ok_or_else(|| format!("{} {name:?} not found", rt.key()))?;
    Ok(obj
        .at("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0))
}

/// Other HPAs of the namespace scaling the same target.
pub(super) struct SharedTarget {
    /// The real controller's `AmbiguousSelector` message, naming the target's selector and
    /// every HPA on it.
    pub(super) message: String,
    /// The others whose status does not say so yet, to be looked at again (the real
    /// controller notices at each one's next pass): key, uid and generation.
    pub(super) unaware: Vec<(ObjectKey, String, i64)>,
}

/// Whether other HPAs of the namespace scale the same target, and which of them have not
/// reported it yet. *Assumption:* HPAs share pods only when they share a target (the real
/// controller compares the pods each target's selector matches), and the selector is its
/// `matchLabels`.
pub(super) fn shared_target(state: &ClusterState, hpa: &Value) -> Option<SharedTarget> {
    let namespace = hpa.at("/metadata/namespace").and_then(Value::as_str)?;
    let name = hpa.at("/metadata/name").and_then(Value::as_str)?;
    let target = hpa.at("/spec/scaleTargetRef")?;
    let rt = state
        .resource_types()
        .into_iter()
        .find(|rt| rt.group == "autoscaling" && rt.kind == "HorizontalPodAutoscaler")?;
    let same = |other: &Value| {
        let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let other = other.at("/spec/scaleTargetRef");
        other.is_some_and(|o| {
            ["apiVersion", "kind", "name"]
                .iter()
                .all(|k| field(o, k) == field(target, k))
        })
    };
    let sharing: Vec<(&ObjectKey, &Arc<Value>)> = state
        .list(&rt.key(), Some(namespace))
        .filter(|(_, other)| same(other) && other.at("/metadata/deletionTimestamp").is_none())
        .collect();
    if sharing.len() < 2 {
        return None;
    }
    let names: Vec<String> = sharing
        .iter()
        .map(|((ns, name), _)| format!("{ns}/{name}"))
        .collect();
    let message = format!(
        "pods by selector {} are controlled by more than one HPA (e.g. [{}])",
        target_selector(state, target, namespace),
        names.join(" ")
    );
    let unaware = sharing
        .into_iter()
        .filter(|((_, other), obj)| {
            other != name
                && obj
                    .at("/status/conditions")
                    .and_then(Value::as_array)
                    .is_none_or(|conditions| {
                        !conditions.iter().any(|c| {
                            c.get("reason").and_then(Value::as_str) == Some("AmbiguousSelector")
                                && c.get("message").and_then(Value::as_str)
                                    == Some(message.as_str())
                        })
                    })
        })
        .map(|(key, obj)| {
            let uid = obj.at("/metadata/uid").and_then(Value::as_str);
            let generation = obj.at("/metadata/generation").and_then(Value::as_i64);
            (
                key.clone(),
                uid.unwrap_or_default().to_owned(),
                generation.unwrap_or(0),
            )
        })
        .collect();
    Some(SharedTarget { message, unaware })
}

/// The target's `spec.selector.matchLabels` as Kubernetes prints a label selector:
/// `key=value` pairs sorted by key, comma-separated.
fn target_selector(state: &ClusterState, target: &Value, namespace: &str) -> String {
    let field = |k: &str| target.get(k).and_then(Value::as_str).unwrap_or_default();
    let group = field("apiVersion")
        .rsplit_once('/')
        .map_or("", |(group, _)| group);
    let labels = state
        .resource_types()
        .into_iter()
        .find(|rt| rt.group == group && rt.kind == field("kind"))
        .and_then(|rt| {
            state
                .get(
                    &rt.key(),
                    &(namespace.to_string(), field("name").to_string()),
                )
                .cloned()
        })
        .and_then(|obj| obj.at("/spec/selector/matchLabels").cloned())
        .and_then(|labels| labels.as_object().cloned())
        .unwrap_or_default();
    let mut pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.join(",")
}

impl Sim<'_> {
    /// The HPA's status after one pass of the controller, and whether to look again later
    /// (while the target cannot be read or is shared with another HPA, as the real controller
    /// looks again every resync).
    pub(super) fn autoscaler_settled(
        &self,
        target: Result<i64, String>,
        ambiguous: Option<String>,
        fail: bool,
    ) -> (Value, bool) {
        let mut status = self.status.as_object().cloned().unwrap_or_default();
        let mut conditions: Vec<Value> = status
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut set = |kind: &str, state: &str, reason: &str, message: &str| {
            set_condition(&mut conditions, kind, state, reason, message, self.now);
        };
        let current = match target {
            Err(e) => {
                set(
                    "AbleToScale",
                    "False",
                    "FailedGetScale",
                    &format!(
                        "the HPA controller was unable to get the target's current scale: {e}"
                    ),
                );
                return (finish(status, conditions), true);
            }
            Ok(replicas) => replicas,
        };
        set(
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        );
        let min = self
            .obj
            .at("/spec/minReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let max = self
            .obj
            .at("/spec/maxReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(current);
        let metrics: Vec<Value> = self
            .obj
            .at("/spec/metrics")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if current == 0 && min != 0 {
            set(
                "ScalingActive",
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            );
            status.remove("currentMetrics");
            status.remove("currentReplicas");
            status.insert("desiredReplicas".into(), json!(0));
        } else if let Some(message) = ambiguous {
            // Checked with the selector, before any metric is read.
            set("ScalingActive", "False", "AmbiguousSelector", &message);
            status.insert("currentReplicas".into(), json!(current));
            return (finish(status, conditions), true);
        } else if fail {
            // No metrics: the controller keeps the last desired count and metrics.
            let namespace = self
                .obj
                .at("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let (reason, error) = metrics_unavailable(&metrics, namespace);
            set(
                "ScalingActive",
                "False",
                reason,
                &format!("the HPA was unable to compute the replica count: {error}"),
            );
            status.insert("currentReplicas".into(), json!(current));
        } else {
            set(
                "AbleToScale",
                "True",
                "ReadyForNewScale",
                "recommended size matches current size",
            );
            set(
                "ScalingActive",
                "True",
                "ValidMetricFound",
                &format!(
                    "the HPA was able to successfully calculate a replica count from {}",
                    metric_name(metrics.first())
                ),
            );
            let desired = current.clamp(min, max.max(min));
            let (limited, reason, message) = if desired > current {
                (
                    "True",
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                )
            } else if desired < current {
                (
                    "True",
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )
            } else {
                (
                    "False",
                    "DesiredWithinRange",
                    "the desired count is within the acceptable range",
                )
            };
            set("ScalingLimited", limited, reason, message);
            status.insert("currentReplicas".into(), json!(current));
            status.insert("desiredReplicas".into(), json!(desired));
            status.insert(
                "currentMetrics".into(),
                Value::Array(metrics.iter().filter_map(at_target).collect()),
            );
        }
        if status.get("currentReplicas").and_then(Value::as_i64) == Some(0) {
            status.remove("currentReplicas");
        }
        (finish(status, conditions), false)
    }
}

/// The status with its conditions; `desiredReplicas` is always present (the API
/// requires it, and later writes of the object are validated with it).
fn finish(mut status: Map<String, Value>, conditions: Vec<Value>) -> Value {
    status.entry("desiredReplicas").or_insert_with(|| json!(0));
    status.insert("conditions".into(), Value::Array(conditions));
    Value::Object(status)
}

/// Sets a condition in place, or appends it: the list keeps the order in which the
/// controller first set each type (AbleToScale, ScalingActive, ScalingLimited), and the
/// transition time moves only when the status changes.
fn set_condition(
    conditions: &mut Vec<Value>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) {
    let existing = conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind));
    let since = existing
        .as_ref()
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(status))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    let mut c = Map::new();
    c.insert("type".into(), json!(kind));
    c.insert("status".into(), json!(status));
    c.insert("lastTransitionTime".into(), since);
    c.insert("reason".into(), json!(reason));
    c.insert("message".into(), json!(message));
    match existing {
        Some(slot) => *slot = Value::Object(c),
        None => conditions.push(Value::Object(c)),
    }
}

/// The metric's status when the load sits exactly at its target: the spec's source with
/// `current` in place of `target`.
fn at_target(metric: &Value) -> Option<Value> {
    let kind = metric.get("type").and_then(Value::as_str)?;
    let key = source_key(kind)?;
    let mut source = metric.get(key)?.as_object()?.clone();
    let mut current = source.remove("target")?.as_object()?.clone();
    current.remove("type");
    source.insert("current".into(), Value::Object(current));
    Some(json!({"type": kind, key: source}))
}

/// The field of a MetricSpec/MetricStatus holding the source of a metric type.
fn source_key(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "Pods" => "pods",
        "Object" => "object",
        "External" => "external",
        _ => return None,
    })
}

/// How the controller names the metric a replica count came from.
fn metric_name(metric: Option<&Value>) -> String {
    let text = |p: &str| {
        metric
            .and_then(|m| m.at(p))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let utilization = |p: &str| metric.and_then(|m| m.at(p)).is_some();
    match metric.and_then(|m| m.get("type")).and_then(Value::as_str) {
        Some("Resource") if !utilization("/resource/target/averageUtilization") => {
            format!("{} resource", text("/resource/name"))
        }
        Some("ContainerResource")
            if utilization("/containerResource/target/averageUtilization") =>
        {
            format!(
                "{} container resource utilization (percentage of request)",
                text("/containerResource/name")
            )
        }
        Some("ContainerResource") => {
            format!("{} container resource", text("/containerResource/name"))
        }
        Some("Pods") => format!("pods metric {}", text("/pods/metric/name")),
        Some("Object") => format!(
            "{} metric {}",
            text("/object/describedObject/kind"),
            text("/object/metric/name")
        ),
        Some("External") => format!(
            "external metric {}({})",
            text("/external/metric/name"),
            go_selector(metric.and_then(|m| m.at("/external/metric/selector")))
        ),
        Some("Resource") => format!(
            "{} resource utilization (percentage of request)",
            text("/resource/name")
        ),
        _ => "cpu resource utilization (percentage of request)".to_string(),
    }
}

/// A label selector as Go prints it with `%+v` (the generated `String()`), which the
/// controller puts into external metric names.
fn go_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|s| s.is_object()) else {
        return "nil".to_string();
    };
    let mut labels: Vec<(&String, &Value)> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    labels.sort_by(|a, b| a.0.cmp(b.0));
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("{k}: {},", v.as_str().unwrap_or_default()))
        .collect();
    let expressions: String = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|e| {
                    let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
                    let values: Vec<&str> = e
                        .get("values")
                        .and_then(Value::as_array)
                        .map(|v| v.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    format!(
                        "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                        text("key"),
                        text("operator"),
                        values.join(" ")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{expressions}}},}}"
    )
}

/// The condition reason and error of the first metric when no metrics API returns anything, as
/// the real controller reports them (the first failing metric names the condition); a
/// Resource metric on cpu when there is none.
fn metrics_unavailable(metrics: &[Value], namespace: &str) -> (&'static str, String) {
    let first = metrics.first();
    let text = |p: &str| {
        first
            .and_then(|m| m.at(p))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let resource = |key: &str| {
        let name = first
            .and_then(|m| m.at(&format!("/{key}/name")))
            .and_then(Value::as_str)
            .unwrap_or("cpu");
        let average = first.is_some_and(|m| m.at(&format!("/{key}/target/averageValue")).is_some());
        let measure = if average { "usage" } else { "utilization" };
        format!(
            "failed to get {name} {measure}: unable to get metrics for resource {name}: no metrics returned from resource metrics API"
        )
    };
    match first.and_then(|m| m.get("type")).and_then(Value::as_str) {
        Some("ContainerResource") => (
            "FailedGetContainerResourceMetric",
            resource("containerResource"),
        ),
        Some("Pods") => (
            "FailedGetPodsMetric",
            format!(
                "unable to get metric {}: no metrics returned from custom metrics API",
                text("/pods/metric/name")
            ),
        ),
        Some("Object") => (
            "FailedGetObjectMetric",
            format!(
                "unable to get metric {} on {} {namespace}/{}: no metrics returned from custom metrics API",
                text("/object/metric/name"),
                text("/object/describedObject/kind"),
                text("/object/describedObject/name")
            ),
        ),
        Some("External") => (
            "FailedGetExternalMetric",
            format!(
                "unable to get external metric {namespace}/{}/{}: no metrics returned from external metrics API",
                text("/external/metric/name"),
                go_selector(first.and_then(|m| m.at("/external/metric/selector")))
            ),
        ),
        _ => ("FailedGetResourceMetric", resource("resource")),
    }
}
