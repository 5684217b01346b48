//! Commit signature verification for stages that `requireSignedBy` keys.
//!
//! The hub extracts a commit's signature and the signed payload (the commit object without its
//! `gpgsig` header, as `git2::Repository::extract_signature` returns them) and asks
//! [`verify_commit`] which of the stage's keys signed it. Two formats, as git writes them:
//! - SSH (`gpg.format=ssh`): an armored `SSH SIGNATURE` in the sshsig format, namespace `git`;
//! - OpenPGP (`gpg.format=openpgp`): an armored detached `PGP SIGNATURE`.
//!
//! Keys are trusted as configured: an OpenPGP key's expiry and revocation signatures are not
//! evaluated (remove the key from the list to stop trusting it), but a signing subkey must be
//! bound to its primary key by a valid signature.

use crate::spec::{SigningKey, SigningKeyMaterial};

mod openpgp;
mod ssh;

#[cfg(test)]
mod tests;

/// The sshsig namespace git signs commits and tags in.
pub const GIT_NAMESPACE: &str = "git";

/// A signature that verified: the configured key that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<'a> {
    /// The key, as the stage lists it.
    pub key: &'a SigningKey,
    /// The signing key's fingerprint (`SHA256:...` for SSH, hex for OpenPGP), for audit.
    pub fingerprint: String,
}

/// Why a commit does not count as signed by one of the keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The commit carries no signature.
    #[error("the commit is not signed; the stage requires a signature by {0}")]
    Unsigned(String),
    /// The signature is neither an SSH nor an OpenPGP armored signature.
    #[error(
        "the commit signature is neither an SSH SIGNATURE nor a PGP SIGNATURE block (X.509 signatures are not supported)"
    )]
    UnrecognisedFormat,
    /// The signature block does not parse.
    #[error("the commit's {format} signature does not parse: {detail}")]
    Malformed {
        /// `SSH` or `OpenPGP`.
        format: &'static str,
        /// The parser's complaint.
        detail: String,
    },
    /// An SSH signature made for another purpose than git objects.
    #[error("the commit's SSH signature is for namespace `{0}`, not `git`")]
    WrongNamespace(String),
    /// Signed, but by a key the stage does not list.
    #[error(
        "the commit is signed by {signer}, which is not among the keys the stage requires ({allowed})"
    )]
    UnknownKey {
        /// The signing key's fingerprint or key id, as the signature names it.
        signer: String,
        /// The names of the keys the stage accepts.
        allowed: String,
    },
    /// Made by (or claiming) a listed key, but the signature does not verify: the commit or the
    /// signature was altered.
    #[error(
        "the commit's signature claims key `{key}` but does not verify: the commit or its signature was altered"
    )]
    BadSignature {
        /// The listed key's name.
        key: String,
    },
    /// A configured key cannot be used.
    #[error("signing key `{key}` cannot be used: {detail}")]
    UnusableKey {
        /// The key's name.
        key: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The stage lists no keys (nothing to verify against).
    #[error("no signing keys are configured")]
    NoKeys,
}

/// Verifies a commit signature against the keys a stage accepts (any one suffices) and returns
/// the key that signed. `payload` is the signed commit text; `signature` the armored signature,
/// `None` for an unsigned commit.
pub fn verify_commit<'a>(
    payload: &[u8],
    signature: Option<&[u8]>,
    keys: &'a [SigningKey],
) -> Result<Verified<'a>, SignatureError> {
    if keys.is_empty() {
        return Err(SignatureError::NoKeys);
    }
    let Some(signature) = signature else {
        return Err(SignatureError::Unsigned(names(keys)));
    };
    let text = String::from_utf8_lossy(signature);
    let text = text.trim();
    if text.starts_with("-----BEGIN SSH SIGNATURE-----") {
        ssh::verify(payload, text, keys)
    } else if text.starts_with("-----BEGIN PGP SIGNATURE-----") {
        openpgp::verify(payload, text, keys)
    } else {
        Err(SignatureError::UnrecognisedFormat)
    }
}

/// Checks that a configured key parses as the verifier will read it (for an OpenPGP key, with
/// valid self-signatures), so `flotilla lint` reports a broken key before any commit is
/// refused for it.
pub fn check_key(key: &SigningKeyMaterial) -> Result<(), String> {
    match key {
        SigningKeyMaterial::Ssh(line) => ssh::parse_key(line).map(|_| ()),
        SigningKeyMaterial::OpenPgp(block) => openpgp::parse_key(block).map(|_| ()),
    }
}

/// The keys of one kind, for error messages.
fn names(keys: &[SigningKey]) -> String {
    keys.iter()
        .map(|key| {
            let kind = match key.key {
                SigningKeyMaterial::Ssh(_) => "ssh",
                SigningKeyMaterial::OpenPgp(_) => "openpgp",
            };
            format!("`{}` ({kind})", key.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
