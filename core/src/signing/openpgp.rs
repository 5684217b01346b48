//! OpenPGP detached signatures, as `gpg --detach-sign --armor` writes them for git.

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::{KeyDetails, VerifyingKey};

use super::{SignatureError, Verified, names};
use crate::spec::{SigningKey, SigningKeyMaterial};

/// Who the signature says made it: issuer fingerprints and key ids, hex.
struct Issuer {
    fingerprints: Vec<String>,
    key_ids: Vec<String>,
}

impl Issuer {
    fn of(signature: &Signature) -> Self {
        Issuer {
            fingerprints: signature
                .issuer_fingerprint()
                .iter()
                .map(|fingerprint| hex::encode(fingerprint.as_bytes()))
                .collect(),
            key_ids: signature
                .issuer_key_id()
                .iter()
                .map(|id| hex::encode(id.as_ref()))
                .collect(),
        }
    }

    /// Without issuer subpackets the signature names nobody, and every key is a candidate.
    fn anonymous(&self) -> bool {
        self.fingerprints.is_empty() && self.key_ids.is_empty()
    }

    fn names(&self, key: &impl KeyDetails) -> bool {
        self.anonymous()
            || self
                .fingerprints
                .contains(&hex::encode(key.fingerprint().as_bytes()))
            || self
                .key_ids
                .contains(&hex::encode(key.legacy_key_id().as_ref()))
    }

    fn describe(&self) -> String {
        self.fingerprints
            .first()
            .or(self.key_ids.first())
            .map(|id| format!("OpenPGP key {id}"))
            .unwrap_or_else(|| "an OpenPGP key the signature does not name".to_owned())
    }
}

/// What trying one key (primary or subkey) gave.
enum Attempt {
    /// Not the key the signature names.
    NotNamed,
    /// Verified; the key's fingerprint.
    Verified(String),
    /// Named (or tried anonymously) but the signature does not verify.
    Failed,
}

fn attempt(
    signature: &Signature,
    issuer: &Issuer,
    key: &impl VerifyingKey,
    payload: &[u8],
) -> Attempt {
    if !issuer.names(key) {
        return Attempt::NotNamed;
    }
    match signature.verify(key, payload) {
        Ok(()) => Attempt::Verified(hex::encode(key.fingerprint().as_bytes())),
        Err(_) => Attempt::Failed,
    }
}

pub(super) fn verify<'a>(
    payload: &[u8],
    armored: &str,
    keys: &'a [SigningKey],
) -> Result<Verified<'a>, SignatureError> {
    let (signature, _) =
        DetachedSignature::from_string(armored).map_err(|error| SignatureError::Malformed {
            format: "OpenPGP",
            detail: error.to_string(),
        })?;
    let signature = signature.signature;
    let issuer = Issuer::of(&signature);

    for key in keys {
        let SigningKeyMaterial::OpenPgp(block) = &key.key else {
            continue;
        };
        let public = parse_key(block).map_err(|detail| SignatureError::UnusableKey {
            key: key.name.clone(),
            detail,
        })?;
        let mut attempts = vec![attempt(&signature, &issuer, &public, payload)];
        for subkey in &public.public_subkeys {
            // A subkey counts only when its primary key bound it.
            if subkey.verify_bindings(&public.primary_key).is_ok() {
                attempts.push(attempt(&signature, &issuer, subkey, payload));
            }
        }
        for outcome in attempts {
            match outcome {
                Attempt::Verified(fingerprint) => return Ok(Verified { key, fingerprint }),
                Attempt::Failed if !issuer.anonymous() => {
                    return Err(SignatureError::BadSignature {
                        key: key.name.clone(),
                    });
                }
                Attempt::Failed | Attempt::NotNamed => {}
            }
        }
    }
    Err(SignatureError::UnknownKey {
        signer: issuer.describe(),
        allowed: names(keys),
    })
}

pub(super) fn parse_key(block: &str) -> Result<SignedPublicKey, String> {
    let (public, _) = SignedPublicKey::from_string(block)
        .map_err(|error| format!("the key does not parse: {error}"))?;
    public
        .verify_bindings()
        .map_err(|error| format!("its self-signatures do not verify: {error}"))?;
    Ok(public)
}
