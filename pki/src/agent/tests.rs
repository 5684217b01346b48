use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use super::*;
use crate::ca::GroupCa;

const HOUR: Duration = Duration::from_secs(3600);

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

fn credentials(cluster: &str) -> AgentCredentials {
    let now = SystemTime::now();
    let ca = GroupCa::generate("test", now).unwrap();
    let key = AgentKey::generate().unwrap();
    let issued = ca
        .sign_agent_csr(&key.csr_pem(cluster).unwrap(), cluster, HOUR, now)
        .unwrap();
    AgentCredentials {
        private_key_pem: key.private_key_pem(),
        certificate_pem: issued.certificate_pem,
        ca_pem: ca.certificate_pem().to_owned(),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn renewal_is_due_two_thirds_into_the_lifetime() {
    let (from, to) = (at(0), at(3_000));
    assert_eq!(renew_at(from, to), at(2_000));
    assert!(!renewal_due(from, to, at(1_999)));
    assert!(renewal_due(from, to, at(2_000)));
    assert!(renewal_due(from, to, at(5_000)));
}

#[test]
fn a_certificate_with_no_lifetime_is_due_at_once() {
    assert!(renewal_due(at(100), at(50), at(100)));
}

#[test]
fn the_request_names_the_cluster() {
    let key = AgentKey::generate().unwrap();
    let csr = key.csr_pem("edge-7").unwrap();
    assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    let ca = GroupCa::generate("test", SystemTime::now()).unwrap();
    let issued = ca.sign_agent_csr(&csr, "edge-7", HOUR, SystemTime::now());
    assert!(issued.is_ok(), "{issued:?}");
    assert!(matches!(
        key.csr_pem("Edge_7"),
        Err(CredentialError::Identity(_))
    ));
    assert_eq!(format!("{key:?}"), "AgentKey(<redacted>)");
}

#[test]
fn credentials_round_trip_through_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = CredentialStore::in_dir(&state);
    assert!(store.load().unwrap().is_none());

    let saved = credentials("c1");
    store.save(&saved).unwrap();
    assert_eq!(mode(store.path()), 0o600);
    assert_eq!(mode(&state), 0o700);
    let loaded = store.load().unwrap().unwrap();
    assert_eq!(loaded, saved);
    assert_eq!(
        loaded.certificate().unwrap().identity,
        PeerIdentity::Cluster("c1".into())
    );
    loaded.tls_identity().unwrap();
    loaded.trust_root().unwrap();
}

#[test]
fn saving_replaces_the_file_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::in_dir(dir.path());
    store.save(&credentials("c1")).unwrap();
    let renewed = credentials("c1");
    store.save(&renewed).unwrap();
    assert_eq!(store.load().unwrap().unwrap(), renewed);
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(entries, [CREDENTIALS_FILE]);
}

#[test]
fn a_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::in_dir(dir.path());
    store.save(&credentials("c1")).unwrap();
    std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = store.load().unwrap_err();
    assert!(
        matches!(error, CredentialError::Exposed { mode: 0o644, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("chmod 600"), "{error}");
}

#[test]
fn a_key_that_does_not_fit_the_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::in_dir(dir.path());
    let mut mixed = credentials("c1");
    mixed.private_key_pem = AgentKey::generate().unwrap().private_key_pem();
    let error = store.save(&mixed).unwrap_err();
    assert!(error.to_string().contains("does not belong"), "{error}");
    assert!(!store.path().exists());
}

#[test]
fn a_damaged_file_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::in_dir(dir.path());
    let good = credentials("c1");
    for text in [
        "garbage".to_owned(),
        format!("{}{}", good.private_key_pem, good.certificate_pem),
        format!(
            "{}{}{}",
            good.certificate_pem, good.private_key_pem, good.ca_pem
        ),
        good.private_key_pem.replace("-----END", "-----XEND"),
    ] {
        std::fs::write(store.path(), &text).unwrap();
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        let error = store.load().unwrap_err();
        assert!(
            matches!(error, CredentialError::Malformed { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("register again"), "{error}");
    }
}

#[test]
fn debug_output_never_shows_the_key() {
    let credentials = credentials("c1");
    let shown = format!("{credentials:?}");
    let key_line = credentials.private_key_pem.lines().nth(1).unwrap();
    assert!(!shown.contains(key_line), "{shown}");
}
