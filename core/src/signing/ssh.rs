//! SSH signatures (sshsig), as `ssh-keygen -Y sign -n git` writes them for git.

use ssh_key::{HashAlg, PublicKey, SshSig};

use super::{GIT_NAMESPACE, SignatureError, Verified, names};
use crate::spec::{SigningKey, SigningKeyMaterial};

pub(super) fn verify<'a>(
    payload: &[u8],
    armored: &str,
    keys: &'a [SigningKey],
) -> Result<Verified<'a>, SignatureError> {
    let signature = SshSig::from_pem(armored).map_err(|error| SignatureError::Malformed {
        format: "SSH",
        detail: error.to_string(),
    })?;
    if signature.namespace() != GIT_NAMESPACE {
        return Err(SignatureError::WrongNamespace(
            signature.namespace().to_owned(),
        ));
    }
    // The signature names its key; find it among the configured ones instead of trying each.
    for key in keys {
        let SigningKeyMaterial::Ssh(line) = &key.key else {
            continue;
        };
        let public = parse_key(line).map_err(|detail| SignatureError::UnusableKey {
            key: key.name.clone(),
            detail,
        })?;
        if public.key_data() != signature.public_key() {
            continue;
        }
        return match public.verify(GIT_NAMESPACE, payload, &signature) {
            Ok(()) => Ok(Verified {
                key,
                fingerprint: public.fingerprint(HashAlg::Sha256).to_string(),
            }),
            Err(_) => Err(SignatureError::BadSignature {
                key: key.name.clone(),
            }),
        };
    }
    Err(SignatureError::UnknownKey {
        signer: PublicKey::from(signature.public_key().clone())
            .fingerprint(HashAlg::Sha256)
            .to_string(),
        allowed: names(keys),
    })
}

pub(super) fn parse_key(line: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(line.trim()).map_err(|error| format!("the key does not parse: {error}"))
}
