//! Whether a verified agent certificate still stands: the TLS handshake proves the CA signed
//! it and that it has not expired; only the hub's state knows whether its cluster is still in
//! the fleet.

use std::collections::BTreeSet;
use std::time::SystemTime;

use crate::identity::{PeerCertificate, PeerIdentity, Serial};

#[cfg(test)]
mod tests;

/// Why the hub refuses a certificate that passed TLS verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The certificate is a hub node's, where an agent was expected.
    #[error("{0} is not a cluster's agent")]
    NotAnAgent(PeerIdentity),
    /// The cluster is not (or no longer) registered.
    #[error("cluster `{0}` is not registered (removed clusters' certificates are revoked)")]
    ClusterRemoved(String),
    /// The certificate predates the cluster's current registration: it belonged to an earlier
    /// cluster of the same name that was removed.
    #[error("the certificate for cluster `{0}` was issued before the cluster was registered")]
    IssuedBeforeRegistration(String),
    /// The serial was revoked one by one.
    #[error("certificate {serial} of cluster `{cluster}` is revoked")]
    SerialRevoked {
        /// The cluster.
        cluster: String,
        /// The serial.
        serial: Serial,
    },
}

/// Checks an agent's verified certificate against the hub's state and returns the cluster it
/// may act for. `registered_at` is when the cluster it names was registered, `None` when it is
/// not registered; `revoked` holds serials revoked one by one. Call it on every new stream and
/// again whenever the fleet changes, closing the streams it now refuses.
pub fn check_agent_certificate<'a>(
    peer: &'a PeerCertificate,
    registered_at: Option<SystemTime>,
    revoked: &BTreeSet<Serial>,
) -> Result<&'a str, Refused> {
    let cluster = match &peer.identity {
        PeerIdentity::Cluster(name) => name.as_str(),
        other => return Err(Refused::NotAnAgent(other.clone())),
    };
    let registered_at = registered_at.ok_or_else(|| Refused::ClusterRemoved(cluster.to_owned()))?;
    // Certificates hold whole seconds, so compare at that resolution: an agent that registers
    // within the same second as the cluster was added is not refused.
    if whole_seconds(peer.issued_at()) < whole_seconds(registered_at) {
        return Err(Refused::IssuedBeforeRegistration(cluster.to_owned()));
    }
    if revoked.contains(&peer.serial) {
        return Err(Refused::SerialRevoked {
            cluster: cluster.to_owned(),
            serial: peer.serial.clone(),
        });
    }
    Ok(cluster)
}

fn whole_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0)
}
