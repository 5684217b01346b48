//! The agent's side: a key and a certificate signing request for its cluster, the credentials
//! file that keeps them, and when to renew.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::identity::{IdentityError, PeerCertificate, PeerIdentity, check_cluster_name};
use crate::tls::{TlsConfigError, TlsIdentity, TrustRoot};

#[cfg(test)]
mod tests;

/// File name of the credentials inside the agent's state directory.
pub const CREDENTIALS_FILE: &str = "credentials.pem";

/// Why the agent's key, request or credentials file failed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Generating or encoding the key or request failed.
    #[error("cannot create the agent key or certificate request: {0}")]
    Key(#[from] rcgen::Error),
    /// The cluster name cannot be an identity.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Reading or writing the credentials file failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The credentials file may be read by other users.
    #[error("{path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The credentials file does not hold a key, a certificate and a CA certificate that fit.
    #[error("{path} is not a valid credentials file: {detail}; delete it to register again")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// An agent's private key (ECDSA P-256). `Debug` never prints it.
pub struct AgentKey {
    key: KeyPair,
}

impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AgentKey(<redacted>)")
    }
}

impl AgentKey {
    /// A fresh key. A renewing agent makes a new key too, so a leaked old key dies with its
    /// certificate.
    pub fn generate() -> Result<Self, CredentialError> {
        Ok(AgentKey {
            key: KeyPair::generate()?,
        })
    }

    /// A PEM certificate signing request naming `cluster` (common name and identity URI),
    /// signed with this key.
    pub fn csr_pem(&self, cluster: &str) -> Result<String, CredentialError> {
        check_cluster_name(cluster)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cluster);
        params.subject_alt_names = vec![SanType::URI(
            PeerIdentity::Cluster(cluster.to_owned()).uri().try_into()?,
        )];
        Ok(params.serialize_request(&self.key)?.pem()?)
    }

    /// The key as PKCS#8 PEM, to store with the certificate the hub returns.
    pub fn private_key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

/// What an agent holds after registering: its key, its certificate and the CA that signed it.
/// `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentCredentials {
    /// The agent's private key, PKCS#8 PEM.
    pub private_key_pem: String,
    /// The agent's certificate, PEM.
    pub certificate_pem: String,
    /// The group's CA certificate, PEM: the only root the agent trusts.
    pub ca_pem: String,
}

impl fmt::Debug for AgentCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentCredentials")
            .field(
                "certificate_pem",
                &format_args!("<{} bytes>", self.certificate_pem.len()),
            )
            .field("ca_pem", &format_args!("<{} bytes>", self.ca_pem.len()))
            .field("private_key_pem", &"<redacted>")
            .finish()
    }
}

impl AgentCredentials {
    /// Identity, serial and validity of the agent's own certificate.
    pub fn certificate(&self) -> Result<PeerCertificate, CredentialError> {
        let der = first_certificate(&self.certificate_pem)?;
        Ok(PeerCertificate::from_der(&der)?)
    }

    /// The identity to present to the hub.
    pub fn tls_identity(&self) -> Result<TlsIdentity, TlsConfigError> {
        TlsIdentity::from_pem(&self.certificate_pem, &self.private_key_pem)
    }

    /// The CA, as the only root to trust.
    pub fn trust_root(&self) -> Result<TrustRoot, TlsConfigError> {
        TrustRoot::from_pem(&self.ca_pem)
    }

    /// Checks that the key belongs to the certificate and every part parses.
    fn check(&self) -> Result<(), String> {
        let key = KeyPair::from_pem(&self.private_key_pem).map_err(|e| format!("key: {e}"))?;
        let der = first_certificate(&self.certificate_pem).map_err(|e| e.to_string())?;
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| format!("certificate: {e}"))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err("the private key does not belong to the certificate".into());
        }
        PeerCertificate::from_der(&der).map_err(|e| e.to_string())?;
        self.trust_root().map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn first_certificate(pem: &str) -> Result<Vec<u8>, CredentialError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|der| der.to_vec())
        .map_err(|error| {
            CredentialError::Identity(IdentityError::Malformed(format!(
                "certificate PEM: {error}"
            )))
        })
}

/// The agent's credentials file: the key, the certificate and the CA certificate as PEM blocks
/// in that order, mode 0600, replaced atomically so a crash never leaves a key beside a
/// certificate it does not belong to.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    path: PathBuf,
}

impl CredentialStore {
    /// The store inside the agent's state directory (file [`CREDENTIALS_FILE`]).
    pub fn in_dir(dir: &Path) -> Self {
        CredentialStore {
            path: dir.join(CREDENTIALS_FILE),
        }
    }

    /// The credentials file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored credentials, `None` when the agent never registered. A file other users can
    /// read is refused, as ssh refuses such a key.
    pub fn load(&self) -> Result<Option<AgentCredentials>, CredentialError> {
        let io = |action| {
            let path = self.path.clone();
            move |source| CredentialError::Io {
                action,
                path,
                source,
            }
        };
        let metadata = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io("read")(error)),
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CredentialError::Exposed {
                path: self.path.clone(),
                mode,
            });
        }
        let text = std::fs::read_to_string(&self.path).map_err(io("read"))?;
        let malformed = |detail: String| CredentialError::Malformed {
            path: self.path.clone(),
            detail,
        };
        let blocks = pem::parse_many(&text).map_err(|error| malformed(error.to_string()))?;
        let credentials = match blocks.as_slice() {
            [key, cert, ca]
                if key.tag().ends_with("PRIVATE KEY")
                    && cert.tag() == "CERTIFICATE"
                    && ca.tag() == "CERTIFICATE" =>
            {
                let encode = |block| {
                    let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
                    pem::encode_config(block, lf)
                };
                AgentCredentials {
                    private_key_pem: encode(key),
                    certificate_pem: encode(cert),
                    ca_pem: encode(ca),
                }
            }
            _ => {
                return Err(malformed(
                    "expected a PRIVATE KEY block, then the agent's CERTIFICATE, then the CA's \
                     CERTIFICATE"
                        .into(),
                ));
            }
        };
        credentials.check().map_err(malformed)?;
        Ok(Some(credentials))
    }

    /// Replaces the stored credentials: written to a temporary file (mode 0600) in the same
    /// directory, synced, renamed over the old file, and the directory synced. The directory is
    /// created with mode 0700 when missing.
    pub fn save(&self, credentials: &AgentCredentials) -> Result<(), CredentialError> {
        credentials
            .check()
            .map_err(|detail| CredentialError::Malformed {
                path: self.path.clone(),
                detail,
            })?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| CredentialError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create directory", dir))?;
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io("create a file in", dir))?;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io("set permissions of", file.path()))?;
        let mut text = String::new();
        for block in [
            &credentials.private_key_pem,
            &credentials.certificate_pem,
            &credentials.ca_pem,
        ] {
            text.push_str(block.trim_end());
            text.push('\n');
        }
        file.write_all(text.as_bytes())
            .map_err(io("write", file.path()))?;
        file.as_file().sync_all().map_err(io("sync", file.path()))?;
        file.persist(&self.path)
            .map_err(|error| io("replace", &self.path)(error.error))?;
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io("sync directory", dir))?;
        Ok(())
    }
}

/// When to renew a certificate valid from `not_before` to `not_after`: two thirds into its
/// lifetime, which leaves a third of it to retry through a hub outage.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + lifetime * 2 / 3
}

/// Whether a certificate valid from `not_before` to `not_after` is due for renewal at `now`.
pub fn renewal_due(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> bool {
    now >= renew_at(not_before, not_after)
}
