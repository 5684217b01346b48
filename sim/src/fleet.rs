//! The set of virtual clusters one simulator serves, and what they share.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::catalog::ResourceType;
use crate::cluster::{Cluster, Reconcile, shared_builtins};
use crate::controllers::Controllers;
use crate::{SimConfig, SimError};

/// All clusters, the controllers driving them and the shutdown signal.
pub(crate) struct Fleet {
    /// The configuration the simulator started with.
    pub(crate) config: SimConfig,
    clusters: RwLock<BTreeMap<String, Arc<Cluster>>>,
    builtins: Arc<Vec<Arc<ResourceType>>>,
    controllers: Controllers,
    /// Turns true when the simulator shuts down.
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Fleet {
    /// A fleet with no clusters yet.
    pub(crate) fn new(config: SimConfig, shutdown: watch::Receiver<bool>) -> Fleet {
        let controllers = Controllers::start(config.rollout_delay, shutdown.clone());
        Fleet {
            config,
            clusters: RwLock::new(BTreeMap::new()),
            builtins: shared_builtins(),
            controllers,
            shutdown,
        }
    }

    /// Adds a cluster; the name must be a DNS-1123 label and new.
    pub(crate) fn add(&self, name: &str) -> Result<Arc<Cluster>, SimError> {
        if !crate::validation::is_dns_label(name) {
            return Err(SimError::InvalidClusterName(name.to_string()));
        }
        let mut clusters = self.clusters.write();
        if clusters.contains_key(name) {
            return Err(SimError::ClusterExists(name.to_string()));
        }
        let cluster = Arc::new(Cluster::new(
            name,
            self.config.watch_history,
            self.builtins.clone(),
            &timestamp(),
        ));
        clusters.insert(name.to_string(), cluster.clone());
        Ok(cluster)
    }

    /// Removes a cluster: it stops answering, its state is dropped and its open watches
    /// are cut. False if there is no such cluster.
    pub(crate) fn remove(&self, name: &str) -> bool {
        let Some(cluster) = self.clusters.write().remove(name) else {
            return false;
        };
        cluster.remove();
        true
    }

    /// A cluster by name.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Cluster>> {
        self.clusters.read().get(name).cloned()
    }

    /// Cluster names, sorted by the number in their name where they have one.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.clusters.read().keys().cloned().collect();
        names.sort_by_key(|n| natural_key(n));
        names
    }

    /// URL of a cluster's API: `http://ADDR/clusters/NAME`.
    pub(crate) fn cluster_url(&self, name: &str) -> String {
        let mut addr = self.config.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}/clusters/{name}")
    }

    /// Hands controller work to the controller task.
    pub(crate) fn schedule(&self, cluster: &Arc<Cluster>, work: Vec<Reconcile>) {
        if !work.is_empty() {
            self.controllers.schedule(cluster, work);
        }
    }
}

/// Resolves once `shutdown` is true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}

/// `sim-10` sorts after `sim-9`.
fn natural_key(name: &str) -> (String, u64, String) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = name.split_at(name.len() - digits);
    (stem.to_string(), num.parse().unwrap_or(0), name.to_string())
}

/// Now, as the API server writes timestamps (RFC 3339, seconds, UTC).
pub(crate) fn timestamp() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
