//! Thin agents for the swarm benchmark: the agent's own hub link — registration with a
//! bootstrap token, a client certificate, hellos with the hashes held, chunked bundles checked
//! against their hash, acks, report batching — driving a [`MemoryEngine`] that keeps each
//! bundle in memory and reports it Applied and Healthy at once. What it cannot show: anything
//! about applying to a cluster (the full chain, `bench e2e`, runs real engines on the
//! simulator).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use flotilla_agent::SystemClock;
use flotilla_agent::hub::{AgentIdentity, HubLink, LinkConfig, ThreadRandom};
use flotilla_pki::CredentialStore;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use flotilla_agent::api_probe::ApiReachability;
use flotilla_agent::engine::{BundleStatus, EngineError, Phase};
use flotilla_agent::health::{BundleHealth, Health};
use flotilla_agent::hub::LinkEngine;
use flotilla_agent::{BundleRevision, ClusterUid, Event, HeldBundle, Report};
use flotilla_core::inventory::Capabilities;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

/// Called with each bundle revision a thin agent receives whole.
pub type OnBundle = Arc<dyn Fn(&BundleRevision) + Send + Sync>;

/// Called with each bundle revision any agent of a swarm receives whole, and its cluster.
pub type OnClusterBundle = Arc<dyn Fn(&str, &BundleRevision) + Send + Sync>;

/// Bundles in memory, each Applied and Healthy the moment it arrives.
pub struct MemoryEngine {
    uid: String,
    bundles: Mutex<BTreeMap<String, BundleRevision>>,
    reports: broadcast::Sender<Report>,
    api: watch::Sender<ApiReachability>,
    capabilities: watch::Sender<Option<Capabilities>>,
    on_bundle: OnBundle,
}

impl MemoryEngine {
    /// An engine for a cluster whose `kube-system` uid is `uid`.
    pub fn new(uid: impl Into<String>, on_bundle: OnBundle) -> MemoryEngine {
        let now = now_ms();
        MemoryEngine {
            uid: uid.into(),
            bundles: Mutex::default(),
            reports: broadcast::channel(64).0,
            api: watch::Sender::new(ApiReachability {
                reachable: true,
                since_ms: now,
                error: String::new(),
            }),
            capabilities: watch::Sender::new(Some(Capabilities {
                kube_version: "v1.35.0".into(),
                api_versions: vec!["v1".into(), "apps/v1".into()],
            })),
            on_bundle,
        }
    }

    fn report(&self, revision: &BundleRevision, event: Event) {
        let _ = self.reports.send(Report {
            bundle: revision.name.clone(),
            revision: revision.revision.clone(),
            content_hash: revision.content_hash.clone(),
            at_ms: now_ms(),
            event,
        });
    }
}

#[tonic::async_trait]
impl LinkEngine for MemoryEngine {
    async fn cluster_identity(&self) -> ClusterUid {
        ClusterUid::Known(self.uid.clone())
    }

    fn api_reachability(&self) -> watch::Receiver<ApiReachability> {
        self.api.subscribe()
    }

    fn capabilities(&self) -> watch::Receiver<Option<Capabilities>> {
        self.capabilities.subscribe()
    }

    fn subscribe(&self) -> broadcast::Receiver<Report> {
        self.reports.subscribe()
    }

    fn apply(&self, revision: BundleRevision) -> Result<(), EngineError> {
        (self.on_bundle)(&revision);
        let objects = revision.objects.len();
        self.report(&revision, Event::Applying { objects });
        self.report(
            &revision,
            Event::Applied {
                applied: objects,
                pruned: 0,
            },
        );
        self.report(
            &revision,
            Event::HealthChanged(BundleHealth {
                health: Health::Healthy,
                unhealthy: Vec::new(),
            }),
        );
        self.bundles.lock().insert(revision.name.clone(), revision);
        Ok(())
    }

    async fn remove(&self, bundle: &str) -> Result<(), EngineError> {
        if let Some(revision) = self.bundles.lock().remove(bundle) {
            self.report(&revision, Event::Removed { pruned: 0 });
        }
        Ok(())
    }

    fn held(&self) -> Vec<HeldBundle> {
        self.bundles
            .lock()
            .values()
            .map(|b| HeldBundle {
                name: b.name.clone(),
                content_hash: b.content_hash.clone(),
            })
            .collect()
    }

    fn status(&self) -> Vec<BundleStatus> {
        self.bundles
            .lock()
            .values()
            .map(|b| BundleStatus {
                name: b.name.clone(),
                revision: b.revision.clone(),
                content_hash: b.content_hash.clone(),
                applied_revision: Some(b.revision.clone()),
                applied_hash: Some(b.content_hash.clone()),
                phase: Phase::Applied,
                errors: Vec::new(),
                health: Some(BundleHealth {
                    health: Health::Healthy,
                    unhealthy: Vec::new(),
                }),
                added: Vec::new(),
            })
            .collect()
    }
}

/// The thin agents one process runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentsPlan {
    /// Every hub node's API address.
    pub hubs: Vec<String>,
    /// The group CA's certificate, PEM.
    pub ca_pem: String,
    /// Where each agent keeps its key and certificate (a directory per cluster).
    pub state_root: PathBuf,
    /// Each agent's cluster and one-time bootstrap token.
    pub agents: Vec<(String, String)>,
}

/// Registers every agent of `plan` (`concurrency` at a time), then starts its link; `on_bundle`
/// hears of every bundle each one receives, with its cluster.
pub async fn start_agents(
    plan: &AgentsPlan,
    concurrency: usize,
    on_bundle: OnClusterBundle,
) -> anyhow::Result<Vec<HubLink>> {
    let registered: Vec<(String, Arc<AgentIdentity>)> =
        futures::stream::iter(plan.agents.iter().cloned())
            .map(|(cluster, token)| async move {
                let identity = AgentIdentity::establish(
                    CredentialStore::in_dir(&plan.state_root.join(&cluster)),
                    &cluster,
                    &plan.hubs,
                    Some(&plan.ca_pem),
                    Some(&token),
                    &ClusterUid::Known(uid(&cluster)),
                )
                .await
                .with_context(|| format!("registering the agent of {cluster}"))?;
                anyhow::Ok((cluster, identity))
            })
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
    let mut links = Vec::with_capacity(registered.len());
    for (cluster, identity) in registered {
        let mut config = LinkConfig::new(plan.hubs.clone(), cluster.clone());
        config.identity = Some(identity);
        // Thousands of agents in one process: a hello may wait for a busy node.
        config.welcome_timeout = Duration::from_secs(60);
        let heard = on_bundle.clone();
        let named = cluster.clone();
        let engine = MemoryEngine::new(
            uid(&cluster),
            Arc::new(move |revision: &BundleRevision| heard(&named, revision)),
        );
        links.push(HubLink::start(
            Arc::new(engine),
            config,
            Arc::new(ThreadRandom),
            Arc::new(SystemClock),
        )?);
    }
    Ok(links)
}

/// How many of `links` stream with a node now.
pub fn connected(links: &[HubLink]) -> usize {
    links
        .iter()
        .filter(|l| l.watch_connection().borrow().is_some())
        .count()
}

/// A stable `kube-system` uid for a thin agent's cluster, shaped like Kubernetes' (a UUID).
fn uid(cluster: &str) -> String {
    let hex = flotilla_core::hash::ContentHash::of(cluster.as_bytes()).to_string();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Milliseconds since the Unix epoch: comparable across the benchmark's processes.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
