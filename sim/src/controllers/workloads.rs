//! Workload controllers: Deployments, StatefulSets, DaemonSets and ReplicaSets roll out,
//! Jobs complete, Pods (the kubelet's part) get ready; or each fails as the fault
//! annotation asks.

use serde_json::{Value, json};

use super::Sim;
use crate::catalog::Builtin;
use crate::pointer::At;

impl Sim<'_> {
    /// The status right after a controller observed a new generation.
    pub(super) fn workload_progressing(&self, b: Builtin) -> Option<Value> {
        let n = self.replicas();
        let g = self.generation;
        let rev = self.revision();
        Some(match b {
            Builtin::Deployment => {
                let avail = self.ready_before("availableReplicas").min(n);
                let available = self
                    .status
                    .get("conditions")
                    .and_then(Value::as_array)
                    .and_then(|c| {
                        c.iter()
                            .find(|c| c.get("type").and_then(Value::as_str) == Some("Available"))
                            .cloned()
                    });
                let available = available.unwrap_or_else(|| {
                    self.condition(
                        "Available",
                        "False",
                        "MinimumReplicasUnavailable",
                        "Deployment does not have minimum availability.",
                        true,
                    )
                });
                drop_zeros(json!({
                    "observedGeneration": g,
                    "replicas": n,
                    "updatedReplicas": 0,
                    "readyReplicas": self.ready_before("readyReplicas").min(n),
                    "availableReplicas": avail,
                    "unavailableReplicas": n - avail,
                    "conditions": [
                        available,
                        self.condition("Progressing", "True", "ReplicaSetUpdated", &format!("ReplicaSet \"{rev}\" is progressing."), true),
                    ],
                }))
            }
            Builtin::StatefulSet => drop_zeros(json!({
                "observedGeneration": g,
                "replicas": n,
                "readyReplicas": self.ready_before("readyReplicas").min(n),
                "currentReplicas": self.ready_before("currentReplicas").min(n),
                "updatedReplicas": 0,
                "availableReplicas": self.ready_before("availableReplicas").min(n),
                "currentRevision": self.status.get("currentRevision").cloned().unwrap_or(json!(rev)),
                "updateRevision": rev,
                "collisionCount": 0,
            })),
            Builtin::DaemonSet => drop_zeros(json!({
                "observedGeneration": g,
                "desiredNumberScheduled": 1,
                "currentNumberScheduled": 1,
                "numberMisscheduled": 0,
                "numberReady": self.ready_before("numberReady"),
                "numberAvailable": self.ready_before("numberAvailable"),
                "numberUnavailable": 1 - self.ready_before("numberAvailable"),
                "updatedNumberScheduled": 0,
            })),
            Builtin::ReplicaSet => drop_zeros(json!({
                "observedGeneration": g,
                "replicas": n,
                "fullyLabeledReplicas": n,
                "readyReplicas": self.ready_before("readyReplicas").min(n),
                "availableReplicas": self.ready_before("availableReplicas").min(n),
            })),
            Builtin::Job => json!({
                "startTime": self.status.get("startTime").cloned().unwrap_or(json!(self.now)),
                "active": self.obj.at("/spec/parallelism").and_then(Value::as_i64).unwrap_or(1),
                "ready": 0,
                "terminating": 0,
                "uncountedTerminatedPods": {},
            }),
            Builtin::Pod => {
                let mut s = self.status.clone();
                s["phase"] = json!("Pending");
                s["conditions"] = json!([self.condition("PodScheduled", "True", "", "", false)]);
                strip_empty_reason(&mut s);
                s
            }
            _ => return None,
        })
    }

    /// The status once the rollout finished, or failed when the fault annotation asks.
    pub(super) fn workload_settled(&self, b: Builtin, fail: bool) -> Option<Value> {
        let n = self.replicas();
        let g = self.generation;
        let rev = self.revision();
        let stalled = || {
            self.condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{rev}\" has timed out progressing."),
                true,
            )
        };
        Some(match b {
            Builtin::Deployment if fail => drop_zeros(json!({
                "observedGeneration": g,
                "replicas": n,
                "updatedReplicas": n,
                "unavailableReplicas": n,
                "conditions": [
                    self.condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.", true),
                    stalled(),
                ],
            })),
            Builtin::Deployment => drop_zeros(json!({
                "observedGeneration": g,
                "replicas": n,
                "updatedReplicas": n,
                "readyReplicas": n,
                "availableReplicas": n,
                "conditions": [
                    self.condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", true),
                    self.condition("Progressing", "True", "NewReplicaSetAvailable", &format!("ReplicaSet \"{rev}\" has successfully progressed."), true),
                ],
            })),
            Builtin::StatefulSet => {
                let ready = if fail { 0 } else { n };
                let mut s = drop_zeros(json!({
                    "observedGeneration": g,
                    "replicas": n,
                    "readyReplicas": ready,
                    "currentReplicas": n,
                    "updatedReplicas": n,
                    "availableReplicas": ready,
                    "currentRevision": rev,
                    "updateRevision": rev,
                    "collisionCount": 0,
                }));
                if fail {
                    s["conditions"] = json!([stalled()]);
                }
                s
            }
            Builtin::DaemonSet => {
                let ready = i64::from(!fail);
                let mut s = drop_zeros(json!({
                    "observedGeneration": g,
                    "desiredNumberScheduled": 1,
                    "currentNumberScheduled": 1,
                    "numberMisscheduled": 0,
                    "numberReady": ready,
                    "numberAvailable": ready,
                    "numberUnavailable": 1 - ready,
                    "updatedNumberScheduled": 1,
                }));
                if fail {
                    s["conditions"] = json!([stalled()]);
                }
                s
            }
            Builtin::ReplicaSet => {
                let ready = if fail { 0 } else { n };
                drop_zeros(json!({
                    "observedGeneration": g,
                    "replicas": n,
                    "fullyLabeledReplicas": n,
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                }))
            }
            Builtin::Job if fail => {
                let limit = self
                    .obj
                    .at("/spec/backoffLimit")
                    .and_then(Value::as_i64)
                    .unwrap_or(6);
                let msg = "Job has reached the specified backoff limit";
                json!({
                    "startTime": self.status.get("startTime").cloned().unwrap_or(json!(self.now)),
                    "failed": limit + 1,
                    "ready": 0,
                    "terminating": 0,
                    "uncountedTerminatedPods": {},
                    "conditions": [
                        self.condition("FailureTarget", "True", "BackoffLimitExceeded", msg, true),
                        self.condition("Failed", "True", "BackoffLimitExceeded", msg, true),
                    ],
                })
            }
            Builtin::Job => {
                let msg = "Reached expected number of succeeded pods";
                json!({
                    "startTime": self.status.get("startTime").cloned().unwrap_or(json!(self.now)),
                    "completionTime": self.now,
                    "succeeded": self.obj.at("/spec/completions").and_then(Value::as_i64).unwrap_or(1),
                    "ready": 0,
                    "terminating": 0,
                    "uncountedTerminatedPods": {},
                    "conditions": [
                        self.condition("SuccessCriteriaMet", "True", "CompletionsReached", msg, true),
                        self.condition("Complete", "True", "CompletionsReached", msg, true),
                    ],
                })
            }
            Builtin::Pod => self.pod_status(fail),
            _ => return None,
        })
    }

    fn pod_status(&self, fail: bool) -> Value {
        let containers = self
            .obj
            .at("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let names: Vec<&str> = containers
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .collect();
        let uid = self
            .obj
            .at("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ns = self
            .obj
            .at("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let statuses: Vec<Value> = containers
            .iter()
            .map(|c| {
                let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
                let state = if fail {
                    json!({"waiting": {"reason": "CrashLoopBackOff",
                        "message": format!("back-off 40s restarting failed container={name} pod={}_{ns}({uid})", self.name())}})
                } else {
                    json!({"running": {"startedAt": self.now}})
                };
                let mut s = json!({
                    "name": name,
                    "image": image,
                    "imageID": format!("docker.io/library/{image}@sha256:{}", "0".repeat(64)),
                    "containerID": format!("containerd://{}", uuid::Uuid::new_v4().simple()),
                    "ready": !fail,
                    "started": !fail,
                    "restartCount": if fail { 3 } else { 0 },
                    "state": state,
                });
                if fail {
                    s["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error",
                        "startedAt": self.now, "finishedAt": self.now}});
                }
                s
            })
            .collect();
        let (ready, reason, message) = if fail {
            (
                "False",
                "ContainersNotReady",
                format!("containers with unready status: [{}]", names.join(" ")),
            )
        } else {
            ("True", "", String::new())
        };
        let mut conditions = vec![
            self.condition("PodReadyToStartContainers", "True", "", "", false),
            self.condition("Initialized", "True", "", "", false),
            self.condition("Ready", ready, reason, &message, false),
            self.condition("ContainersReady", ready, reason, &message, false),
            self.condition("PodScheduled", "True", "", "", false),
        ];
        for c in &mut conditions {
            strip_empty(c);
        }
        let ip = format!("10.244.0.{}", 2 + self.name().len() % 250);
        json!({
            "phase": "Running",
            "conditions": conditions,
            "hostIP": "172.18.0.2",
            "hostIPs": [{"ip": "172.18.0.2"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": self.status.get("startTime").cloned().unwrap_or(json!(self.now)),
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        })
    }
}

/// Drops zero counters, as the API server's `omitempty` does.
pub(super) fn drop_zeros(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| x.as_i64() != Some(0));
    }
    v
}

fn strip_empty(c: &mut Value) {
    if let Some(m) = c.as_object_mut() {
        m.retain(|_, x| x.as_str() != Some(""));
    }
}

fn strip_empty_reason(s: &mut Value) {
    if let Some(conds) = s.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conds {
            strip_empty(c);
        }
    }
}
