//! Hubs with TLS in this process, and the agent's side of registration and sync over real
//! sockets: bootstrap tokens issued as the Admin API issues them, certificate requests, and raw
//! `AgentSync` streams presenting a chosen certificate.
#![allow(unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use flotilla_hub::clock::Clock;
use flotilla_hub::config::{NodeConfig, SecurityConfig, TlsSettings};
use flotilla_hub::server::{Hub, HubConfig};
use flotilla_hub::state::{Command, State};
use flotilla_pki::{AgentKey, GroupCa};
use flotilla_proto::v1::agent_sync_client::AgentSyncClient;
use flotilla_proto::v1::{
    AgentCertificate, AgentMessage, ClusterIdentity, Hello, HubMessage, RegisterRequest,
    agent_message, hub_message,
};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// How long a test waits for anything.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A single-node hub with TLS on every listener and its own CA.
pub struct SecureHub {
    pub hub: Hub,
    pub data: TempDir,
    pub clock: Arc<dyn Clock>,
}

impl SecureHub {
    /// Starts one with `configure` applied (lifetimes, clock, CA).
    pub async fn start(configure: impl FnOnce(&mut HubConfig)) -> Result<Self> {
        flotilla_pki::install_crypto_provider();
        let data = tempfile::tempdir()?;
        let mut node = NodeConfig::new(1, data.path(), "127.0.0.1:0");
        node.security = SecurityConfig::Tls(TlsSettings::new());
        let mut config = HubConfig::new(node);
        config.api_listen = "127.0.0.1:0".into();
        config.http_listen = "127.0.0.1:0".into();
        configure(&mut config);
        let clock = config.clock.clone();
        let hub = Hub::start(config).await?;
        Ok(SecureHub { hub, data, clock })
    }

    /// The CA certificate the hub wrote for clients.
    pub fn ca_pem(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.data.path().join("ca.crt"))?)
    }

    /// The API listener's address.
    pub fn api(&self) -> String {
        self.hub.api_address().to_string()
    }

    /// The replicated state, read under its lock by `read`.
    pub fn state<T>(&self, read: impl FnOnce(&State) -> T) -> T {
        read(&self.hub.node().state())
    }

    /// Registers `cluster` and returns a bootstrap token for it, valid for `ttl`.
    pub async fn add_cluster(&self, cluster: &str, ttl: Duration) -> Result<String> {
        self.hub
            .node()
            .propose(&Command::RegisterCluster {
                name: cluster.into(),
                labels: Default::default(),
                at: self.clock.now(),
            })
            .await?;
        self.token(cluster, ttl).await
    }

    /// Another bootstrap token for a registered cluster.
    pub async fn token(&self, cluster: &str, ttl: Duration) -> Result<String> {
        let issued = flotilla_hub::sync::register::issue_bootstrap_token(
            self.hub.node(),
            self.clock.as_ref(),
            cluster,
            ttl,
        )
        .await?;
        Ok(issued.token.reveal().to_owned())
    }

    /// A channel to the API listener trusting the hub's CA, presenting `identity` if given.
    pub async fn channel(&self, identity: Option<&AgentIdentityPem>) -> Result<Channel> {
        channel(&self.api(), &self.ca_pem()?, identity).await
    }

    /// Registers with `token` for `cluster`: the agent's key and the certificate it got.
    pub async fn register(
        &self,
        token: &str,
        cluster: &str,
    ) -> Result<AgentIdentityPem, tonic::Status> {
        self.register_from(token, cluster, None).await
    }

    /// Registers with `token` for `cluster`, saying the agent talks to the Kubernetes cluster
    /// `identity` (none: an agent that predates cluster identities).
    pub async fn register_from(
        &self,
        token: &str,
        cluster: &str,
        identity: Option<ClusterIdentity>,
    ) -> Result<AgentIdentityPem, tonic::Status> {
        let key = AgentKey::generate().map_err(|e| tonic::Status::internal(e.to_string()))?;
        let csr_pem = key
            .csr_pem(cluster)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        let channel = self
            .channel(None)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let answer: AgentCertificate = AgentSyncClient::new(channel)
            .register(RegisterRequest {
                bootstrap_token: token.into(),
                csr_pem,
                identity,
            })
            .await?
            .into_inner();
        Ok(AgentIdentityPem {
            certificate_pem: answer.certificate_pem,
            private_key_pem: key.private_key_pem(),
        })
    }
}

/// An agent's certificate and key, PEM.
#[derive(Clone)]
pub struct AgentIdentityPem {
    pub certificate_pem: String,
    pub private_key_pem: String,
}

impl AgentIdentityPem {
    /// A certificate for `cluster` from a CA that is not the hub's.
    pub fn forged(cluster: &str) -> Result<Self> {
        let ca = GroupCa::generate("flotilla", SystemTime::now())?;
        let key = AgentKey::generate()?;
        let issued = ca.sign_agent_csr(
            &key.csr_pem(cluster)?,
            cluster,
            Duration::from_secs(3600),
            SystemTime::now(),
        )?;
        Ok(AgentIdentityPem {
            certificate_pem: issued.certificate_pem,
            private_key_pem: key.private_key_pem(),
        })
    }

    /// The certificate's serial.
    pub fn serial(&self) -> Result<flotilla_pki::Serial> {
        let der = rustls_pem_first(&self.certificate_pem)?;
        Ok(flotilla_pki::PeerCertificate::from_der(&der)?.serial)
    }
}

fn rustls_pem_first(pem: &str) -> Result<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    Ok(CertificateDer::from_pem_slice(pem.as_bytes())?.to_vec())
}

/// A TLS channel to `address` trusting `ca_pem`, presenting `identity` if given.
pub async fn channel(
    address: &str,
    ca_pem: &str,
    identity: Option<&AgentIdentityPem>,
) -> Result<Channel> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("127.0.0.1");
    if let Some(identity) = identity {
        tls = tls.identity(Identity::from_pem(
            &identity.certificate_pem,
            &identity.private_key_pem,
        ));
    }
    Ok(Endpoint::from_shared(format!("https://{address}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?)
}

/// An open `Sync` stream: what the agent sends and what the hub answered.
pub struct SyncStream {
    pub out: mpsc::Sender<AgentMessage>,
    pub inbound: Streaming<HubMessage>,
}

impl SyncStream {
    /// Opens a stream saying hello as `cluster`; the hub's refusal is the error.
    pub async fn open(channel: Channel, cluster: &str) -> Result<SyncStream, tonic::Status> {
        Self::open_with(channel, hello(cluster)).await
    }

    /// Opens a stream with `hello`; the hub's refusal is the error.
    pub async fn open_with(channel: Channel, hello: Hello) -> Result<SyncStream, tonic::Status> {
        let (out, rx) = mpsc::channel(8);
        out.send(AgentMessage {
            kind: Some(agent_message::Kind::Hello(hello)),
        })
        .await
        .map_err(|_| tonic::Status::internal("queue closed"))?;
        let mut inbound = AgentSyncClient::new(channel)
            .sync(ReceiverStream::new(rx))
            .await?
            .into_inner();
        match inbound.message().await? {
            Some(HubMessage {
                kind: Some(hub_message::Kind::Welcome(_)),
            }) => Ok(SyncStream { out, inbound }),
            other => Err(tonic::Status::internal(format!(
                "expected a welcome, got {other:?}"
            ))),
        }
    }

    /// Reads until the hub ends the stream, answering nothing but heartbeats; the status it
    /// ended with (`None` for a clean end).
    pub async fn until_end(&mut self, within: Duration) -> Result<Option<tonic::Status>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let heartbeat = AgentMessage {
                kind: Some(agent_message::Kind::Heartbeat(
                    flotilla_proto::v1::Heartbeat { sent_at_ms: 0 },
                )),
            };
            let _ = self.out.send(heartbeat).await;
            match tokio::time::timeout_at(deadline, self.inbound.message()).await {
                Err(_) => bail!("the stream was still open after {within:?}"),
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => return Ok(None),
                Ok(Err(status)) => return Ok(Some(status)),
            }
        }
    }
}

/// A hello as `cluster` from an agent that predates cluster identities and instances.
pub fn hello(cluster: &str) -> Hello {
    Hello {
        cluster: cluster.into(),
        agent_version: "test".into(),
        heartbeat_interval_ms: 200,
        ..Hello::default()
    }
}

/// A hello as `cluster` from agent `instance` talking to the Kubernetes cluster whose
/// kube-system namespace has `uid`.
pub fn hello_from(cluster: &str, instance: &str, uid: &str) -> Hello {
    Hello {
        identity: Some(kube_system(uid)),
        instance: instance.into(),
        ..hello(cluster)
    }
}

/// The identity of the Kubernetes cluster whose kube-system namespace has `uid`.
pub fn kube_system(uid: &str) -> ClusterIdentity {
    ClusterIdentity {
        kube_system_uid: uid.into(),
        unreadable: String::new(),
    }
}

/// Waits until `check` holds on the hub's state.
pub async fn wait_state(hub: &SecureHub, what: &str, check: impl Fn(&State) -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !hub.state(&check) {
        if tokio::time::Instant::now() > deadline {
            bail!("waited {PATIENCE:?} for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The audit events denied for `target`, as `action: reason`.
pub fn denials(state: &State, target: &str) -> Vec<String> {
    state
        .audit
        .since(0)
        .map(|(_, e)| e)
        .filter(|e| e.target == target && e.outcome.name() == "denied")
        .map(|e| format!("{}: {}", e.action, e.outcome.reason()))
        .collect()
}
