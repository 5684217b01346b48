//! Simulated controllers: workloads roll out, Jobs complete, Pods get ready, load
//! balancers get an address and claims bind, each after the configured delay.
//!
//! One task drives all clusters from a delay queue; nothing polls.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::apply::track_update;
use crate::catalog::Builtin;
use crate::cluster::{Cluster, ClusterState, Reconcile, Step};
use crate::fieldset::Scope;

/// `"true"` makes a workload stall with ProgressDeadlineExceeded, a Job fail with
/// BackoffLimitExceeded and a Pod go CrashLoopBackOff.
pub(crate) const FAIL_ANNOTATION: &str = "sim.flotilla.dev/fail";
/// `"true"` keeps a workload, Job or Pod progressing forever (never ready, never failed).
pub(crate) const HOLD_ANNOTATION: &str = "sim.flotilla.dev/hold";
/// Milliseconds: this object's rollout delay instead of the simulator's.
pub(crate) const DELAY_ANNOTATION: &str = "sim.flotilla.dev/rollout-delay-ms";

struct Due {
    at: Instant,
    cluster: Arc<Cluster>,
    work: Reconcile,
}

/// Handle to the controller task.
#[derive(Clone)]
pub(crate) struct Controllers {
    tx: mpsc::UnboundedSender<Due>,
}

impl Controllers {
    /// Starts the controller task; it ends when `shutdown` turns true.
    pub(crate) fn start(delay: Duration, mut shutdown: watch::Receiver<bool>) -> Controllers {
        let (tx, mut rx) = mpsc::unbounded_channel::<Due>();
        tokio::spawn(async move {
            let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
            let mut entries: HashMap<u64, (Arc<Cluster>, Reconcile)> = HashMap::new();
            let mut seq = 0u64;
            let mut push = |heap: &mut BinaryHeap<Reverse<(Instant, u64)>>,
                            entries: &mut HashMap<u64, (Arc<Cluster>, Reconcile)>,
                            due: Due| {
                seq += 1;
                heap.push(Reverse((due.at, seq)));
                entries.insert(seq, (due.cluster, due.work));
            };
            loop {
                let next = heap.peek().map(|Reverse((at, _))| *at);
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(due) => push(&mut heap, &mut entries, due),
                        None => break,
                    },
                    _ = sleep_until(next) => {
                        let now = Instant::now();
                        while let Some(Reverse((at, id))) = heap.peek().copied() {
                            if at > now {
                                break;
                            }
                            heap.pop();
                            let Some((cluster, work)) = entries.remove(&id) else { continue };
                            let ((), more) = cluster.write(|state| run(state, &work, delay));
                            for w in more {
                                let at = Instant::now() + w.delay;
                                push(&mut heap, &mut entries, Due { at, cluster: cluster.clone(), work: w });
                            }
                        }
                    },
                    _ = crate::fleet::stopped(&mut shutdown) => break,
                }
            }
        });
        Controllers { tx }
    }

    /// Queues work a write produced.
    pub(crate) fn schedule(&self, cluster: &Arc<Cluster>, work: Vec<Reconcile>) {
        let now = Instant::now();
        for w in work {
            // A closed channel means the simulator is shutting down: nothing to drive.
            let _ = self.tx.send(Due {
                at: now + w.delay,
                cluster: cluster.clone(),
                work: w,
            });
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn now() -> String {
    crate::fleet::timestamp()
}

/// Runs one step; follow-up work lands in `state.pending`.
fn run(state: &mut ClusterState, work: &Reconcile, default_delay: Duration) {
    let Some(rt) = state
        .resource_types()
        .into_iter()
        .find(|rt| rt.key() == work.type_key)
    else {
        return;
    };
    let Some(obj) = state.get(&work.type_key, &work.object).cloned() else {
        return;
    };
    if obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(work.uid.as_str())
        || obj.pointer("/metadata/deletionTimestamp").is_some()
    {
        return;
    }
    let Some(builtin) = rt.builtin else { return };
    let annotation = |k: &str| {
        obj.pointer("/metadata/annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
    };
    let fail = annotation(FAIL_ANNOTATION) == Some("true");
    let hold = annotation(HOLD_ANNOTATION) == Some("true");
    let delay = annotation(DELAY_ANNOTATION)
        .and_then(|d| d.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(default_delay);
    let generation = obj
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let old_status = obj.get("status").cloned().unwrap_or(json!({}));
    let now = now();
    let sim = Sim {
        obj: &obj,
        status: &old_status,
        generation,
        now: &now,
    };
    let (status, next) = match (builtin, work.step) {
        (_, Step::Finish(g)) if g != generation => return,
        (Builtin::Job, _) if sim.job_finished() => return,
        (_, Step::Observe) => (sim.progressing(builtin), Some(Step::Finish(generation))),
        (_, Step::Finish(_)) if hold => return,
        (_, Step::Finish(_)) => (sim.settled(builtin, fail), None),
    };
    if let Some(status) = status
        && status != old_status
    {
        let mut new = (*obj).clone();
        new["status"] = status;
        let manager = if builtin == Builtin::Pod {
            "kubelet"
        } else {
            "kube-controller-manager"
        };
        track_update(
            &rt,
            Some(&obj),
            &mut new,
            manager,
            &rt.api_version(&rt.versions[0]),
            Scope::Status,
            &now,
        );
        state.put(&work.type_key, work.object.clone(), new);
    }
    if let Some(step) = next {
        state.pending.push(Reconcile {
            step,
            delay,
            ..work.clone()
        });
    }
}

/// Status computations for one object.
struct Sim<'a> {
    obj: &'a Value,
    status: &'a Value,
    generation: i64,
    now: &'a str,
}

impl Sim<'_> {
    fn name(&self) -> &str {
        self.obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    fn replicas(&self) -> i64 {
        self.obj
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    }

    /// `name-<hash of the pod template>`, like a ReplicaSet or controller revision.
    fn revision(&self) -> String {
        let template = self
            .obj
            .pointer("/spec/template")
            .map(Value::to_string)
            .unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in template.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut s = String::new();
        for _ in 0..10 {
            s.push(char::from(ALPHABET[(h % ALPHABET.len() as u64) as usize]));
            h /= ALPHABET.len() as u64;
        }
        format!("{}-{s}", self.name())
    }

    fn ready_before(&self, field: &str) -> i64 {
        self.status.get(field).and_then(Value::as_i64).unwrap_or(0)
    }

    fn job_finished(&self) -> bool {
        self.status
            .get("conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter().any(|c| {
                    matches!(
                        c.get("type").and_then(Value::as_str),
                        Some("Complete" | "Failed")
                    ) && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
    }

    fn condition(
        &self,
        kind: &str,
        status: &str,
        reason: &str,
        message: &str,
        update_time: bool,
    ) -> Value {
        let previous = self
            .status
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
            });
        let since = previous
            .filter(|p| p.get("status").and_then(Value::as_str) == Some(status))
            .and_then(|p| p.get("lastTransitionTime"))
            .cloned()
            .unwrap_or_else(|| json!(self.now));
        let mut c = Map::new();
        c.insert("type".into(), json!(kind));
        c.insert("status".into(), json!(status));
        if update_time {
            c.insert("lastUpdateTime".into(), json!(self.now));
        }
        c.insert("lastTransitionTime".into(), since);
        c.insert("reason".into(), json!(reason));
        c.insert("message".into(), json!(message));
        Value::Object(c)
    }

    /// The status right after a controller observed a new generation.
    fn progressing(&self, b: Builtin) -> Option<Value> {
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
                "active": self.obj.pointer("/spec/parallelism").and_then(Value::as_i64).unwrap_or(1),
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
            Builtin::Service | Builtin::PersistentVolumeClaim => return None,
            _ => return None,
        })
    }

    /// The status once the rollout finished, or failed when the fault annotation asks.
    fn settled(&self, b: Builtin, fail: bool) -> Option<Value> {
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
                    .pointer("/spec/backoffLimit")
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
                    "succeeded": self.obj.pointer("/spec/completions").and_then(Value::as_i64).unwrap_or(1),
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
            Builtin::Service => {
                let lb =
                    self.obj.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer");
                if lb {
                    let ip = format!("172.18.255.{}", 1 + self.name().len() % 250);
                    json!({"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}})
                } else {
                    json!({"loadBalancer": {}})
                }
            }
            Builtin::PersistentVolumeClaim => json!({
                "phase": "Bound",
                "accessModes": self.obj.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
                "capacity": {"storage": self.obj.pointer("/spec/resources/requests/storage").cloned().unwrap_or(json!("1Gi"))},
            }),
            _ => return None,
        })
    }

    fn pod_status(&self, fail: bool) -> Value {
        let containers = self
            .obj
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let names: Vec<&str> = containers
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .collect();
        let uid = self
            .obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ns = self
            .obj
            .pointer("/metadata/namespace")
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
fn drop_zeros(mut v: Value) -> Value {
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
