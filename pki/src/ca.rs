//! The hub group's certificate authority: created once, replicated as PEM, and the only issuer
//! of hub node and agent certificates.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::identity::{ISSUE_BACKDATE, PeerIdentity, Serial, check_cluster_name};
use crate::tls::{TlsConfigError, TlsIdentity, TrustRoot};

#[cfg(test)]
mod tests;

/// How long a generated CA is valid. Rotating a CA means re-issuing every certificate, so it
/// lives long; its key never leaves the replicated state.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Default lifetime of a hub node's certificate; nodes re-issue their own from the replicated
/// CA, so rotation costs nothing.
pub const DEFAULT_NODE_CERT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// Default lifetime of an agent's client certificate: short, because revocation of a single
/// certificate is checked by serial only where the hub wires it, while expiry is enforced by
/// every TLS handshake.
pub const DEFAULT_AGENT_CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The CA in its stored form: PEM certificate and PKCS#8 PEM private key. This is what the
/// replicated state (or two files) holds. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaPem {
    /// The CA certificate, PEM.
    pub certificate: String,
    /// The CA private key, PKCS#8 PEM.
    pub private_key: String,
}

impl fmt::Debug for CaPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaPem")
            .field(
                "certificate",
                &format_args!("<{} bytes>", self.certificate.len()),
            )
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// Why the CA could not be created, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// rcgen could not build or sign a certificate.
    #[error("cannot create the certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A CA file could not be read.
    #[error("cannot read the CA {what} from {path}: {source}")]
    Read {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA certificate is not a PEM X.509 certificate.
    #[error("the CA certificate is not a PEM X.509 certificate: {0}")]
    BadCertificate(String),
    /// The CA private key is not a PEM private key rcgen can sign with.
    #[error(
        "the CA private key is not a usable PEM private key (PKCS#8 ECDSA P-256/P-384, Ed25519 or RSA): {0}"
    )]
    BadKey(rcgen::Error),
    /// The certificate does not have `basicConstraints: CA:TRUE`.
    #[error("the CA certificate is not a CA certificate (basicConstraints CA:TRUE is missing)")]
    NotACa,
    /// The private key does not belong to the certificate.
    #[error("the CA private key does not belong to the CA certificate")]
    KeyMismatch,
    /// A host name or address for a node certificate is not usable.
    #[error("`{0}` is neither an IP address nor a DNS name")]
    BadName(String),
    /// A certificate lifetime of zero.
    #[error("a certificate lifetime must be longer than zero")]
    ZeroLifetime,
}

/// Why the hub refuses to sign an agent's certificate signing request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrRefused {
    /// Not a PEM PKCS#10 request, or one with extensions Flotilla does not sign.
    #[error("the certificate signing request does not parse: {0}")]
    Malformed(String),
    /// The request's self-signature does not verify: it was altered or forged.
    #[error("the certificate signing request's signature does not verify")]
    BadSignature,
    /// The request names no cluster (no common name and no identity URI).
    #[error("the certificate signing request names no cluster; expected CN={0}")]
    NoIdentity(String),
    /// The request asks for a different cluster than the one the token was issued for.
    #[error(
        "the certificate signing request is for `{requested}`, but the token is for cluster `{cluster}`"
    )]
    WrongIdentity {
        /// What the request asked for.
        requested: String,
        /// The cluster the caller is entitled to.
        cluster: String,
    },
    /// The request asks for a name an agent may not hold (DNS, IP, e-mail, other URIs).
    #[error(
        "the certificate signing request asks for the name `{0}`; an agent certificate names only its cluster"
    )]
    ForbiddenName(String),
    /// The request asks to be a CA.
    #[error("the certificate signing request asks for a CA certificate")]
    WantsCa,
    /// The cluster name is not a DNS-1123 label.
    #[error("cluster name {0}")]
    BadClusterName(String),
    /// Signing failed after the request was accepted.
    #[error("cannot sign the certificate: {0}")]
    Sign(String),
}

/// A certificate the CA issued for a key it never saw (an agent's CSR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// Its serial.
    pub serial: Serial,
    /// Start of validity (backdated by [`ISSUE_BACKDATE`]).
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

/// A hub node's certificate and the key generated for it. `Debug` never prints the key.
#[derive(Clone)]
pub struct NodeCredentials {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The private key, PKCS#8 PEM.
    pub private_key_pem: String,
    /// Its serial.
    pub serial: Serial,
    /// End of validity.
    pub not_after: SystemTime,
}

impl fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .field("private_key_pem", &"<redacted>")
            .finish()
    }
}

impl NodeCredentials {
    /// The rustls identity for this node's listeners and its client connections to peers.
    pub fn tls_identity(&self) -> Result<TlsIdentity, TlsConfigError> {
        TlsIdentity::from_pem(&self.certificate_pem, &self.private_key_pem)
    }
}

/// The group's certificate authority. `Debug` shows the subject, never the key.
pub struct GroupCa {
    issuer: Issuer<'static, KeyPair>,
    certificate_der: CertificateDer<'static>,
    certificate_pem: String,
    subject: String,
    not_after: SystemTime,
}

impl fmt::Debug for GroupCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCa")
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl GroupCa {
    /// Creates a new CA for the hub group `group` (a fresh ECDSA P-256 key), valid from `now`
    /// for [`CA_LIFETIME`].
    pub fn generate(group: &str, now: SystemTime) -> Result<Self, CaError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Flotilla");
        // A random tag tells apart the CAs of groups that share a name (and a CA from the one
        // it replaces), so verifiers report an unknown issuer rather than a bad signature.
        let tag: u32 = rand::random();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Flotilla CA {group} {tag:08x}"));
        // Path length 0: the CA signs leaves only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        let now = whole_seconds(now);
        params.not_before = (now - ISSUE_BACKDATE).into();
        params.not_after = (now + CA_LIFETIME).into();
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        let pem = CaPem {
            certificate: certificate.pem(),
            private_key: key.serialize_pem(),
        };
        Self::from_pem(&pem)
    }

    /// Loads a CA from its stored form, checking that the certificate is a CA and that the key
    /// is its key.
    pub fn from_pem(pem: &CaPem) -> Result<Self, CaError> {
        let certificate_der = CertificateDer::from_pem_slice(pem.certificate.as_bytes())
            .map_err(|error| CaError::BadCertificate(error.to_string()))?;
        let key = KeyPair::from_pem(&pem.private_key).map_err(CaError::BadKey)?;
        let (subject, not_after) = {
            let (_, parsed) = X509Certificate::from_der(&certificate_der)
                .map_err(|error| CaError::BadCertificate(error.to_string()))?;
            if !parsed.is_ca() {
                return Err(CaError::NotACa);
            }
            if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(CaError::KeyMismatch);
            }
            let seconds = u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0);
            (
                parsed.subject().to_string(),
                SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
            )
        };
        let issuer = Issuer::from_ca_cert_der(&certificate_der, key)?;
        Ok(GroupCa {
            issuer,
            certificate_pem: pem.certificate.clone(),
            certificate_der,
            subject,
            not_after,
        })
    }

    /// Loads a CA an operator provides as two PEM files.
    pub fn from_files(certificate: &Path, private_key: &Path) -> Result<Self, CaError> {
        let read = |what, path: &Path| {
            std::fs::read_to_string(path).map_err(|source| CaError::Read {
                what,
                path: path.to_owned(),
                source,
            })
        };
        Self::from_pem(&CaPem {
            certificate: read("certificate", certificate)?,
            private_key: read("private key", private_key)?,
        })
    }

    /// The stored form, for the replicated state.
    pub fn to_pem(&self) -> CaPem {
        CaPem {
            certificate: self.certificate_pem.clone(),
            private_key: self.issuer.key().serialize_pem(),
        }
    }

    /// The CA certificate, PEM: what agents, CLIs and peers trust.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA as the only trust root of a TLS configuration.
    pub fn trust_root(&self) -> TrustRoot {
        TrustRoot::from_der(self.certificate_der.clone())
    }

    /// End of the CA's validity; the hub should warn well before it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Issues a certificate and a fresh key for hub node `node`, valid for both sides of TLS
    /// (its listeners and its connections to peers). `names` are the IP addresses and DNS
    /// names agents, CLIs and peers use to reach it: every one must be listed, since clients
    /// check the name they dialled.
    pub fn issue_node_certificate(
        &self,
        node: u64,
        names: &[String],
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<NodeCredentials, CaError> {
        let mut subject_alt_names = Vec::with_capacity(names.len() + 1);
        for name in names {
            subject_alt_names.push(match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.as_str()
                        .try_into()
                        .map_err(|_| CaError::BadName(name.clone()))?,
                ),
            });
        }
        let identity = PeerIdentity::HubNode(node);
        let mut params = self.leaf_params(&format!("flotilla hub node {node}"), lifetime, now)?;
        params.subject_alt_names = subject_alt_names;
        params.subject_alt_names.push(uri_name(&identity)?);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(NodeCredentials {
            certificate_pem: certificate.pem(),
            private_key_pem: key.serialize_pem(),
            serial: serial_of(&params),
            not_after: params.not_after.into(),
        })
    }

    /// Signs an agent's certificate signing request for `cluster` — the cluster its bootstrap
    /// token was issued for, or the one its current certificate names when it renews. Only the
    /// request's public key is used; the certificate's contents are Flotilla's own (client
    /// authentication only, the cluster's name and identity URI, `lifetime` from `now`).
    pub fn sign_agent_csr(
        &self,
        csr_pem: &str,
        cluster: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<IssuedCertificate, CsrRefused> {
        check_cluster_name(cluster).map_err(|error| match error {
            crate::IdentityError::BadClusterName(why) => CsrRefused::BadClusterName(why),
            other => CsrRefused::BadClusterName(other.to_string()),
        })?;
        let request =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|error| match error {
                rcgen::Error::InvalidCertificationRequestSignature => CsrRefused::BadSignature,
                other => CsrRefused::Malformed(other.to_string()),
            })?;
        check_requested_identity(&request.params, cluster)?;

        let identity = PeerIdentity::Cluster(cluster.to_owned());
        let sign_error = |error: CaError| CsrRefused::Sign(error.to_string());
        let mut params = self
            .leaf_params(cluster, lifetime, now)
            .map_err(sign_error)?;
        params.subject_alt_names = vec![uri_name(&identity).map_err(sign_error)?];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let certificate = params
            .signed_by(&request.public_key, &self.issuer)
            .map_err(|error| CsrRefused::Sign(error.to_string()))?;
        Ok(IssuedCertificate {
            certificate_pem: certificate.pem(),
            serial: serial_of(&params),
            not_before: params.not_before.into(),
            not_after: params.not_after.into(),
        })
    }

    fn leaf_params(
        &self,
        common_name: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<CertificateParams, CaError> {
        if lifetime.is_zero() {
            return Err(CaError::ZeroLifetime);
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Flotilla");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        let now = whole_seconds(now);
        params.not_before = (now - ISSUE_BACKDATE).into();
        // A leaf never outlives its CA.
        params.not_after = (now + lifetime).min(self.not_after).into();
        Ok(params)
    }
}

/// Refuses a request whose common name or identity URIs name anything but `cluster`.
fn check_requested_identity(
    requested: &CertificateParams,
    cluster: &str,
) -> Result<(), CsrRefused> {
    if !matches!(requested.is_ca, IsCa::NoCa | IsCa::ExplicitNoCa) {
        return Err(CsrRefused::WantsCa);
    }
    let wanted_uri = PeerIdentity::Cluster(cluster.to_owned()).uri();
    let mut named = false;
    for name in &requested.subject_alt_names {
        match name {
            SanType::URI(uri) if uri.as_str() == wanted_uri => named = true,
            SanType::URI(uri) => match PeerIdentity::from_uri(uri.as_str()) {
                Ok(Some(identity)) => {
                    return Err(CsrRefused::WrongIdentity {
                        requested: identity.to_string(),
                        cluster: cluster.to_owned(),
                    });
                }
                _ => return Err(CsrRefused::ForbiddenName(uri.as_str().to_owned())),
            },
            SanType::DnsName(name) | SanType::Rfc822Name(name) => {
                return Err(CsrRefused::ForbiddenName(name.as_str().to_owned()));
            }
            SanType::IpAddress(ip) => return Err(CsrRefused::ForbiddenName(ip.to_string())),
            other => return Err(CsrRefused::ForbiddenName(format!("{other:?}"))),
        }
    }
    match requested.distinguished_name.get(&DnType::CommonName) {
        Some(value) => match dn_text(value) {
            Some(name) if name == cluster => {}
            Some(name) => {
                return Err(CsrRefused::WrongIdentity {
                    requested: name.to_owned(),
                    cluster: cluster.to_owned(),
                });
            }
            None => {
                return Err(CsrRefused::WrongIdentity {
                    requested: "a common name in an unsupported string type".to_owned(),
                    cluster: cluster.to_owned(),
                });
            }
        },
        None if named => {}
        None => return Err(CsrRefused::NoIdentity(cluster.to_owned())),
    }
    Ok(())
}

fn dn_text(value: &DnValue) -> Option<&str> {
    match value {
        DnValue::Utf8String(text) => Some(text),
        DnValue::PrintableString(text) => Some(text.as_str()),
        DnValue::Ia5String(text) => Some(text.as_str()),
        DnValue::TeletexString(text) => Some(text.as_str()),
        _ => None,
    }
}

fn uri_name(identity: &PeerIdentity) -> Result<SanType, CaError> {
    Ok(SanType::URI(identity.uri().try_into()?))
}

/// 128 random bits, positive (top bit clear) and without a leading zero byte, so the DER
/// integer's bytes are exactly these and [`Serial`] reads back what was written.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// Certificates hold whole seconds; truncating first makes the times reported at issue equal
/// to those read back from the certificate.
fn whole_seconds(time: SystemTime) -> SystemTime {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

fn serial_of(params: &CertificateParams) -> Serial {
    Serial::from_bytes(
        &params
            .serial_number
            .as_ref()
            .map(SerialNumber::to_bytes)
            .unwrap_or_default(),
    )
}
