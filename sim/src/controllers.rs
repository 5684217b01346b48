//! Simulated controllers: workloads roll out, Jobs complete, Pods get ready, load
//! balancers and Ingresses get an address, claims bind and autoscalers report, each after
//! the configured delay.
//!
//! One task drives all clusters from a delay queue; nothing polls.

mod autoscaler;
mod services;
mod workloads;

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
use crate::pointer::At;

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
                            if cluster.is_removed() {
                                continue;
                            }
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
    if obj.at("/metadata/uid").and_then(Value::as_str) != Some(work.uid.as_str())
        || obj.at("/metadata/deletionTimestamp").is_some()
    {
        return;
    }
    let Some(builtin) = rt.builtin else { return };
    let annotation = |k: &str| {
        obj.at("/metadata/annotations")
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
        .at("/metadata/generation")
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
        (_, Step::Observe) => (
            sim.workload_progressing(builtin),
            Some(Step::Finish(generation)),
        ),
        (_, Step::Finish(_)) if hold => return,
        (Builtin::HorizontalPodAutoscaler, Step::Finish(g)) => {
            let target = autoscaler::target_replicas(state, &obj);
            let shared = autoscaler::shared_target(state, &obj);
            let ambiguous = shared.as_ref().map(|s| s.message.clone());
            for (object, uid, generation) in shared.map(|s| s.unaware).unwrap_or_default() {
                state.pending.push(Reconcile {
                    type_key: work.type_key.clone(),
                    object,
                    uid,
                    step: Step::Finish(generation),
                    delay,
                });
            }
            let (status, retry) = sim.autoscaler_settled(target, ambiguous, fail);
            (Some(status), retry.then_some(Step::Finish(g)))
        }
        (Builtin::Service, Step::Finish(_)) => (Some(sim.service_settled(fail)), None),
        (Builtin::Ingress, Step::Finish(_)) => (Some(sim.ingress_settled(fail)), None),
        (Builtin::PersistentVolumeClaim, Step::Finish(_)) => (Some(sim.claim_settled(fail)), None),
        (_, Step::Finish(_)) => (sim.workload_settled(builtin, fail), None),
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
            .at("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    fn replicas(&self) -> i64 {
        self.obj
            .at("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    }

    /// `name-<hash of the pod template>`, like a ReplicaSet or controller revision.
    fn revision(&self) -> String {
        let template = self
            .obj
            .at("/spec/template")
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
}
