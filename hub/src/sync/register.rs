//! How an agent gets and renews its client certificate, and how the hub tells which cluster a
//! verified certificate may act for.
//!
//! `Register` trades a one-time bootstrap token and a certificate signing request for a
//! certificate naming the token's cluster; `Renew` trades the current certificate (presented on
//! the call) and a request for a fresh key for a new one. Every certificate issued is recorded
//! (`RecordCertificate`) so removing its cluster revokes it by serial.

use std::time::{Duration, SystemTime};

use flotilla_pki::{PeerCertificate, check_agent_certificate};
use flotilla_proto::v1::{AgentCertificate, RegisterRequest, RenewRequest};
use tonic::{Request, Status};

use super::Shared;
use super::identity::{self, Call, Caller};
use crate::audit::AGENT_ACTOR_PREFIX;
use crate::auth::{BootstrapRefused, NewBootstrapToken, check_bootstrap};
use crate::clock::Clock;
use crate::node::{NodeHandle, ProposeError};
use crate::state::{Command, CommandError, State, Timestamp};
use flotilla_consensus::transport::net::{self, NodeTls};

/// A bootstrap token just issued: show `token.reveal()` once, it is stored only as a hash.
#[derive(Debug)]
pub struct IssuedBootstrapToken {
    /// The token and its hash.
    pub token: NewBootstrapToken,
    /// When it stops working.
    pub expires: Timestamp,
}

impl IssuedBootstrapToken {
    /// A new one-time token for `cluster`'s agent, valid for `ttl`, and the command recording
    /// its hash: proposed by [`issue_bootstrap_token`] on a node, or through the group API by
    /// an operator holding the group's CA.
    pub fn generate(clock: &dyn Clock, cluster: &str, ttl: Duration) -> (Self, Command) {
        let token = NewBootstrapToken::generate(&mut rand::rng());
        let at = clock.now();
        let expires = at.after(ttl);
        let command = Command::IssueBootstrapToken {
            cluster: cluster.to_owned(),
            token_hash: token.token_hash.clone(),
            expires,
            at,
        };
        (IssuedBootstrapToken { token, expires }, command)
    }
}

/// Issues a one-time bootstrap token for `cluster`'s agent, valid for `ttl`: only its hash is
/// replicated. Called by the Admin API when a cluster is added.
pub async fn issue_bootstrap_token(
    node: &NodeHandle,
    clock: &dyn Clock,
    cluster: &str,
    ttl: Duration,
) -> Result<IssuedBootstrapToken, ProposeError> {
    let (issued, command) = IssuedBootstrapToken::generate(clock, cluster, ttl);
    node.propose(&command).await?;
    Ok(issued)
}

/// The cluster a verified agent certificate may act for at this moment, or why not: its
/// cluster was removed (or removed and added again after it was issued), or its serial was
/// revoked. The TLS handshake has already checked the CA's signature and the expiry.
pub(super) fn certificate_cluster(
    state: &State,
    peer: &PeerCertificate,
    now: Timestamp,
) -> Result<String, Status> {
    // The handshake checked the expiry; a stream outliving its certificate is checked here.
    if to_timestamp(peer.not_after) <= now {
        return Err(Status::permission_denied(format!(
            "the certificate of {} expired; the agent renews it and reconnects",
            peer.identity
        )));
    }
    let registered_at = peer
        .identity
        .cluster()
        .and_then(|cluster| state.clusters.get(cluster))
        .map(|cluster| to_system_time(cluster.registered_at));
    check_agent_certificate(peer, registered_at, &state.pki.revoked)
        .map(str::to_owned)
        .map_err(|refused| Status::permission_denied(refused.to_string()))
}

/// The verified certificate of a call on a TLS listener; `None` on an insecure hub.
pub(super) fn caller<T>(
    shared: &Shared,
    request: &Request<T>,
) -> Result<Option<PeerCertificate>, Status> {
    if shared.node.security().tls().is_none() {
        return Ok(None);
    }
    match net::caller_certificate(request) {
        Some(peer) => peer.map(Some),
        None => Err(Status::unauthenticated(
            "this call needs the agent's client certificate; register the agent first with the \
             bootstrap token `flotilla cluster add` printed (flotilla-agent run --bootstrap-token)",
        )),
    }
}

pub(super) async fn register(
    shared: &Shared,
    request: Request<RegisterRequest>,
) -> Result<AgentCertificate, Status> {
    let tls = tls(shared)?;
    let RegisterRequest {
        bootstrap_token,
        csr_pem,
        identity: cluster_identity,
    } = request.into_inner();
    let now = shared.clock.now();
    // Names this registration request: an agent whose answer was lost sends the same CSR
    // again (to this node or another) and is answered again rather than told the token is
    // used.
    let request_hash = flotilla_core::ContentHash::of(csr_pem.as_bytes()).to_string();
    let check = || {
        let state = shared.node.state();
        check_bootstrap(&state.access, &bootstrap_token, &request_hash, now)
            .map(|(hash, token)| (hash, token.cluster.clone()))
    };
    let mut checked = check();
    if matches!(checked, Err(BootstrapRefused::Unknown)) {
        // A token issued a moment ago may not have reached this node yet: catch up with the
        // leader once before calling it unknown.
        if let Ok(index) = shared.node.read_index().await {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), shared.node.wait_applied(index)).await;
        }
        checked = check();
    }
    let (token_hash, cluster) = match checked {
        Ok(checked) => checked,
        Err(refused) => {
            super::refusal::refuse_bootstrap(shared, &refused);
            return Err(bootstrap_status(&refused));
        }
    };
    // Refused before the token is spent: an agent pointed at another cluster than the one
    // bound to the name gets nothing, and the rightful agent can still use the token.
    let actor = format!("{AGENT_ACTOR_PREFIX}cluster {cluster}");
    let caller = Caller {
        cluster: &cluster,
        actor: &actor,
    };
    identity::admit(shared, Call::Register, &caller, cluster_identity.as_ref()).await?;
    // Sign before using the token, so a malformed request does not burn it.
    let issued = tls
        .ca()
        .sign_agent_csr(
            &csr_pem,
            &cluster,
            shared.registration_lifetime(),
            to_system_time(now),
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    match shared
        .node
        .propose(&Command::ConsumeBootstrapToken {
            token_hash,
            request: request_hash,
            at: now,
        })
        .await
    {
        Ok(_) => {}
        Err(ProposeError::Rejected {
            error: CommandError::BootstrapTokenRefused(why),
            ..
        }) => {
            tracing::warn!(%cluster, %why, "agent registration refused");
            return Err(Status::permission_denied(format!(
                "the bootstrap token is {why}; ask an admin for a new one"
            )));
        }
        Err(e) => return Err(Status::unavailable(e.to_string())),
    }
    record(shared, &cluster, &issued, now).await?;
    tracing::info!(%cluster, serial = %issued.serial, "agent registered");
    Ok(answer(tls, &cluster, &issued))
}

pub(super) async fn renew(
    shared: &Shared,
    request: Request<RenewRequest>,
) -> Result<AgentCertificate, Status> {
    let tls = tls(shared)?;
    let Some(peer) = caller(shared, &request)? else {
        return Err(Status::failed_precondition("this hub runs --insecure"));
    };
    let now = shared.clock.now();
    let cluster = certificate_cluster(&shared.node.state(), &peer, now)?;
    let issued = tls
        .ca()
        .sign_agent_csr(
            &request.get_ref().csr_pem,
            &cluster,
            shared.registration_lifetime(),
            to_system_time(now),
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    record(shared, &cluster, &issued, now).await?;
    tracing::info!(%cluster, serial = %issued.serial, old = %peer.serial, "agent certificate renewed");
    Ok(answer(tls, &cluster, &issued))
}

fn tls(shared: &Shared) -> Result<&std::sync::Arc<NodeTls>, Status> {
    shared.node.security().tls().ok_or_else(|| {
        Status::failed_precondition("this hub runs --insecure: agents connect without registering")
    })
}

async fn record(
    shared: &Shared,
    cluster: &str,
    issued: &flotilla_pki::IssuedCertificate,
    at: Timestamp,
) -> Result<(), Status> {
    shared
        .node
        .propose(&Command::RecordCertificate {
            cluster: cluster.to_owned(),
            serial: issued.serial.clone(),
            not_after: to_timestamp(issued.not_after),
            at,
        })
        .await
        .map_err(|e| match e {
            ProposeError::Rejected { error, .. } => Status::permission_denied(error.to_string()),
            other => Status::unavailable(other.to_string()),
        })?;
    Ok(())
}

fn answer(
    tls: &NodeTls,
    cluster: &str,
    issued: &flotilla_pki::IssuedCertificate,
) -> AgentCertificate {
    AgentCertificate {
        cluster: cluster.to_owned(),
        certificate_pem: issued.certificate_pem.clone(),
        ca_pem: tls.ca_pem().to_owned(),
        not_after_ms: i64::try_from(to_timestamp(issued.not_after).0).unwrap_or(i64::MAX),
    }
}

fn bootstrap_status(refused: &BootstrapRefused) -> Status {
    match refused {
        BootstrapRefused::Malformed(_) | BootstrapRefused::Unknown => {
            Status::unauthenticated(format!(
                "bootstrap token refused: {refused}; use the token `flotilla cluster add` printed"
            ))
        }
        BootstrapRefused::Used | BootstrapRefused::Expired => Status::permission_denied(format!(
            "bootstrap token refused: {refused}; bootstrap tokens work once and expire: ask an \
             admin for a new one"
        )),
    }
}

fn to_system_time(at: Timestamp) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(at.0)
}

fn to_timestamp(time: SystemTime) -> Timestamp {
    let millis = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_millis())
        .unwrap_or(0);
    Timestamp(u64::try_from(millis).unwrap_or(u64::MAX))
}
