//! The group's certificate authority and the agent certificates it issued: the CA's certificate
//! lives in the replicated state (its key stays in each node's data dir), and removed clusters'
//! certificates are revoked here by serial.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_pki::{CaPem, Serial};
use serde::{Deserialize, Serialize};

use super::{CommandError, State, Timestamp};

#[cfg(test)]
mod tests;

/// The CA and what it issued to agents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pki {
    /// The group's CA certificate, set in the bootstrap snapshot of a group founded with TLS and
    /// never replaced. Its `private_key` is empty: each node keeps the key in its data dir
    /// (`node::security`), only groups founded by older versions carry it here.
    pub ca: Option<CaPem>,
    /// Agent certificates issued and not yet expired, by serial.
    pub certificates: BTreeMap<Serial, AgentCertificate>,
    /// Serials revoked before their expiry (their cluster was removed).
    pub revoked: BTreeSet<Serial>,
}

/// An agent certificate the hub issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCertificate {
    /// The cluster it names.
    pub cluster: String,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it expires.
    pub not_after: Timestamp,
}

pub(super) fn record_certificate(
    state: &mut State,
    cluster: &str,
    serial: &Serial,
    not_after: Timestamp,
    at: Timestamp,
) -> Result<(), CommandError> {
    if !state.clusters.contains_key(cluster) {
        return Err(CommandError::UnknownCluster(cluster.to_owned()));
    }
    forget_expired(state, at);
    state.pki.certificates.insert(
        serial.clone(),
        AgentCertificate {
            cluster: cluster.to_owned(),
            issued_at: at,
            not_after,
        },
    );
    Ok(())
}

/// Revokes every unexpired certificate of a cluster that leaves the fleet.
pub(super) fn revoke_cluster(state: &mut State, cluster: &str, at: Timestamp) {
    forget_expired(state, at);
    let revoked: Vec<Serial> = state
        .pki
        .certificates
        .iter()
        .filter(|(_, issued)| issued.cluster == cluster)
        .map(|(serial, _)| serial.clone())
        .collect();
    for serial in revoked {
        state.pki.revoked.insert(serial);
    }
}

/// An expired certificate is refused by every TLS handshake, so neither its record nor its
/// revocation needs keeping: this bounds both sets by the certificates alive at once.
fn forget_expired(state: &mut State, at: Timestamp) {
    let expired: Vec<Serial> = state
        .pki
        .certificates
        .iter()
        .filter(|(_, issued)| issued.not_after <= at)
        .map(|(serial, _)| serial.clone())
        .collect();
    for serial in expired {
        state.pki.certificates.remove(&serial);
        state.pki.revoked.remove(&serial);
    }
}
