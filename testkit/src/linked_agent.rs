//! Agents in this process, built as `flotilla-agent run` builds them: an engine with its own
//! Kubernetes client for its simulated cluster and its own link to the hub — registered with a
//! bootstrap token and streaming with its own client certificate, or plain with an insecure hub.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use flotilla_agent::hub::{AgentIdentity, HubLink, LinkConfig, ThreadRandom};
use flotilla_agent::{Engine, EngineConfig, SystemClock};
use flotilla_pki::CredentialStore;
use flotilla_sim::Sim;

/// How an agent reaches its hub.
#[derive(Debug, Clone, Copy)]
pub enum AgentAccess<'a> {
    /// Plain HTTP/2, the cluster named by the hello alone (an `--insecure` hub).
    Insecure,
    /// TLS trusting the group CA, registered with a bootstrap token; the certificate is stored
    /// under `state_dir`, as the agent's `--state-dir`.
    Tls {
        /// The group CA's certificate, PEM.
        ca_pem: &'a str,
        /// The one-time bootstrap token for this cluster.
        token: &'a str,
        /// Where the agent keeps its key and certificate.
        state_dir: &'a Path,
    },
}

/// A running agent.
pub struct LinkedAgent {
    /// The cluster it serves.
    pub cluster: String,
    /// Its apply engine.
    pub engine: Arc<Engine>,
    /// Its link to the hub.
    pub link: HubLink,
}

impl LinkedAgent {
    /// Starts the agent of `cluster`, a virtual cluster of `sim`, streaming from `hubs`; with
    /// TLS it registers first.
    pub async fn start(
        sim: &Sim,
        cluster: &str,
        hubs: Vec<String>,
        access: AgentAccess<'_>,
    ) -> anyhow::Result<LinkedAgent> {
        Self::start_at(&sim.cluster_url(cluster), cluster, hubs, access).await
    }

    /// Starts the agent of `cluster`, whose Kubernetes API is at `url` (a simulator's cluster,
    /// perhaps in another process), streaming from `hubs`; with TLS it registers first.
    pub async fn start_at(
        url: &str,
        cluster: &str,
        hubs: Vec<String>,
        access: AgentAccess<'_>,
    ) -> anyhow::Result<LinkedAgent> {
        let client = kube::Client::try_from(kube::Config::new(
            url.parse()
                .with_context(|| format!("the simulated cluster's URL {url}"))?,
        ))?;
        let engine = Arc::new(Engine::start(
            client,
            EngineConfig::default(),
            Arc::new(SystemClock),
        )?);
        let identity = match access {
            AgentAccess::Insecure => None,
            AgentAccess::Tls {
                ca_pem,
                token,
                state_dir,
            } => Some(
                AgentIdentity::establish(
                    CredentialStore::in_dir(state_dir),
                    cluster,
                    &hubs,
                    Some(ca_pem),
                    Some(token),
                    &engine.cluster_identity().await,
                )
                .await
                .with_context(|| format!("registering the agent of {cluster}"))?,
            ),
        };
        let mut config = LinkConfig::new(hubs, cluster);
        config.identity = identity;
        let link = HubLink::start(
            engine.clone(),
            config,
            Arc::new(ThreadRandom),
            Arc::new(SystemClock),
        )?;
        Ok(LinkedAgent {
            cluster: cluster.to_owned(),
            engine,
            link,
        })
    }

    /// Closes its stream, then lets its engine finish what it is doing.
    pub async fn shutdown(self) {
        self.link.shutdown().await;
        if let Ok(engine) = Arc::try_unwrap(self.engine) {
            engine.shutdown().await;
        }
    }
}

/// Stops every agent at once.
pub async fn shutdown_all(agents: Vec<LinkedAgent>) {
    futures::future::join_all(agents.into_iter().map(LinkedAgent::shutdown)).await;
}
