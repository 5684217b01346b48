//! The agent's identity towards the hub: the client certificate it registered for with a
//! one-time bootstrap token, kept in the state directory, presented on every stream, and renewed
//! (with a fresh key) at two thirds of its lifetime.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flotilla_pki::{AgentCredentials, AgentKey, CredentialStore, PeerIdentity, renew_at};
use flotilla_proto::v1::agent_sync_client::AgentSyncClient;
use flotilla_proto::v1::{AgentCertificate, RegisterRequest, RenewRequest};
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::cluster_identity::ClusterUid;

/// How long a registration or renewal call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the agent has no usable identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The credentials file is unreadable, exposed or malformed.
    #[error(transparent)]
    Credentials(#[from] flotilla_pki::CredentialError),
    /// The stored certificate is for another cluster.
    #[error(
        "{path} holds a certificate for {found}, not cluster `{cluster}`; point --state-dir at \
         this cluster's directory, or delete the file to register again"
    )]
    OtherCluster {
        /// The credentials file.
        path: String,
        /// What the certificate names.
        found: String,
        /// The cluster this agent serves.
        cluster: String,
    },
    /// No certificate yet and no token to register with.
    #[error(
        "the agent has no certificate yet: pass the bootstrap token `flotilla cluster add` \
         printed (--bootstrap-token or FLOTILLA_BOOTSTRAP_TOKEN) and the hub's CA (--ca-file)"
    )]
    NeedsRegistration,
    /// The stored certificate expired (the agent was stopped past its renewal window).
    #[error(
        "the agent's certificate expired; register again with a new bootstrap token (an admin \
         runs `flotilla cluster token {0}`)"
    )]
    Expired(String),
    /// The CA file could not be read.
    #[error("cannot read the hub's CA certificate {path}: {source}")]
    CaFile {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bootstrap token file could not be read.
    #[error("cannot read the bootstrap token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Every hub refused or could not be reached.
    #[error("cannot register with any hub: {0}")]
    Register(String),
    /// The hub's answer is unusable.
    #[error("the hub's certificate is unusable: {0}")]
    Answer(String),
}

/// The agent's current credentials, replaced on renewal; new streams present the newest.
#[derive(Debug)]
pub struct AgentIdentity {
    cluster: String,
    store: CredentialStore,
    credentials: RwLock<AgentCredentials>,
}

impl AgentIdentity {
    /// The identity stored in `store`, registering first with `bootstrap_token` (and trusting
    /// `ca_pem`) when none is stored. A registration tells the hub `kube_system` — which
    /// Kubernetes cluster the agent talks to: a hub that bound the name to another refuses it.
    pub async fn establish(
        store: CredentialStore,
        cluster: &str,
        hubs: &[String],
        ca_pem: Option<&str>,
        bootstrap_token: Option<&str>,
        kube_system: &ClusterUid,
    ) -> Result<Arc<AgentIdentity>, IdentityError> {
        if let Some(credentials) = store.load()? {
            let certificate = credentials.certificate()?;
            if certificate.identity != PeerIdentity::Cluster(cluster.to_owned()) {
                return Err(IdentityError::OtherCluster {
                    path: store.path().display().to_string(),
                    found: certificate.identity.to_string(),
                    cluster: cluster.to_owned(),
                });
            }
            if certificate.not_after > SystemTime::now() {
                tracing::info!(serial = %certificate.serial, "using the stored agent certificate");
                return Ok(Arc::new(AgentIdentity {
                    cluster: cluster.to_owned(),
                    store,
                    credentials: RwLock::new(credentials),
                }));
            }
            if bootstrap_token.is_none() {
                return Err(IdentityError::Expired(cluster.to_owned()));
            }
        }
        let (Some(token), Some(ca_pem)) = (bootstrap_token, ca_pem) else {
            return Err(IdentityError::NeedsRegistration);
        };
        let key = AgentKey::generate()?;
        let request = RegisterRequest {
            bootstrap_token: token.trim().to_owned(),
            csr_pem: key.csr_pem(cluster)?,
            identity: Some(kube_system.to_proto()),
        };
        let mut failures = Vec::new();
        for hub in hubs {
            let call = async {
                let mut client = AgentSyncClient::new(
                    endpoint(hub, ca_pem, None)?
                        .connect()
                        .await
                        .map_err(|e| e.to_string())?,
                );
                client
                    .register(request.clone())
                    .await
                    .map(|answer| answer.into_inner())
                    .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
            };
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(answer)) => {
                    let credentials = credentials(&key, ca_pem, answer)?;
                    store.save(&credentials)?;
                    tracing::info!(cluster, hub = %hub, file = %store.path().display(),
                        "registered: certificate stored");
                    return Ok(Arc::new(AgentIdentity {
                        cluster: cluster.to_owned(),
                        store,
                        credentials: RwLock::new(credentials),
                    }));
                }
                // A refused token is refused by every node of the group: stop at once.
                Ok(Err(why))
                    if why.starts_with("PermissionDenied")
                        || why.starts_with("Unauthenticated") =>
                {
                    return Err(IdentityError::Register(format!("{hub}: {why}")));
                }
                Ok(Err(why)) => failures.push(format!("{hub}: {why}")),
                Err(_) => failures.push(format!("{hub}: no answer within {CALL_TIMEOUT:?}")),
            }
        }
        Err(IdentityError::Register(failures.join("; ")))
    }

    /// The cluster the certificate names.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// An endpoint for `hub` presenting the current certificate.
    pub fn endpoint(&self, hub: &str) -> Result<Endpoint, String> {
        let credentials = self.credentials.read();
        endpoint(hub, &credentials.ca_pem, Some(&credentials))
    }

    /// When the current certificate should be renewed, and when it expires.
    pub fn renewal(&self) -> Result<(SystemTime, SystemTime), IdentityError> {
        let certificate = self.credentials.read().certificate()?;
        // From the moment of issue, not the backdated start: a short lifetime would otherwise
        // be due for renewal as soon as it is issued.
        Ok((
            renew_at(certificate.issued_at(), certificate.not_after),
            certificate.not_after,
        ))
    }

    /// Renews the certificate through one of `hubs` (a fresh key, authenticated by the current
    /// certificate), stores it and presents it from the next stream on.
    pub async fn renew(&self, hubs: &[String]) -> Result<(), IdentityError> {
        let key = AgentKey::generate()?;
        let request = RenewRequest {
            csr_pem: key.csr_pem(&self.cluster)?,
        };
        let mut failures = Vec::new();
        for hub in hubs {
            let call = async {
                let channel = self
                    .endpoint(hub)?
                    .connect()
                    .await
                    .map_err(|e| e.to_string())?;
                AgentSyncClient::new(channel)
                    .renew(request.clone())
                    .await
                    .map(|answer| answer.into_inner())
                    .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
            };
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(answer)) => {
                    let ca_pem = self.credentials.read().ca_pem.clone();
                    let renewed = credentials(&key, &ca_pem, answer)?;
                    self.store.save(&renewed)?;
                    let serial = renewed.certificate()?.serial;
                    *self.credentials.write() = renewed;
                    tracing::info!(cluster = %self.cluster, %serial, "agent certificate renewed");
                    return Ok(());
                }
                Ok(Err(why)) => failures.push(format!("{hub}: {why}")),
                Err(_) => failures.push(format!("{hub}: no answer within {CALL_TIMEOUT:?}")),
            }
        }
        Err(IdentityError::Register(failures.join("; ")))
    }
}

/// Renews the certificate at two thirds of its lifetime until `stop`; a failed renewal is
/// retried every tenth of what is left (at least every second, at most every minute), so a
/// hub outage shorter than a third of the lifetime costs nothing.
pub async fn renew_loop(identity: Arc<AgentIdentity>, hubs: Vec<String>, stop: CancellationToken) {
    loop {
        let wait = match identity.renewal() {
            Ok((at, _)) => at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the agent's certificate; renewal stopped");
                return;
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        if let Err(e) = identity.renew(&hubs).await {
            let left = identity
                .renewal()
                .ok()
                .and_then(|(_, expires)| expires.duration_since(SystemTime::now()).ok())
                .unwrap_or(Duration::ZERO);
            let retry = (left / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
            tracing::warn!(error = %e, ?retry, "certificate renewal failed; retrying");
            tokio::select! {
                _ = stop.cancelled() => return,
                () = tokio::time::sleep(retry) => {}
            }
        }
    }
}

fn credentials(
    key: &AgentKey,
    ca_pem: &str,
    answer: AgentCertificate,
) -> Result<AgentCredentials, IdentityError> {
    let credentials = AgentCredentials {
        private_key_pem: key.private_key_pem(),
        certificate_pem: answer.certificate_pem,
        // The CA the agent was told to trust, not whatever the answer claims.
        ca_pem: ca_pem.to_owned(),
    };
    credentials
        .certificate()
        .map_err(|e| IdentityError::Answer(e.to_string()))?;
    Ok(credentials)
}

/// A TLS endpoint for `hub` (`HOST:PORT`, or a URL whose scheme is ignored) trusting `ca_pem`
/// alone, presenting `credentials` when given.
fn endpoint(
    hub: &str,
    ca_pem: &str,
    credentials: Option<&AgentCredentials>,
) -> Result<Endpoint, String> {
    let address = hub
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let host = match address.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => address,
    };
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(host);
    if let Some(credentials) = credentials {
        tls = tls.identity(Identity::from_pem(
            &credentials.certificate_pem,
            &credentials.private_key_pem,
        ));
    }
    Endpoint::from_shared(format!("https://{address}"))
        .and_then(|endpoint| endpoint.tls_config(tls))
        .map(|endpoint| endpoint.connect_timeout(Duration::from_secs(2)))
        .map_err(|e| format!("hub address `{hub}`: {e}"))
}

/// Reads the CA file an operator passes with `--ca-file`.
pub fn read_ca_file(path: &std::path::Path) -> Result<String, IdentityError> {
    std::fs::read_to_string(path).map_err(|source| IdentityError::CaFile {
        path: path.display().to_string(),
        source,
    })
}

/// Reads the bootstrap token an operator keeps in a file (`--bootstrap-token-file`), without
/// the surrounding whitespace a Secret or an editor adds.
pub fn read_token_file(path: &std::path::Path) -> Result<String, IdentityError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|source| IdentityError::TokenFile {
            path: path.display().to_string(),
            source,
        })
}
