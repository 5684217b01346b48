use pgp::composed::{
    ArmorOptions, KeyType, SecretKeyParamsBuilder, SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::{KeyDetails, Password};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, EcdsaCurve, LineEnding, PrivateKey};

use super::*;

const COMMIT: &[u8] = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
author Release <release@example.com> 1700000000 +0000\n\
committer Release <release@example.com> 1700000000 +0000\n\
\n\
Release 1.2.3\n";

fn ssh_key(algorithm: Algorithm) -> PrivateKey {
    PrivateKey::random(&mut OsRng, algorithm).unwrap()
}

fn listed(name: &str, key: &PrivateKey) -> SigningKey {
    SigningKey {
        name: name.into(),
        key: SigningKeyMaterial::Ssh(key.public_key().to_openssh().unwrap()),
    }
}

/// What `ssh-keygen -Y sign -n NAMESPACE` writes: an armored sshsig over SHA-512.
fn ssh_sign(key: &PrivateKey, namespace: &str, payload: &[u8]) -> Vec<u8> {
    key.sign(namespace, ssh_key::HashAlg::Sha512, payload)
        .unwrap()
        .to_pem(LineEnding::LF)
        .unwrap()
        .into_bytes()
}

#[test]
fn an_ssh_signature_by_a_listed_key_verifies() {
    let release = ssh_key(Algorithm::Ed25519);
    let other = ssh_key(Algorithm::Ed25519);
    let keys = [listed("other", &other), listed("release", &release)];
    let signature = ssh_sign(&release, "git", COMMIT);
    let verified = verify_commit(COMMIT, Some(&signature), &keys).unwrap();
    assert_eq!(verified.key.name, "release");
    assert_eq!(
        verified.fingerprint,
        release
            .public_key()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string()
    );
    assert!(verified.fingerprint.starts_with("SHA256:"));
}

#[test]
fn an_ecdsa_ssh_signature_verifies() {
    let release = ssh_key(Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    });
    let keys = [listed("release", &release)];
    let signature = ssh_sign(&release, "git", COMMIT);
    assert_eq!(
        verify_commit(COMMIT, Some(&signature), &keys)
            .unwrap()
            .key
            .name,
        "release"
    );
}

#[test]
fn an_altered_commit_fails_its_ssh_signature() {
    let release = ssh_key(Algorithm::Ed25519);
    let keys = [listed("release", &release)];
    let signature = ssh_sign(&release, "git", COMMIT);
    let altered = [COMMIT, b"and a backdoor\n"].concat();
    assert_eq!(
        verify_commit(&altered, Some(&signature), &keys),
        Err(SignatureError::BadSignature {
            key: "release".into()
        })
    );
}

#[test]
fn an_ssh_signature_by_an_unlisted_key_is_refused() {
    let release = ssh_key(Algorithm::Ed25519);
    let intruder = ssh_key(Algorithm::Ed25519);
    let keys = [listed("release", &release)];
    let signature = ssh_sign(&intruder, "git", COMMIT);
    let error = verify_commit(COMMIT, Some(&signature), &keys).unwrap_err();
    let fingerprint = intruder
        .public_key()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    assert_eq!(
        error,
        SignatureError::UnknownKey {
            signer: fingerprint,
            allowed: "`release` (ssh)".into()
        }
    );
}

#[test]
fn an_ssh_signature_for_another_namespace_is_refused() {
    let release = ssh_key(Algorithm::Ed25519);
    let keys = [listed("release", &release)];
    let signature = ssh_sign(&release, "file", COMMIT);
    assert_eq!(
        verify_commit(COMMIT, Some(&signature), &keys),
        Err(SignatureError::WrongNamespace("file".into()))
    );
}

#[test]
fn an_unsigned_commit_is_refused_naming_the_keys() {
    let release = ssh_key(Algorithm::Ed25519);
    let keys = [listed("release", &release)];
    let error = verify_commit(COMMIT, None, &keys).unwrap_err();
    assert_eq!(error, SignatureError::Unsigned("`release` (ssh)".into()));
    assert_eq!(
        error.to_string(),
        "the commit is not signed; the stage requires a signature by `release` (ssh)"
    );
}

#[test]
fn garbage_signatures_are_refused() {
    let release = ssh_key(Algorithm::Ed25519);
    let keys = [listed("release", &release)];
    assert_eq!(
        verify_commit(COMMIT, Some(b"-----BEGIN SIGNED MESSAGE-----"), &keys),
        Err(SignatureError::UnrecognisedFormat)
    );
    let broken = b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n";
    assert!(matches!(
        verify_commit(COMMIT, Some(broken), &keys),
        Err(SignatureError::Malformed { format: "SSH", .. })
    ));
    let broken = b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n";
    assert!(matches!(
        verify_commit(COMMIT, Some(broken), &keys),
        Err(SignatureError::Malformed {
            format: "OpenPGP",
            ..
        })
    ));
}

#[test]
fn a_listed_key_that_does_not_parse_is_reported() {
    let release = ssh_key(Algorithm::Ed25519);
    let keys = [
        SigningKey {
            name: "typo".into(),
            key: SigningKeyMaterial::Ssh("ssh-ed25519 AAAAnotbase64".into()),
        },
        listed("release", &release),
    ];
    let signature = ssh_sign(&release, "git", COMMIT);
    assert!(matches!(
        verify_commit(COMMIT, Some(&signature), &keys),
        Err(SignatureError::UnusableKey { key, .. }) if key == "typo"
    ));
}

#[test]
fn no_keys_verify_nothing() {
    assert_eq!(
        verify_commit(COMMIT, None, &[]),
        Err(SignatureError::NoKeys)
    );
}

/// An OpenPGP key as `gpg --quick-gen-key` makes one: a primary key that certifies, with a
/// signing subkey when `subkey` is true (else the primary key signs).
fn pgp_key(subkey: bool) -> SignedSecretKey {
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(!subkey)
        .primary_user_id("Release <release@example.com>".into());
    if subkey {
        params.subkeys(vec![
            SubkeyParamsBuilder::default()
                .key_type(KeyType::Ed25519Legacy)
                .can_sign(true)
                .build()
                .unwrap(),
        ]);
    }
    params.build().unwrap().generate(OsRng).unwrap()
}

fn pgp_listed(name: &str, key: &SignedSecretKey) -> SigningKey {
    let public = pgp::composed::SignedPublicKey::from(key.clone());
    SigningKey {
        name: name.into(),
        key: SigningKeyMaterial::OpenPgp(
            public.to_armored_string(ArmorOptions::default()).unwrap(),
        ),
    }
}

/// What `gpg --detach-sign --armor` writes for git.
fn pgp_sign(signer: &impl pgp::types::SigningKey, payload: &[u8]) -> Vec<u8> {
    DetachedSignature::sign_binary_data(
        OsRng,
        signer,
        &Password::empty(),
        HashAlgorithm::Sha256,
        payload,
    )
    .unwrap()
    .to_armored_string(ArmorOptions::default())
    .unwrap()
    .into_bytes()
}

use pgp::composed::DetachedSignature;

#[test]
fn an_openpgp_signature_by_a_listed_key_verifies() {
    let release = pgp_key(false);
    let keys = [
        listed("ssh", &ssh_key(Algorithm::Ed25519)),
        pgp_listed("release", &release),
    ];
    let signature = pgp_sign(&release.primary_key, COMMIT);
    let verified = verify_commit(COMMIT, Some(&signature), &keys).unwrap();
    assert_eq!(verified.key.name, "release");
    assert_eq!(
        verified.fingerprint,
        hex::encode(release.primary_key.fingerprint().as_bytes())
    );
}

#[test]
fn an_openpgp_signature_by_a_signing_subkey_verifies() {
    let release = pgp_key(true);
    let keys = [pgp_listed("release", &release)];
    let subkey = &release.secret_subkeys[0].key;
    let signature = pgp_sign(subkey, COMMIT);
    let verified = verify_commit(COMMIT, Some(&signature), &keys).unwrap();
    assert_eq!(verified.key.name, "release");
    assert_eq!(
        verified.fingerprint,
        hex::encode(subkey.fingerprint().as_bytes())
    );
}

#[test]
fn an_altered_commit_fails_its_openpgp_signature() {
    let release = pgp_key(false);
    let keys = [pgp_listed("release", &release)];
    let signature = pgp_sign(&release.primary_key, COMMIT);
    let altered = [COMMIT, b"and a backdoor\n"].concat();
    assert_eq!(
        verify_commit(&altered, Some(&signature), &keys),
        Err(SignatureError::BadSignature {
            key: "release".into()
        })
    );
}

#[test]
fn an_openpgp_signature_by_an_unlisted_key_is_refused() {
    let release = pgp_key(false);
    let intruder = pgp_key(false);
    let keys = [pgp_listed("release", &release)];
    let signature = pgp_sign(&intruder.primary_key, COMMIT);
    let error = verify_commit(COMMIT, Some(&signature), &keys).unwrap_err();
    let SignatureError::UnknownKey { signer, allowed } = error else {
        panic!("expected an unknown key, got {error}");
    };
    assert_eq!(
        signer,
        format!(
            "OpenPGP key {}",
            hex::encode(intruder.primary_key.fingerprint().as_bytes())
        )
    );
    assert_eq!(allowed, "`release` (openpgp)");
}

#[test]
fn an_ssh_signature_does_not_match_openpgp_keys() {
    let keys = [pgp_listed("release", &pgp_key(false))];
    let signature = ssh_sign(&ssh_key(Algorithm::Ed25519), "git", COMMIT);
    assert!(matches!(
        verify_commit(COMMIT, Some(&signature), &keys),
        Err(SignatureError::UnknownKey { .. })
    ));
}

#[test]
fn check_key_accepts_real_keys_and_names_what_is_broken() {
    let ssh = listed("release", &ssh_key(Algorithm::Ed25519));
    let pgp = pgp_listed("release", &pgp_key(true));
    assert_eq!(check_key(&ssh.key), Ok(()));
    assert_eq!(check_key(&pgp.key), Ok(()));

    let SigningKeyMaterial::OpenPgp(block) = &pgp.key else {
        unreachable!()
    };
    // Armor intact, key data damaged in the middle.
    let lines: Vec<&str> = block.lines().collect();
    let middle = lines.len() / 2;
    let damaged: String = lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            if index == middle {
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n".to_owned()
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let error = check_key(&SigningKeyMaterial::OpenPgp(damaged)).unwrap_err();
    assert!(
        error.contains("does not parse") || error.contains("self-signatures"),
        "{error}"
    );
}

#[test]
fn lint_reports_a_key_the_verifier_could_not_read() {
    // The armor lines are right, the content is not a key: caught when flotilla.yaml is
    // parsed, not when the first commit is refused.
    let text = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: prod
    track: {branch: main}
    requireSignedBy:
      - name: release
        openpgp: |
          -----BEGIN PGP PUBLIC KEY BLOCK-----

          bm90IGEga2V5
          -----END PGP PUBLIC KEY BLOCK-----
bundles: []
";
    let errors = crate::spec::FleetSpec::parse(text, "flotilla.yaml", &crate::Limits::default())
        .unwrap_err();
    let shown = errors.to_string();
    assert!(shown.contains("requireSignedBy[0].openpgp"), "{shown}");
    assert!(shown.contains("does not parse"), "{shown}");
}
