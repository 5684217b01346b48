use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair, SanType};

use super::*;

fn self_signed(uris: &[&str]) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    for uri in uris {
        params
            .subject_alt_names
            .push(SanType::URI((*uri).try_into().unwrap()));
    }
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn identities_round_trip_through_their_uris() {
    for identity in [
        PeerIdentity::Cluster("prod-eu-1".into()),
        PeerIdentity::HubNode(42),
    ] {
        assert_eq!(PeerIdentity::from_uri(&identity.uri()), Ok(Some(identity)));
    }
    assert_eq!(
        PeerIdentity::Cluster("c1".into()).uri(),
        "spiffe://flotilla/cluster/c1"
    );
    assert_eq!(PeerIdentity::HubNode(3).uri(), "spiffe://flotilla/hub/3");
}

#[test]
fn foreign_uris_are_ignored_and_malformed_flotilla_uris_refused() {
    assert_eq!(PeerIdentity::from_uri("spiffe://example.org/x"), Ok(None));
    assert_eq!(PeerIdentity::from_uri("https://flotilla.dev"), Ok(None));
    for bad in [
        "spiffe://flotilla/hub/+1",
        "spiffe://flotilla/hub/",
        "spiffe://flotilla/hub/99999999999999999999999",
        "spiffe://flotilla/admin/root",
    ] {
        assert!(
            matches!(
                PeerIdentity::from_uri(bad),
                Err(IdentityError::Unrecognised(_))
            ),
            "{bad}"
        );
    }
    for bad in [
        "spiffe://flotilla/cluster/",
        "spiffe://flotilla/cluster/Prod",
        "spiffe://flotilla/cluster/a/b",
        "spiffe://flotilla/cluster/a%2Fb",
    ] {
        assert!(
            matches!(
                PeerIdentity::from_uri(bad),
                Err(IdentityError::BadClusterName(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn serial_hex_drops_leading_zero_bytes() {
    assert_eq!(Serial::from_bytes(&[0, 0, 0x1a, 0x02]).as_str(), "1a02");
    assert_eq!(Serial::from_bytes(&[0, 0]).as_str(), "00");
    assert_eq!(Serial::from_bytes(&[0x7f]).to_string(), "7f");
}

#[test]
fn a_connection_without_certificates_has_no_identity() {
    assert_eq!(peer_certificate(None), Err(IdentityError::NoCertificate));
    assert_eq!(
        peer_certificate(Some(&[])),
        Err(IdentityError::NoCertificate)
    );
}

#[test]
fn a_certificate_without_flotilla_identity_is_refused() {
    let der = self_signed(&["spiffe://example.org/workload"]);
    assert_eq!(PeerCertificate::from_der(&der), Err(IdentityError::Missing));
}

#[test]
fn a_certificate_with_two_identities_is_refused() {
    let der = self_signed(&["spiffe://flotilla/cluster/a", "spiffe://flotilla/cluster/b"]);
    assert_eq!(
        PeerCertificate::from_der(&der),
        Err(IdentityError::Ambiguous(2))
    );
}

#[test]
fn identity_is_read_from_the_first_certificate_of_the_chain() {
    let leaf = CertificateDer::from(self_signed(&["spiffe://flotilla/cluster/edge-1"]));
    let other = CertificateDer::from(self_signed(&["spiffe://flotilla/hub/1"]));
    let peer = peer_certificate(Some(&[leaf, other])).unwrap();
    assert_eq!(peer.identity, PeerIdentity::Cluster("edge-1".into()));
    assert!(peer.not_after > SystemTime::now() + Duration::from_secs(3600));
}

#[test]
fn garbage_is_malformed() {
    assert!(matches!(
        PeerCertificate::from_der(b"\x30\x03abc"),
        Err(IdentityError::Malformed(_))
    ));
}
