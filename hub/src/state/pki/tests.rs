use flotilla_pki::Serial;

use crate::state::{Command, CommandError, State, Timestamp};

fn registered(name: &str) -> State {
    let mut state = State::default();
    state
        .apply(&Command::RegisterCluster {
            name: name.into(),
            labels: Default::default(),
            at: Timestamp(1),
        })
        .expect("applies");
    state
}

fn record(
    state: &mut State,
    cluster: &str,
    serial: &str,
    not_after: u64,
    at: u64,
) -> Result<(), CommandError> {
    state.apply(&Command::RecordCertificate {
        cluster: cluster.into(),
        serial: Serial::from_bytes(&hex::decode(serial).expect("hex serial")),
        not_after: Timestamp(not_after),
        at: Timestamp(at),
    })
}

#[test]
fn a_certificate_for_an_unknown_cluster_is_refused_and_changes_nothing() {
    let mut state = registered("edge-1");
    let before = state.clone();
    let refused = record(&mut state, "edge-2", "01", 100, 10);
    assert_eq!(refused, Err(CommandError::UnknownCluster("edge-2".into())));
    assert_eq!(state, before);
}

#[test]
fn removing_a_cluster_revokes_its_unexpired_certificates_only() {
    let mut state = registered("edge-1");
    state
        .apply(&Command::RegisterCluster {
            name: "edge-2".into(),
            labels: Default::default(),
            at: Timestamp(1),
        })
        .expect("applies");
    record(&mut state, "edge-1", "01", 100, 10).expect("recorded");
    record(&mut state, "edge-1", "02", 1_000, 20).expect("recorded");
    record(&mut state, "edge-2", "03", 1_000, 20).expect("recorded");
    state
        .apply(&Command::RemoveCluster {
            name: "edge-1".into(),
            at: Timestamp(500),
        })
        .expect("applies");
    let revoked: Vec<&str> = state.pki.revoked.iter().map(Serial::as_str).collect();
    // 01 expired at 100: forgotten, since every handshake refuses it anyway.
    assert_eq!(revoked, ["02"]);
    assert!(
        !state
            .pki
            .certificates
            .contains_key(&Serial::from_bytes(&[1]))
    );
    assert!(
        state
            .pki
            .certificates
            .contains_key(&Serial::from_bytes(&[3]))
    );
}

#[test]
fn revocations_are_forgotten_once_the_certificate_expires() {
    let mut state = registered("edge-1");
    record(&mut state, "edge-1", "02", 1_000, 20).expect("recorded");
    state
        .apply(&Command::RemoveCluster {
            name: "edge-1".into(),
            at: Timestamp(500),
        })
        .expect("applies");
    assert_eq!(state.pki.revoked.len(), 1);
    state
        .apply(&Command::RegisterCluster {
            name: "edge-1".into(),
            labels: Default::default(),
            at: Timestamp(600),
        })
        .expect("applies");
    record(&mut state, "edge-1", "04", 3_000, 1_500).expect("recorded");
    assert!(state.pki.revoked.is_empty());
    assert_eq!(state.pki.certificates.len(), 1);
}
