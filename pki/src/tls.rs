//! rustls configurations for every Flotilla listener and client, built on the one crypto
//! provider (ring), and a TLS listener that hands verified connections to tonic or hyper.

use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};

mod listener;

pub use listener::{DEFAULT_HANDSHAKE_TIMEOUT, TlsListener};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A PEM input holds nothing usable of the kind asked for.
    #[error("the {what} is not usable PEM: {detail}")]
    Pem {
        /// `certificate`, `private key` or `CA certificate`.
        what: &'static str,
        /// What the PEM reader said.
        detail: String,
    },
    /// rustls refused the certificate, key or settings.
    #[error("rustls refused the configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built from the CA.
    #[error("cannot verify client certificates against the CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Which client certificates a listener asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A certificate signed by the CA is required (hub-to-hub traffic).
    Required,
    /// A certificate is verified when presented, and a client may present none (the API
    /// listener: agents present one, CLIs authenticate with bearer tokens).
    Optional,
    /// No client certificates (a listener for browsers or metrics scrapers).
    Off,
}

/// A certificate chain (end-entity first) and its private key. `Debug` never prints the key.
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certificates", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl TlsIdentity {
    /// From PEM: one or more certificates (end-entity first) and one private key.
    pub fn from_pem(certificate_pem: &str, private_key_pem: &str) -> Result<Self, TlsConfigError> {
        let chain = CertificateDer::pem_slice_iter(certificate_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| TlsConfigError::Pem {
                what: "certificate",
                detail: error.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsConfigError::Pem {
                what: "certificate",
                detail: "no CERTIFICATE block".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(private_key_pem.as_bytes()).map_err(|error| {
            TlsConfigError::Pem {
                what: "private key",
                detail: error.to_string(),
            }
        })?;
        Ok(TlsIdentity { chain, key })
    }

    /// The certificates, end-entity first.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}

/// A certificate and key that can be replaced while configurations use it: a server presents,
/// and a client offers, whichever is current at each handshake. Connections already made keep
/// the one they were made with.
pub struct RotatingIdentity {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for RotatingIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatingIdentity").finish_non_exhaustive()
    }
}

impl RotatingIdentity {
    /// Starts with `identity`.
    pub fn new(identity: &TlsIdentity) -> Result<Arc<Self>, TlsConfigError> {
        Ok(Arc::new(RotatingIdentity {
            current: RwLock::new(certified(identity)?),
        }))
    }

    /// Presents `identity` from the next handshake on.
    pub fn replace(&self, identity: &TlsIdentity) -> Result<(), TlsConfigError> {
        let next = certified(identity)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn certified(identity: &TlsIdentity) -> Result<Arc<CertifiedKey>, TlsConfigError> {
    let key = crypto_provider()
        .key_provider
        .load_private_key(identity.key.clone_key())?;
    Ok(Arc::new(CertifiedKey::new(identity.chain.clone(), key)))
}

impl ResolvesServerCert for RotatingIdentity {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for RotatingIdentity {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The group's CA as the only certificate a configuration trusts: no system roots, so only
/// the group's own certificates are ever accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRoot {
    der: CertificateDer<'static>,
}

impl TrustRoot {
    /// From the CA certificate's PEM (the first certificate block).
    pub fn from_pem(ca_pem: &str) -> Result<Self, TlsConfigError> {
        let der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|error| {
            TlsConfigError::Pem {
                what: "CA certificate",
                detail: error.to_string(),
            }
        })?;
        Ok(TrustRoot { der })
    }

    /// From the CA certificate's DER.
    pub fn from_der(der: CertificateDer<'static>) -> Self {
        TrustRoot { der }
    }

    fn store(&self) -> Result<RootCertStore, TlsConfigError> {
        let mut store = RootCertStore::empty();
        store.add(self.der.clone())?;
        Ok(store)
    }
}

/// Why a connection failed, read through `error`'s causes: the TLS error under it, if one caused
/// it, else the innermost cause's words. An I/O error carries a TLS error as its payload, not
/// as its source, so payloads are looked into too.
pub fn cause_of<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Result<&'a rustls::Error, String> {
    let mut source = Some(error);
    let mut deepest = error.to_string();
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Ok(tls);
        }
        deepest = e.to_string();
        source = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    Err(deepest)
}

/// The crypto provider every Flotilla TLS configuration uses: ring.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide rustls provider, for libraries that build their own
/// configurations from it (tonic's `ServerTlsConfig`/`ClientTlsConfig`, kube-rs). Call once at
/// the start of every binary; later calls, and calls after another provider was installed,
/// change nothing. Returns whether this call installed it.
pub fn install_crypto_provider() -> bool {
    rustls::crypto::ring::default_provider()
        .install_default()
        .is_ok()
}

/// A server configuration: TLS 1.3 only, presenting `identity`, verifying client certificates
/// against `roots` as `client_auth` says. ALPN offers `h2` then `http/1.1`, so one
/// configuration serves gRPC and HTTP; change `alpn_protocols` for a listener that serves one.
pub fn server_config(
    identity: &TlsIdentity,
    roots: &TrustRoot,
    client_auth: ClientAuth,
) -> Result<ServerConfig, TlsConfigError> {
    rotating_server_config(RotatingIdentity::new(identity)?, roots, client_auth)
}

/// [`server_config`] presenting whatever `identity` holds at each handshake.
pub fn rotating_server_config(
    identity: Arc<RotatingIdentity>,
    roots: &TrustRoot,
    client_auth: ClientAuth,
) -> Result<ServerConfig, TlsConfigError> {
    let provider = crypto_provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match client_auth {
        ClientAuth::Off => builder.with_no_client_auth(),
        ClientAuth::Required | ClientAuth::Optional => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots.store()?), provider);
            let verifier = match client_auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(verifier.build()?)
        }
    };
    let mut config = builder.with_cert_resolver(identity);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration: TLS 1.3 only, trusting `roots` alone, presenting `identity` when
/// given (agents and hub nodes; CLIs present none). The server's name is checked against its
/// certificate as usual. No ALPN is set: set `alpn_protocols` to `[b"h2"]` for gRPC.
pub fn client_config(
    roots: &TrustRoot,
    identity: Option<&TlsIdentity>,
) -> Result<ClientConfig, TlsConfigError> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots.store()?);
    Ok(match identity {
        Some(identity) => {
            builder.with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())?
        }
        None => builder.with_no_client_auth(),
    })
}

/// [`client_config`] offering whatever `identity` holds at each handshake.
pub fn rotating_client_config(
    roots: &TrustRoot,
    identity: Arc<RotatingIdentity>,
) -> Result<ClientConfig, TlsConfigError> {
    Ok(ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots.store()?)
        .with_client_cert_resolver(identity))
}
