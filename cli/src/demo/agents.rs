//! One agent per simulated cluster, in this process: an engine with its own Kubernetes client
//! for its cluster and its own link to the hub, as `flotilla-agent run` builds them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use flotilla_agent::hub::{HubLink, LinkConfig, ThreadRandom};
use flotilla_agent::{Engine, EngineConfig, SystemClock};
use flotilla_core::inventory::Cluster;
use flotilla_sim::Sim;

/// A running agent.
pub(super) struct Agent {
    link: HubLink,
    engine: Arc<Engine>,
}

/// Starts an agent for every cluster, each keeping its desired state under
/// `state_root/<cluster>` so a resumed demo re-applies it at once.
pub(super) fn start(
    sim: &Sim,
    clusters: &[Cluster],
    hub: SocketAddr,
    state_root: &Path,
) -> anyhow::Result<Vec<Agent>> {
    clusters
        .iter()
        .map(|cluster| start_one(sim, &cluster.name, hub, state_root))
        .collect()
}

fn start_one(
    sim: &Sim,
    cluster: &str,
    hub: SocketAddr,
    state_root: &Path,
) -> anyhow::Result<Agent> {
    let url = sim.cluster_url(cluster);
    let config = kube::Config::new(
        url.parse()
            .with_context(|| format!("the simulated cluster's URL {url}"))?,
    );
    let client = kube::Client::try_from(config)
        .with_context(|| format!("a Kubernetes client for {cluster}"))?;
    let engine = Arc::new(
        Engine::start(
            client,
            EngineConfig {
                state_dir: Some(state_root.join(cluster)),
                ..EngineConfig::default()
            },
            Arc::new(SystemClock),
        )
        .with_context(|| format!("starting the agent of {cluster}"))?,
    );
    let link = HubLink::start(
        Arc::clone(&engine),
        link_config(hub, cluster),
        Arc::new(ThreadRandom),
        Arc::new(SystemClock),
    )
    .with_context(|| format!("connecting the agent of {cluster} to the hub"))?;
    Ok(Agent { link, engine })
}

/// How an agent reaches the hub. The one place the agents' hub credentials (TLS, bootstrap
/// token) go when the hub requires them.
fn link_config(hub: SocketAddr, cluster: &str) -> LinkConfig {
    LinkConfig::new(vec![hub.to_string()], cluster)
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
