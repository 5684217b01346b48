//! One virtual cluster: its objects, resourceVersion counter, event history, fault and
//! request counters.
//!
//! Everything of a cluster sits behind its own lock, so clusters never contend.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::Fault;
use crate::catalog::{Builtin, ResourceType, builtins};
use crate::pointer::At;
use crate::requests::RequestCounters;

/// Kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// The object appeared.
    Added,
    /// The object changed.
    Modified,
    /// The object is gone.
    Deleted,
}

/// A change, kept in the cluster's bounded history for watches.
///
/// Objects are kept serialized: a version costs its JSON, not a parsed tree, so the
/// history of a thousand clusters stays small; the latest version's bytes are shared
/// with the store.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    /// resourceVersion the change produced.
    pub(crate) rv: u64,
    /// Store key of the resource type.
    pub(crate) type_key: Arc<str>,
    /// The object's namespace, empty for cluster-scoped objects.
    pub(crate) namespace: Arc<str>,
    /// What happened.
    pub(crate) kind: EventKind,
    /// The object after the change (for deletions: its last state, with the deletion rv).
    pub(crate) object: Bytes,
    /// The object before the change, to tell watchers with selectors when it left their view.
    pub(crate) previous: Option<Bytes>,
}

/// A stored object and its serialization.
#[derive(Clone, Debug)]
struct Stored {
    obj: Arc<Value>,
    json: Bytes,
}

fn serialize(obj: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(obj).unwrap_or_default())
}

/// Namespace and name of an object; the namespace is empty for cluster-scoped ones.
pub(crate) type ObjectKey = (String, String);

/// Work for the simulated controllers, collected while the lock is held.
#[derive(Clone, Debug)]
pub(crate) struct Reconcile {
    /// Store key of the resource type.
    pub(crate) type_key: String,
    /// The object's namespace and name.
    pub(crate) object: ObjectKey,
    /// The object's uid, so a recreated object is not mistaken for the old one.
    pub(crate) uid: String,
    /// What the controller does when the work is due.
    pub(crate) step: Step,
    /// How long to wait before it is due.
    pub(crate) delay: std::time::Duration,
}

/// A controller step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Observe the object: start a rollout or react to a changed fault annotation.
    Observe,
    /// Finish the rollout of this generation.
    Finish(i64),
}

/// The state of one cluster.
pub(crate) struct ClusterState {
    rv: u64,
    objects: HashMap<String, BTreeMap<ObjectKey, Stored>>,
    history: VecDeque<Event>,
    history_cap: usize,
    /// Watches may resume from any resourceVersion at or above this one.
    floor: u64,
    /// Bumped by a forced compaction: open watches end with 410.
    epoch: u64,
    custom: BTreeMap<String, Arc<ResourceType>>,
    /// Controller work the current write produced.
    pub(crate) pending: Vec<Reconcile>,
    builtin_types: Arc<Vec<Arc<ResourceType>>>,
    /// When each custom type was registered, for [`Fault::LaggingCustomResources`].
    registered: HashMap<String, std::time::Instant>,
}

impl ClusterState {
    /// The latest resourceVersion.
    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    /// The forced-compaction epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The lowest resourceVersion a watch can resume from.
    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }

    /// Every resource type served: built-ins, then those registered by CRDs.
    pub(crate) fn resource_types(&self) -> Vec<Arc<ResourceType>> {
        let mut all: Vec<Arc<ResourceType>> = self.builtin_types.iter().cloned().collect();
        all.extend(self.custom.values().cloned());
        all
    }

    /// The resource type a URL names, by group and plural (or kind-insensitive singular).
    pub(crate) fn find_type(&self, group: &str, resource: &str) -> Option<Arc<ResourceType>> {
        self.builtin_types
            .iter()
            .chain(self.custom.values())
            .find(|rt| rt.group == group && rt.plural == resource)
            .cloned()
    }

    /// Registers (or replaces) the type a CRD defines.
    pub(crate) fn register(&mut self, rt: ResourceType) {
        let served_anew = self
            .custom
            .get(&rt.key())
            .is_none_or(|old| old.versions != rt.versions);
        if served_anew {
            self.registered.insert(rt.key(), std::time::Instant::now());
        }
        self.custom.insert(rt.key(), Arc::new(rt));
    }

    /// When the CRD of a custom type was created or last changed its served versions.
    pub(crate) fn registered_at(&self, key: &str) -> Option<std::time::Instant> {
        self.registered.get(key).copied()
    }

    /// Unregisters a CRD's type and drops its objects, with DELETED events.
    pub(crate) fn unregister(&mut self, key: &str) {
        self.custom.remove(key);
        self.registered.remove(key);
        let keys: Vec<ObjectKey> = self
            .objects
            .get(key)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for k in keys {
            self.remove(key, &k);
        }
        self.objects.remove(key);
    }

    /// One object.
    pub(crate) fn get(&self, type_key: &str, key: &ObjectKey) -> Option<&Arc<Value>> {
        self.objects.get(type_key)?.get(key).map(|s| &s.obj)
    }

    /// One object's JSON, as stored.
    pub(crate) fn get_json(&self, type_key: &str, key: &ObjectKey) -> Option<&Bytes> {
        self.objects.get(type_key)?.get(key).map(|s| &s.json)
    }

    /// Objects of a type, in one namespace or all (`None`), sorted by namespace and name.
    pub(crate) fn list<'a>(
        &'a self,
        type_key: &str,
        namespace: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = (&'a ObjectKey, &'a Arc<Value>)> + 'a> {
        let Some(map) = self.objects.get(type_key) else {
            return Box::new(std::iter::empty());
        };
        match namespace {
            None => Box::new(map.iter().map(|(k, s)| (k, &s.obj))),
            Some(ns) => Box::new(
                map.range((ns.to_string(), String::new())..)
                    .take_while(move |((n, _), _)| n == ns)
                    .map(|(k, s)| (k, &s.obj)),
            ),
        }
    }

    /// Number of objects of all types.
    pub(crate) fn object_count(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    /// Whether a namespace exists, and whether it is terminating.
    pub(crate) fn namespace(&self, name: &str) -> Option<&Arc<Value>> {
        self.get("namespaces", &(String::new(), name.to_string()))
    }

    /// Whether any namespaced object still lives in a namespace.
    pub(crate) fn namespace_is_empty(&self, namespace: &str) -> bool {
        self.objects.iter().all(|(k, m)| {
            k == "namespaces"
                || m.range((namespace.to_string(), String::new())..)
                    .next()
                    .is_none_or(|((n, _), _)| n != namespace)
        })
    }

    /// Keys of every object in a namespace, by type.
    pub(crate) fn namespace_contents(&self, namespace: &str) -> Vec<(String, ObjectKey)> {
        let mut out = Vec::new();
        for (type_key, map) in &self.objects {
            for (k, _) in map
                .range((namespace.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == namespace)
            {
                out.push((type_key.clone(), k.clone()));
            }
        }
        out
    }

    /// Every object whose ownerReferences name this uid.
    pub(crate) fn dependents(&self, uid: &str) -> Vec<(String, ObjectKey)> {
        let mut out = Vec::new();
        for (type_key, map) in &self.objects {
            for (k, stored) in map {
                let owned = stored
                    .obj
                    .at("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                    });
                if owned {
                    out.push((type_key.clone(), k.clone()));
                }
            }
        }
        out
    }

    /// Stores an object under a new resourceVersion and records the event.
    pub(crate) fn put(&mut self, type_key: &str, key: ObjectKey, mut obj: Value) -> Arc<Value> {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let json = serialize(&obj);
        let obj = Arc::new(obj);
        let namespace: Arc<str> = Arc::from(key.0.as_str());
        let previous = self
            .objects
            .entry(type_key.to_string())
            .or_default()
            .insert(
                key,
                Stored {
                    obj: obj.clone(),
                    json: json.clone(),
                },
            );
        let kind = if previous.is_some() {
            EventKind::Modified
        } else {
            EventKind::Added
        };
        self.record(type_key, namespace, kind, json, previous.map(|p| p.json));
        obj
    }

    /// Removes an object; the DELETED event carries the deletion's resourceVersion.
    pub(crate) fn remove(&mut self, type_key: &str, key: &ObjectKey) -> Option<Arc<Value>> {
        let previous = self.objects.get_mut(type_key)?.remove(key)?;
        self.rv += 1;
        let mut last = (*previous.obj).clone();
        last["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let json = serialize(&last);
        let namespace: Arc<str> = Arc::from(key.0.as_str());
        self.record(
            type_key,
            namespace,
            EventKind::Deleted,
            json,
            Some(previous.json),
        );
        Some(Arc::new(last))
    }

    fn record(
        &mut self,
        type_key: &str,
        namespace: Arc<str>,
        kind: EventKind,
        object: Bytes,
        previous: Option<Bytes>,
    ) {
        if self.history.len() >= self.history_cap
            && let Some(evicted) = self.history.pop_front()
        {
            self.floor = evicted.rv;
        }
        self.history.push_back(Event {
            rv: self.rv,
            type_key: Arc::from(type_key),
            namespace,
            kind,
            object,
            previous,
        });
    }

    /// Events after `rv`, or `None` when some of them were compacted away.
    pub(crate) fn events_after(&self, rv: u64) -> Option<Vec<Event>> {
        if rv < self.floor {
            return None;
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Some(self.history.range(start..).cloned().collect())
    }

    /// Drops the whole event history, as an etcd compaction does, and ends open watches.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.floor = self.rv;
        self.epoch += 1;
    }

    /// Drops every object, registered type and event: the cluster is gone.
    fn clear(&mut self) {
        self.objects.clear();
        self.custom.clear();
        self.pending.clear();
        self.compact();
    }
}

/// A virtual cluster.
pub(crate) struct Cluster {
    name: String,
    state: Mutex<ClusterState>,
    changes: watch::Sender<u64>,
    fault: watch::Sender<Option<Fault>>,
    removed: watch::Sender<bool>,
    requests: RequestCounters,
}

impl Cluster {
    /// A cluster with the namespaces every real cluster starts with.
    pub(crate) fn new(
        name: &str,
        history_cap: usize,
        builtin_types: Arc<Vec<Arc<ResourceType>>>,
        now: &str,
    ) -> Cluster {
        let mut state = ClusterState {
            rv: 0,
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_cap: history_cap.max(1),
            floor: 0,
            epoch: 0,
            custom: BTreeMap::new(),
            pending: Vec::new(),
            builtin_types,
            registered: HashMap::new(),
        };
        for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
            state.put(
                "namespaces",
                (String::new(), ns.to_string()),
                new_namespace(ns, now),
            );
        }
        state.put("nodes", (String::new(), NODE.to_string()), new_node(now));
        Cluster {
            name: name.to_string(),
            state: Mutex::new(state),
            changes: watch::Sender::new(0),
            fault: watch::Sender::new(None),
            removed: watch::Sender::new(false),
            requests: RequestCounters::default(),
        }
    }

    /// The cluster's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Reads the state.
    pub(crate) fn read(&self) -> MutexGuard<'_, ClusterState> {
        self.state.lock()
    }

    /// Runs a write under the lock, then wakes watchers and returns the controller work.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut ClusterState) -> T) -> (T, Vec<Reconcile>) {
        let (out, rv, pending) = {
            let mut state = self.state.lock();
            let before = (state.rv, state.epoch);
            let out = f(&mut state);
            let pending = std::mem::take(&mut state.pending);
            let rv = ((state.rv, state.epoch) != before).then_some(state.rv);
            (out, rv, pending)
        };
        if let Some(rv) = rv {
            self.changes.send_replace(rv);
        }
        (out, pending)
    }

    /// A receiver woken on every change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The fault in force, if any.
    pub(crate) fn fault(&self) -> Option<Fault> {
        self.fault.borrow().clone()
    }

    /// A receiver woken when the fault changes.
    pub(crate) fn fault_changes(&self) -> watch::Receiver<Option<Fault>> {
        self.fault.subscribe()
    }

    /// Sets or clears the fault.
    pub(crate) fn set_fault(&self, fault: Option<Fault>) {
        self.fault.send_replace(fault);
    }

    /// The requests this cluster has answered.
    pub(crate) fn requests(&self) -> &RequestCounters {
        &self.requests
    }

    /// Decommissions the cluster: its state is dropped and open watches are cut. Whoever
    /// still holds it (a request in flight, a queued controller step) finds it empty.
    pub(crate) fn remove(&self) {
        self.removed.send_replace(true);
        self.write(ClusterState::clear);
    }

    /// Whether the cluster was removed.
    pub(crate) fn is_removed(&self) -> bool {
        *self.removed.borrow()
    }

    /// A receiver woken when the cluster is removed.
    pub(crate) fn removal(&self) -> watch::Receiver<bool> {
        self.removed.subscribe()
    }
}

/// A namespace as the API server creates it.
pub(crate) fn new_namespace(name: &str, now: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": now,
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

/// The one node every virtual cluster has; simulated pods run there.
pub(crate) const NODE: &str = "sim-node";

/// The node as a kubelet registers it.
fn new_node(now: &str) -> Value {
    let ready = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "lastHeartbeatTime": now, "lastTransitionTime": now,
               "reason": reason, "message": message})
    };
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE,
            "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": now,
            "labels": {
                "kubernetes.io/hostname": NODE,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/control-plane": "",
            },
        },
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
        "status": {
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "conditions": [
                ready("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                ready("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                ready("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                ready("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": NODE}],
            "nodeInfo": {
                "kubeletVersion": "v1.34.0", "kubeProxyVersion": "v1.34.0", "containerRuntimeVersion": "containerd://2.1.0",
                "operatingSystem": "linux", "architecture": "amd64", "osImage": "flotilla-sim",
                "kernelVersion": "6.1.0", "machineID": "", "systemUUID": "", "bootID": "",
            },
        },
    })
}

/// The built-in types, shared by all clusters.
pub(crate) fn shared_builtins() -> Arc<Vec<Arc<ResourceType>>> {
    Arc::new(builtins())
}

/// Whether a type is one the simulated controllers drive.
pub(crate) fn is_controlled(rt: &ResourceType) -> bool {
    matches!(
        rt.builtin,
        Some(
            Builtin::Deployment
                | Builtin::StatefulSet
                | Builtin::DaemonSet
                | Builtin::ReplicaSet
                | Builtin::Job
                | Builtin::Pod
                | Builtin::Service
                | Builtin::PersistentVolumeClaim
                | Builtin::Ingress
                | Builtin::HorizontalPodAutoscaler
        )
    )
}
