//! One agent per cluster (simulated or real), in this process: an engine with its own Kubernetes
//! client for its cluster and its own link to the hub, as `flotilla-agent run` builds them — each
//! registered with a bootstrap token and streaming with its own client certificate.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flotilla_agent::hub::{AgentIdentity, HubLink, LinkConfig, ThreadRandom};
use flotilla_agent::{Engine, EngineConfig, SystemClock};
use flotilla_core::inventory::Cluster;
use flotilla_hub::server::Hub;
use flotilla_pki::CredentialStore;

/// How long the demo waits for the hub to register the inventory's clusters.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the demo's agents and its user need to reach the hub: its CA and one bootstrap token
/// per cluster.
pub(super) struct Credentials {
    /// The hub's CA certificate file.
    pub(super) ca_file: PathBuf,
    ca_pem: String,
    tokens: BTreeMap<String, String>,
}

impl Credentials {
    /// Waits for the hub to register every cluster (its leader reads the inventory), then
    /// issues each a bootstrap token, as `flotilla cluster token` does.
    pub(super) async fn issue(hub: &Hub, clusters: &[Cluster]) -> anyhow::Result<Credentials> {
        let node = hub.node();
        let ca_file = node.data_dir().join(flotilla_hub::node::CA_FILE);
        let ca_pem = std::fs::read_to_string(&ca_file)
            .with_context(|| format!("reading the hub's CA {}", ca_file.display()))?;
        let deadline = tokio::time::Instant::now() + REGISTRATION_TIMEOUT;
        while !clusters
            .iter()
            .all(|c| node.state().clusters.contains_key(&c.name))
        {
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "the hub did not register the inventory's clusters within {REGISTRATION_TIMEOUT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let clock = flotilla_hub::clock::system();
        let mut tokens = BTreeMap::new();
        for cluster in clusters {
            let issued = flotilla_hub::sync::register::issue_bootstrap_token(
                node,
                clock.as_ref(),
                &cluster.name,
                flotilla_hub::server::DEFAULT_BOOTSTRAP_TOKEN_TTL,
            )
            .await
            .with_context(|| format!("issuing a bootstrap token for {}", cluster.name))?;
            tokens.insert(cluster.name.clone(), issued.token.reveal().to_owned());
        }
        Ok(Credentials {
            ca_file,
            ca_pem,
            tokens,
        })
    }

    /// The hub's first admin token, once its leader has written it.
    pub(super) async fn admin_token(&self, hub: &Hub) -> anyhow::Result<String> {
        let file = hub
            .node()
            .data_dir()
            .join(flotilla_hub::controller::first_admin::ADMIN_TOKEN_FILE);
        let deadline = tokio::time::Instant::now() + REGISTRATION_TIMEOUT;
        loop {
            match std::fs::read_to_string(&file) {
                Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
                _ if tokio::time::Instant::now() > deadline => {
                    anyhow::bail!("the hub wrote no admin token to {}", file.display())
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// A running agent.
pub(super) struct Agent {
    link: HubLink,
    engine: Arc<Engine>,
}

/// Starts an agent for every cluster, each reaching its cluster through the context named after
/// it in `kubeconfig` and keeping its desired state under `state_root/<cluster>`, so a resumed
/// demo re-applies it at once.
pub(super) async fn start(
    kubeconfig: &Path,
    clusters: &[Cluster],
    hub: SocketAddr,
    state_root: &Path,
    credentials: &Credentials,
) -> anyhow::Result<Vec<Agent>> {
    let mut agents = Vec::with_capacity(clusters.len());
    for cluster in clusters {
        agents.push(start_one(kubeconfig, &cluster.name, hub, state_root, credentials).await?);
    }
    Ok(agents)
}

async fn start_one(
    kubeconfig: &Path,
    cluster: &str,
    hub: SocketAddr,
    state_root: &Path,
    credentials: &Credentials,
) -> anyhow::Result<Agent> {
    let state_dir = state_root.join(cluster);
    let options = kube::config::KubeConfigOptions {
        context: Some(cluster.to_owned()),
        ..Default::default()
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .with_context(|| format!("the kubeconfig's context {cluster}"))?;
    let client = kube::Client::try_from(config)
        .with_context(|| format!("a Kubernetes client for {cluster}"))?;
    let engine = Arc::new(
        Engine::start(
            client,
            EngineConfig {
                state_dir: Some(state_dir.clone()),
                ..EngineConfig::default()
            },
            Arc::new(SystemClock),
        )
        .with_context(|| format!("starting the agent of {cluster}"))?,
    );
    // A kept demo's agent reuses its stored certificate; a new one registers.
    let identity = AgentIdentity::establish(
        CredentialStore::in_dir(&state_dir),
        cluster,
        &[hub.to_string()],
        Some(&credentials.ca_pem),
        credentials.tokens.get(cluster).map(String::as_str),
        &engine.cluster_identity().await,
    )
    .await
    .with_context(|| format!("registering the agent of {cluster}"))?;
    let mut config = LinkConfig::new(vec![hub.to_string()], cluster);
    config.identity = Some(identity);
    let link = HubLink::start(
        engine.clone(),
        config,
        Arc::new(ThreadRandom),
        Arc::new(SystemClock),
    )
    .with_context(|| format!("connecting the agent of {cluster} to the hub"))?;
    Ok(Agent { link, engine })
}

/// Stops every agent at once: each closes its stream, then its engine finishes what it is
/// doing. The clusters are left as they are.
pub(super) async fn stop(agents: Vec<Agent>) {
    let stops = agents.into_iter().map(|agent| async move {
        agent.link.shutdown().await;
        if let Ok(engine) = Arc::try_unwrap(agent.engine) {
            engine.shutdown().await;
        }
    });
    futures::future::join_all(stops).await;
}
