//! A Kubernetes API simulator: many virtual clusters behind one process, speaking the
//! real REST API well enough for kubectl and kube-rs, light enough to host a thousand.
//!
//! ```no_run
//! # async fn demo() -> Result<(), flotilla_sim::SimError> {
//! let sim = flotilla_sim::Sim::start(flotilla_sim::SimConfig { clusters: 2, ..Default::default() }).await?;
//! let url = sim.cluster_url("sim-0"); // http://127.0.0.1:PORT/clusters/sim-0
//! sim.set_fault("sim-1", flotilla_sim::Fault::Unreachable);
//! sim.shutdown().await;
//! # let _ = url; Ok(()) }
//! ```

mod api;
mod apply;
mod catalog;
mod cluster;
mod controllers;
mod defaults;
mod discovery;
mod fieldset;
mod fleet;
mod kubeconfig;
mod objects;
mod openapi;
mod patch;
mod pointer;
mod protobuf;
mod render;
mod requests;
mod route;
mod schema;
mod selector;
mod server;
mod status;
mod table;
mod validation;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

use crate::fleet::Fleet;

pub use crate::requests::RequestCounts;

/// Annotation: `"true"` makes a Deployment/StatefulSet/DaemonSet stall with
/// ProgressDeadlineExceeded, a Job fail with BackoffLimitExceeded, a Pod go CrashLoopBackOff.
pub const FAIL_ANNOTATION: &str = controllers::FAIL_ANNOTATION;
/// Annotation: `"true"` keeps a workload, Job or Pod progressing forever.
pub const HOLD_ANNOTATION: &str = controllers::HOLD_ANNOTATION;
/// Annotation: milliseconds of rollout delay for this object instead of the configured one.
pub const ROLLOUT_DELAY_ANNOTATION: &str = controllers::DELAY_ANNOTATION;

/// How the simulator starts.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of virtual clusters at start, named `{cluster_prefix}-0` ... `-(N-1)`.
    pub clusters: usize,
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Prefix of the initial clusters' names.
    pub cluster_prefix: String,
    /// How long simulated controllers take to roll out, complete or become ready.
    pub rollout_delay: Duration,
    /// Events kept per cluster for watches; older resourceVersions get 410 Gone.
    pub watch_history: usize,
    /// Interval between watch bookmarks (when a client allows them).
    pub bookmark_interval: Duration,
    /// How long a request to an unreachable cluster hangs before its connection drops.
    pub unreachable_hold: Duration,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            clusters: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cluster_prefix: "sim".to_string(),
            rollout_delay: Duration::from_secs(1),
            watch_history: 256,
            bookmark_interval: Duration::from_secs(10),
            unreachable_hold: Duration::from_secs(2),
        }
    }
}

/// A fault injected into one virtual cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Like a dead host: requests hang, then the connection drops unanswered; open
    /// watches are cut.
    Unreachable,
    /// Every request waits this long before it is served.
    Latency(Duration),
    /// Every request answers 500 InternalError.
    ServerErrors,
    /// The resources of a CRD answer 404 for this long after the CRD is created or changed,
    /// as on a control plane of several API servers where the one answering has not seen the
    /// CRD yet (a single real API server holds such a request until it serves the type).
    LaggingCustomResources(Duration),
}

/// Errors of the simulator's library API.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; choose another --listen address or free the port")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A cluster name is not a DNS-1123 label.
    #[error(
        "invalid cluster name {0:?}: use lower-case letters, digits and '-', at most 63 characters, starting and ending alphanumeric"
    )]
    InvalidClusterName(String),
    /// A cluster of that name already exists.
    #[error("a cluster named {0:?} already exists")]
    ClusterExists(String),
    /// The kubeconfig could not be written.
    #[error("cannot write kubeconfig {path}: {source}")]
    WriteKubeconfig {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running simulator.
pub struct Sim {
    fleet: Arc<Fleet>,
    addr: SocketAddr,
    shutdown: signal::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl Sim {
    /// Binds the listener, creates the clusters and serves them; returns once serving.
    pub async fn start(config: SimConfig) -> Result<Sim, SimError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: config.listen,
            source,
        })?;
        let (shutdown, shutdown_rx) = signal::channel(false);
        let fleet = Arc::new(Fleet::new(
            SimConfig {
                listen: addr,
                ..config.clone()
            },
            shutdown_rx.clone(),
        ));
        for i in 0..config.clusters {
            fleet.add(&format!("{}-{i}", config.cluster_prefix))?;
        }
        let server = tokio::spawn(server::run(listener, fleet.clone(), shutdown_rx));
        Ok(Sim {
            fleet,
            addr,
            shutdown,
            server: Some(server),
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Names of all clusters, in order.
    pub fn cluster_names(&self) -> Vec<String> {
        self.fleet.names()
    }

    /// The API server URL of a cluster: `http://ADDR/clusters/NAME`.
    pub fn cluster_url(&self, name: &str) -> String {
        self.fleet.cluster_url(name)
    }

    /// A kubeconfig with a context per cluster, current context the first.
    pub fn kubeconfig_yaml(&self) -> String {
        let clusters: Vec<(String, String)> = self
            .cluster_names()
            .into_iter()
            .map(|n| {
                let url = self.cluster_url(&n);
                (n, url)
            })
            .collect();
        kubeconfig::render(&clusters)
    }

    /// Writes the kubeconfig atomically (temporary file, then rename).
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> Result<(), SimError> {
        kubeconfig::write_atomic(path.as_ref(), &self.kubeconfig_yaml())
    }

    /// Adds a virtual cluster at run time.
    pub fn add_cluster(&self, name: &str) -> Result<(), SimError> {
        self.fleet.add(name).map(|_| ())
    }

    /// Removes a virtual cluster, as a decommissioned one: its objects and history are
    /// dropped, open watches are cut, and requests to its URL answer 404 from then on. A
    /// cluster of the same name can be added again, empty. False if there is no such cluster.
    pub fn remove_cluster(&self, name: &str) -> bool {
        self.fleet.remove(name)
    }

    /// Requests a cluster has answered since it was created (all verbs; a watch counts once,
    /// when opened), if it exists. The count only grows: subtract two readings for a step.
    pub fn request_count(&self, name: &str) -> Option<u64> {
        self.request_counts(name).map(|c| c.total)
    }

    /// Requests a cluster has answered since it was created, by verb, if it exists.
    pub fn request_counts(&self, name: &str) -> Option<RequestCounts> {
        self.fleet.get(name).map(|c| c.requests().snapshot())
    }

    /// Injects a fault into a cluster; false if there is no such cluster.
    pub fn set_fault(&self, name: &str, fault: Fault) -> bool {
        self.fleet
            .get(name)
            .map(|c| c.set_fault(Some(fault)))
            .is_some()
    }

    /// Clears a cluster's fault; false if there is no such cluster.
    pub fn clear_fault(&self, name: &str) -> bool {
        self.fleet.get(name).map(|c| c.set_fault(None)).is_some()
    }

    /// Drops a cluster's watch history, as an etcd compaction does: open watches end with
    /// `410 Gone` and clients must list again. False if there is no such cluster.
    pub fn compact(&self, name: &str) -> bool {
        self.fleet
            .get(name)
            .map(|c| c.write(|s| s.compact()))
            .is_some()
    }

    /// Number of objects stored in a cluster, if it exists.
    pub fn object_count(&self, name: &str) -> Option<usize> {
        self.fleet.get(name).map(|c| c.read().object_count())
    }

    /// Stops serving: open watches end, connections drain for up to five seconds.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}
