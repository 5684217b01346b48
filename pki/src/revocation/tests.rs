use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::*;
use crate::identity::ISSUE_BACKDATE;

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

/// A certificate issued at `issued` (so backdated by a minute), as the CA writes them.
fn agent(cluster: &str, issued: u64) -> PeerCertificate {
    PeerCertificate {
        identity: PeerIdentity::Cluster(cluster.into()),
        serial: Serial::from_bytes(&[0x11, 0x22]),
        not_before: at(issued) - ISSUE_BACKDATE,
        not_after: at(issued + 86_400),
    }
}

#[test]
fn a_registered_clusters_certificate_stands() {
    let peer = agent("c1", 1_000);
    assert_eq!(
        check_agent_certificate(&peer, Some(at(900)), &BTreeSet::new()),
        Ok("c1")
    );
}

#[test]
fn a_certificate_issued_in_the_second_of_registration_stands() {
    // The agent registered 30 s after the cluster was added: its not_before (backdated)
    // precedes the registration, its issue time does not.
    let peer = agent("c1", 1_030);
    assert_eq!(
        check_agent_certificate(&peer, Some(at(1_000)), &BTreeSet::new()),
        Ok("c1")
    );
    let registered = at(1_030) + Duration::from_millis(400);
    assert_eq!(
        check_agent_certificate(&peer, Some(registered), &BTreeSet::new()),
        Ok("c1")
    );
}

#[test]
fn a_removed_clusters_certificate_is_refused() {
    let peer = agent("c1", 1_000);
    assert_eq!(
        check_agent_certificate(&peer, None, &BTreeSet::new()),
        Err(Refused::ClusterRemoved("c1".into()))
    );
}

#[test]
fn a_certificate_from_before_re_registration_is_refused() {
    // c1 was removed and added again at 5 000; the old agent's certificate is still unexpired.
    let peer = agent("c1", 1_000);
    assert_eq!(
        check_agent_certificate(&peer, Some(at(5_000)), &BTreeSet::new()),
        Err(Refused::IssuedBeforeRegistration("c1".into()))
    );
}

#[test]
fn a_revoked_serial_is_refused() {
    let peer = agent("c1", 1_000);
    let revoked = BTreeSet::from([peer.serial.clone()]);
    assert_eq!(
        check_agent_certificate(&peer, Some(at(900)), &revoked),
        Err(Refused::SerialRevoked {
            cluster: "c1".into(),
            serial: peer.serial.clone()
        })
    );
}

#[test]
fn a_hub_nodes_certificate_is_not_an_agent() {
    let mut peer = agent("c1", 1_000);
    peer.identity = PeerIdentity::HubNode(2);
    assert_eq!(
        check_agent_certificate(&peer, Some(at(900)), &BTreeSet::new()),
        Err(Refused::NotAnAgent(PeerIdentity::HubNode(2)))
    );
}
