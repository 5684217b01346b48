//! Flotilla's public key infrastructure: the hub group's certificate authority, the
//! certificates it issues to hub nodes and to agents, the rustls configurations every listener
//! and client uses, and the identity a verified peer certificate names.
//!
//! Identities are SPIFFE-style URIs in a certificate's subject alternative names:
//! `spiffe://flotilla/hub/NODE_ID` for a hub node and `spiffe://flotilla/cluster/NAME` for a
//! cluster's agent (see [`PeerIdentity`]). The subject common name repeats the cluster name
//! for people reading certificates; only the URI is trusted.
//!
//! Everything here is synchronous and pure except [`TlsListener`] (accepts TLS connections) and
//! [`CredentialStore`] (the agent's files). Time always comes in as a parameter, so tests can
//! issue certificates that are already expired.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod agent;
pub mod ca;
pub mod identity;
pub mod revocation;
pub mod tls;

pub use agent::{
    AgentCredentials, AgentKey, CredentialError, CredentialStore, renew_at, renewal_due,
};
pub use ca::{
    CaError, CaPem, CsrRefused, DEFAULT_AGENT_CERT_LIFETIME, DEFAULT_NODE_CERT_LIFETIME, GroupCa,
    IssuedCertificate, NodeCredentials,
};
pub use identity::{IdentityError, PeerCertificate, PeerIdentity, Serial, peer_certificate};
pub use revocation::{Refused, check_agent_certificate};
pub use tls::{
    ClientAuth, RotatingIdentity, TlsConfigError, TlsIdentity, TlsListener, TrustRoot,
    client_config, crypto_provider, install_crypto_provider, rotating_client_config,
    rotating_server_config, server_config,
};
