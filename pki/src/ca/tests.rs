use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::*;
use crate::agent::AgentKey;
use crate::identity::{PeerCertificate, PeerIdentity};

const HOUR: Duration = Duration::from_secs(3600);

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn ca() -> GroupCa {
    GroupCa::generate("test", now()).unwrap()
}

fn der(pem: &str) -> Vec<u8> {
    ::pem::parse(pem).unwrap().contents().to_vec()
}

fn request(configure: impl FnOnce(&mut CertificateParams)) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    configure(&mut params);
    params.serialize_request(&key).unwrap().pem().unwrap()
}

#[test]
fn stored_form_round_trips_to_the_same_ca() {
    let ca = ca();
    let stored = ca.to_pem();
    let loaded = GroupCa::from_pem(&stored).unwrap();
    assert_eq!(loaded.certificate_pem(), ca.certificate_pem());
    assert_eq!(loaded.to_pem(), stored);
    assert_eq!(loaded.not_after(), now() + CA_LIFETIME);
    // The loaded CA signs certificates the original's trust root accepts: same key.
    let csr = AgentKey::generate().unwrap().csr_pem("c1").unwrap();
    let issued = loaded.sign_agent_csr(&csr, "c1", HOUR, now()).unwrap();
    let (leaf_der, root_der) = (der(&issued.certificate_pem), der(ca.certificate_pem()));
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();
    leaf.verify_signature(Some(root.public_key())).unwrap();
}

#[test]
fn stored_form_round_trips_through_the_state_codec() {
    let stored = ca().to_pem();
    let bytes = postcard::to_allocvec(&stored).unwrap();
    let decoded: CaPem = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(decoded, stored);
    GroupCa::from_pem(&decoded).unwrap();
}

#[test]
fn debug_output_never_shows_key_material() {
    let ca = ca();
    let stored = ca.to_pem();
    let node = ca
        .issue_node_certificate(1, &["127.0.0.1".into()], HOUR, now())
        .unwrap();
    let key_body = |pem: &str| pem.lines().nth(1).unwrap().to_owned();
    for (shown, key) in [
        (format!("{ca:?}"), key_body(&stored.private_key)),
        (format!("{stored:?}"), key_body(&stored.private_key)),
        (format!("{node:?}"), key_body(&node.private_key_pem)),
        (
            format!("{:?}", node.tls_identity().unwrap()),
            key_body(&node.private_key_pem),
        ),
    ] {
        assert!(!shown.contains(&key), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }
}

#[test]
fn a_key_from_another_ca_is_refused() {
    let mut stored = ca().to_pem();
    stored.private_key = ca().to_pem().private_key;
    assert!(matches!(
        GroupCa::from_pem(&stored),
        Err(CaError::KeyMismatch)
    ));
}

#[test]
fn a_leaf_certificate_is_not_accepted_as_ca() {
    let node = ca()
        .issue_node_certificate(1, &["localhost".into()], HOUR, now())
        .unwrap();
    let stored = CaPem {
        certificate: node.certificate_pem,
        private_key: node.private_key_pem,
    };
    assert!(matches!(GroupCa::from_pem(&stored), Err(CaError::NotACa)));
}

#[test]
fn garbage_is_refused_with_what_was_wrong() {
    let stored = CaPem {
        certificate: "not pem".into(),
        private_key: ca().to_pem().private_key,
    };
    let error = GroupCa::from_pem(&stored).unwrap_err();
    assert!(error.to_string().contains("CA certificate"), "{error}");
    let stored = CaPem {
        certificate: ca().to_pem().certificate,
        private_key: "not a key".into(),
    };
    let error = GroupCa::from_pem(&stored).unwrap_err();
    assert!(error.to_string().contains("private key"), "{error}");
}

#[test]
fn files_load_and_a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let stored = ca().to_pem();
    let (cert, key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
    std::fs::write(&cert, &stored.certificate).unwrap();
    std::fs::write(&key, &stored.private_key).unwrap();
    let loaded = GroupCa::from_files(&cert, &key).unwrap();
    assert_eq!(loaded.to_pem(), stored);

    let missing = dir.path().join("absent.key");
    let error = GroupCa::from_files(&cert, &missing).unwrap_err();
    assert!(error.to_string().contains("absent.key"), "{error}");
    assert!(error.to_string().contains("private key"), "{error}");
}

#[test]
fn node_certificate_names_node_addresses_and_both_tls_roles() {
    let node = ca()
        .issue_node_certificate(
            7,
            &["10.0.0.7".into(), "hub-7.flotilla.svc".into(), "::1".into()],
            HOUR,
            now(),
        )
        .unwrap();
    let bytes = der(&node.certificate_pem);
    let (_, cert) = X509Certificate::from_der(&bytes).unwrap();
    let names: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => format!("dns:{dns}"),
            GeneralName::URI(uri) => format!("uri:{uri}"),
            GeneralName::IPAddress(ip) => format!("ip:{}", ip.len()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "ip:4",
            "dns:hub-7.flotilla.svc",
            "ip:16",
            "uri:spiffe://flotilla/hub/7"
        ]
    );
    let usage = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(usage.server_auth && usage.client_auth);
    assert!(!cert.is_ca());
    let peer = PeerCertificate::from_der(&bytes).unwrap();
    assert_eq!(peer.identity, PeerIdentity::HubNode(7));
    assert_eq!(peer.serial, node.serial);
    assert_eq!(peer.not_after, node.not_after);
}

#[test]
fn node_certificate_refuses_a_name_that_is_no_host() {
    let error = ca()
        .issue_node_certificate(1, &["bad name\u{e9}".into()], HOUR, now())
        .unwrap_err();
    assert!(matches!(error, CaError::BadName(_)), "{error}");
}

#[test]
fn agent_certificate_names_the_cluster_for_client_auth_only() {
    let ca = ca();
    let csr = AgentKey::generate().unwrap().csr_pem("prod-eu-1").unwrap();
    let issued = ca.sign_agent_csr(&csr, "prod-eu-1", HOUR, now()).unwrap();
    let bytes = der(&issued.certificate_pem);
    let (_, cert) = X509Certificate::from_der(&bytes).unwrap();
    let usage = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(usage.client_auth && !usage.server_auth);
    assert!(!cert.is_ca());
    let common_name = cert.subject().iter_common_name().next().unwrap();
    assert_eq!(common_name.as_str().unwrap(), "prod-eu-1");

    let peer = PeerCertificate::from_der(&bytes).unwrap();
    assert_eq!(peer.identity, PeerIdentity::Cluster("prod-eu-1".into()));
    assert_eq!(peer.serial, issued.serial);
    assert_eq!(peer.not_before, now() - ISSUE_BACKDATE);
    assert_eq!(peer.not_after, now() + HOUR);
    assert_eq!(issued.not_before, peer.not_before);
    assert_eq!(issued.not_after, peer.not_after);
    assert_eq!(peer.issued_at(), now());
}

#[test]
fn every_certificate_gets_its_own_serial() {
    let ca = ca();
    let csr = AgentKey::generate().unwrap().csr_pem("c1").unwrap();
    let first = ca.sign_agent_csr(&csr, "c1", HOUR, now()).unwrap();
    let second = ca.sign_agent_csr(&csr, "c1", HOUR, now()).unwrap();
    assert_ne!(first.serial, second.serial);
    assert_eq!(first.serial.as_str().len(), 32);
}

#[test]
fn a_request_for_another_cluster_is_refused() {
    let csr = AgentKey::generate().unwrap().csr_pem("prod-eu-1").unwrap();
    let refused = ca().sign_agent_csr(&csr, "dev-1", HOUR, now()).unwrap_err();
    assert_eq!(
        refused,
        CsrRefused::WrongIdentity {
            requested: "cluster prod-eu-1".into(),
            cluster: "dev-1".into()
        }
    );
}

#[test]
fn a_request_whose_common_name_differs_from_its_uri_is_refused() {
    let csr = request(|params| {
        params
            .distinguished_name
            .push(DnType::CommonName, "prod-eu-1");
        params.subject_alt_names = vec![SanType::URI(
            "spiffe://flotilla/cluster/dev-1".try_into().unwrap(),
        )];
    });
    let refused = ca().sign_agent_csr(&csr, "dev-1", HOUR, now()).unwrap_err();
    assert!(
        matches!(&refused, CsrRefused::WrongIdentity { requested, .. } if requested == "prod-eu-1"),
        "{refused}"
    );
}

#[test]
fn a_request_for_a_hub_node_identity_is_refused() {
    let csr = request(|params| {
        params.distinguished_name.push(DnType::CommonName, "c1");
        params.subject_alt_names =
            vec![SanType::URI("spiffe://flotilla/hub/1".try_into().unwrap())];
    });
    let refused = ca().sign_agent_csr(&csr, "c1", HOUR, now()).unwrap_err();
    assert!(
        matches!(&refused, CsrRefused::WrongIdentity { requested, .. } if requested == "hub node 1"),
        "{refused}"
    );
}

#[test]
fn a_request_for_host_names_is_refused() {
    let csr = request(|params| {
        params.distinguished_name.push(DnType::CommonName, "c1");
        params.subject_alt_names = vec![SanType::DnsName("hub.example.com".try_into().unwrap())];
    });
    let refused = ca().sign_agent_csr(&csr, "c1", HOUR, now()).unwrap_err();
    assert_eq!(refused, CsrRefused::ForbiddenName("hub.example.com".into()));
}

#[test]
fn a_request_to_be_a_ca_is_refused() {
    let csr = request(|params| {
        params.distinguished_name.push(DnType::CommonName, "c1");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    });
    let refused = ca().sign_agent_csr(&csr, "c1", HOUR, now()).unwrap_err();
    assert_eq!(refused, CsrRefused::WantsCa);
}

#[test]
fn a_request_naming_nobody_is_refused() {
    let csr = request(|params| {
        params
            .distinguished_name
            .push(DnType::OrganizationName, "acme");
    });
    let refused = ca().sign_agent_csr(&csr, "c1", HOUR, now()).unwrap_err();
    assert_eq!(refused, CsrRefused::NoIdentity("c1".into()));
}

#[test]
fn an_altered_request_is_refused_for_its_signature() {
    let csr = AgentKey::generate().unwrap().csr_pem("prod-eu-1").unwrap();
    let mut bytes = der(&csr);
    // Rename the requested cluster after signing: the self-signature no longer matches.
    let at = bytes
        .windows(9)
        .position(|window| window == b"prod-eu-1")
        .unwrap();
    bytes[at..at + 9].copy_from_slice(b"prod-eu-2");
    let forged = ::pem::encode(&::pem::Pem::new("CERTIFICATE REQUEST", bytes));
    let refused = ca()
        .sign_agent_csr(&forged, "prod-eu-2", HOUR, now())
        .unwrap_err();
    assert_eq!(refused, CsrRefused::BadSignature);
}

#[test]
fn garbage_requests_and_bad_names_are_refused() {
    let refused = ca().sign_agent_csr("hello", "c1", HOUR, now()).unwrap_err();
    assert!(matches!(refused, CsrRefused::Malformed(_)), "{refused}");
    let csr = AgentKey::generate().unwrap().csr_pem("c1").unwrap();
    let refused = ca().sign_agent_csr(&csr, "C_1", HOUR, now()).unwrap_err();
    assert!(
        matches!(refused, CsrRefused::BadClusterName(_)),
        "{refused}"
    );
    let refused = ca()
        .sign_agent_csr(&csr, "c1", Duration::ZERO, now())
        .unwrap_err();
    assert!(
        refused.to_string().contains("longer than zero"),
        "{refused}"
    );
}

#[test]
fn a_leaf_never_outlives_its_ca() {
    let ca = ca();
    let csr = AgentKey::generate().unwrap().csr_pem("c1").unwrap();
    let issued = ca
        .sign_agent_csr(&csr, "c1", CA_LIFETIME * 2, now())
        .unwrap();
    assert_eq!(issued.not_after, ca.not_after());
}
