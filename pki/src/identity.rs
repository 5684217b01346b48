//! Who a certificate names: the identity URIs Flotilla writes into certificates and reads back
//! from a verified peer's certificate.

use std::fmt;
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

#[cfg(test)]
mod tests;

/// The SPIFFE trust domain of every Flotilla identity. One CA serves one hub group, so the
/// domain needs no group name: certificates of another group fail chain verification first.
pub const TRUST_DOMAIN: &str = "flotilla";

const CLUSTER_PREFIX: &str = "spiffe://flotilla/cluster/";
const HUB_PREFIX: &str = "spiffe://flotilla/hub/";

/// How far certificates are backdated, so a peer whose clock is slightly behind the issuer's
/// still accepts a certificate issued a moment ago.
pub const ISSUE_BACKDATE: Duration = Duration::from_secs(60);

/// The party a Flotilla certificate identifies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerIdentity {
    /// A hub node of the group, by raft id.
    HubNode(u64),
    /// A cluster's agent, by cluster name (a DNS-1123 label).
    Cluster(String),
}

/// Why a certificate does not carry a usable Flotilla identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The connection presented no certificate (TLS without client authentication).
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// The certificate is not valid DER X.509.
    #[error("the peer certificate does not parse: {0}")]
    Malformed(String),
    /// The certificate has no `spiffe://flotilla/...` URI.
    #[error("the peer certificate names no Flotilla identity (no spiffe://flotilla/ URI)")]
    Missing,
    /// The certificate has more than one Flotilla identity URI.
    #[error("the peer certificate names {0} Flotilla identities; exactly one is allowed")]
    Ambiguous(usize),
    /// A `spiffe://flotilla/` URI that is neither a hub node nor a cluster.
    #[error("`{0}` is not a Flotilla identity (expected {CLUSTER_PREFIX}NAME or {HUB_PREFIX}ID)")]
    Unrecognised(String),
    /// The cluster name in a URI or request is not a DNS-1123 label.
    #[error("cluster name {0}")]
    BadClusterName(String),
}

impl PeerIdentity {
    /// The identity's URI, as written into a certificate's subject alternative names.
    pub fn uri(&self) -> String {
        match self {
            PeerIdentity::HubNode(id) => format!("{HUB_PREFIX}{id}"),
            PeerIdentity::Cluster(name) => format!("{CLUSTER_PREFIX}{name}"),
        }
    }

    /// Reads an identity URI; `Ok(None)` for a URI outside Flotilla's trust domain.
    pub fn from_uri(uri: &str) -> Result<Option<Self>, IdentityError> {
        if let Some(name) = uri.strip_prefix(CLUSTER_PREFIX) {
            check_cluster_name(name)?;
            return Ok(Some(PeerIdentity::Cluster(name.to_owned())));
        }
        if let Some(id) = uri.strip_prefix(HUB_PREFIX) {
            // Digits only: `u64::from_str` would also take a leading `+`.
            if !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && let Ok(id) = id.parse()
            {
                return Ok(Some(PeerIdentity::HubNode(id)));
            }
            return Err(IdentityError::Unrecognised(uri.to_owned()));
        }
        if uri.starts_with("spiffe://flotilla/") {
            return Err(IdentityError::Unrecognised(uri.to_owned()));
        }
        Ok(None)
    }

    /// The cluster name, when this is an agent.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            PeerIdentity::Cluster(name) => Some(name),
            PeerIdentity::HubNode(_) => None,
        }
    }

    /// The raft id, when this is a hub node.
    pub fn hub_node(&self) -> Option<u64> {
        match self {
            PeerIdentity::HubNode(id) => Some(*id),
            PeerIdentity::Cluster(_) => None,
        }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentity::HubNode(id) => write!(f, "hub node {id}"),
            PeerIdentity::Cluster(name) => write!(f, "cluster {name}"),
        }
    }
}

/// Checks that a cluster name can be an identity (a DNS-1123 label, as the fleet requires).
pub(crate) fn check_cluster_name(name: &str) -> Result<(), IdentityError> {
    flotilla_core::labels::validate_dns1123_label(name).map_err(IdentityError::BadClusterName)
}

/// A certificate serial number: lowercase hex of its big-endian bytes, as `openssl x509
/// -serial` prints it (without colons).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Serial(String);

impl Serial {
    /// From the serial's big-endian bytes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let trimmed = match bytes.iter().position(|b| *b != 0) {
            Some(start) => &bytes[start..],
            None => &[0][..],
        };
        Serial(trimmed.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The hex form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a peer's (already verified) end-entity certificate says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// Who it is.
    pub identity: PeerIdentity,
    /// The certificate's serial, for revocation.
    pub serial: Serial,
    /// Start of validity (backdated by [`ISSUE_BACKDATE`] from the moment of issue).
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl PeerCertificate {
    /// Reads a DER certificate. This does not verify it: call it only on a certificate rustls
    /// verified against the group's CA (a connection's peer certificates), or on one's own.
    pub fn from_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|error| IdentityError::Malformed(error.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|error| IdentityError::Malformed(error.to_string()))?;
        let mut identities = Vec::new();
        for name in san.iter().flat_map(|san| san.value.general_names.iter()) {
            if let GeneralName::URI(uri) = name
                && let Some(identity) = PeerIdentity::from_uri(uri)?
            {
                identities.push(identity);
            }
        }
        let identity = match identities.len() {
            0 => return Err(IdentityError::Missing),
            1 => identities.remove(0),
            n => return Err(IdentityError::Ambiguous(n)),
        };
        let validity = cert.validity();
        Ok(PeerCertificate {
            identity,
            serial: Serial::from_bytes(cert.raw_serial()),
            not_before: system_time(validity.not_before.timestamp())?,
            not_after: system_time(validity.not_after.timestamp())?,
        })
    }

    /// When the certificate was issued (its `not_before` plus the backdate).
    pub fn issued_at(&self) -> SystemTime {
        self.not_before + ISSUE_BACKDATE
    }
}

/// The identity of a TLS peer from the certificates rustls verified: the end-entity certificate
/// comes first. Use `tokio_rustls` streams' `get_ref().1.peer_certificates()` or tonic's
/// `Request::peer_certs()`.
pub fn peer_certificate(
    chain: Option<&[CertificateDer<'_>]>,
) -> Result<PeerCertificate, IdentityError> {
    let leaf = chain
        .and_then(|chain| chain.first())
        .ok_or(IdentityError::NoCertificate)?;
    PeerCertificate::from_der(leaf)
}

fn system_time(unix_seconds: i64) -> Result<SystemTime, IdentityError> {
    let seconds = u64::try_from(unix_seconds).map_err(|_| {
        IdentityError::Malformed(format!("validity time {unix_seconds} is before 1970"))
    })?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}
