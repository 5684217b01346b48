use crate::state::tests::{apply_err, apply_ok, t};
use crate::state::{Command, CommandError, State};

const UID_A: &str = "6c1f0b2e-9a57-4d2e-8f0a-3b1d2c4e5f60";
const UID_B: &str = "0d9e8c7b-6a5f-4e3d-9c2b-1a0f9e8d7c6b";

fn with_cluster(name: &str) -> State {
    let mut state = State::default();
    apply_ok(
        &mut state,
        Command::RegisterCluster {
            name: name.into(),
            labels: Default::default(),
            at: t(1),
        },
    );
    state
}

fn bind(cluster: &str, uid: &str, at: u64) -> Command {
    Command::BindClusterIdentity {
        cluster: cluster.into(),
        kube_system_uid: uid.into(),
        by: format!("agent:cluster {cluster}"),
        at: t(at),
    }
}

fn conflict(cluster: &str, uid: &str, at: u64) -> Command {
    Command::RecordIdentityConflict {
        cluster: cluster.into(),
        kube_system_uid: uid.into(),
        at: t(at),
    }
}

#[test]
fn the_first_identity_binds_and_is_audited_once() {
    let mut state = with_cluster("dev-1");
    apply_ok(&mut state, bind("dev-1", UID_A, 5));
    let bound = state.clusters["dev-1"].identity.clone().expect("bound");
    assert_eq!(bound.kube_system_uid, UID_A);
    assert_eq!(bound.bound_at, t(5));
    // The same identity again changes nothing and audits nothing more.
    apply_ok(&mut state, bind("dev-1", UID_A, 9));
    assert_eq!(state.clusters["dev-1"].identity, Some(bound));
    let binds: Vec<_> = state
        .audit
        .since(0)
        .filter(|(_, e)| e.action == "cluster.identity.bind")
        .map(|(_, e)| (e.target.clone(), e.detail.clone()))
        .collect();
    assert_eq!(
        binds,
        [(
            "cluster/dev-1".to_owned(),
            format!("kube-system UID {UID_A}")
        )]
    );
}

#[test]
fn another_identity_for_a_bound_name_is_refused_naming_both() {
    let mut state = with_cluster("dev-1");
    apply_ok(&mut state, bind("dev-1", UID_A, 5));
    let error = apply_err(&mut state, bind("dev-1", UID_B, 6));
    assert_eq!(
        error,
        CommandError::IdentityConflict {
            cluster: "dev-1".into(),
            bound: UID_A.into(),
            offered: UID_B.into(),
        }
    );
    let message = error.to_string();
    assert!(
        message.contains(UID_A) && message.contains(UID_B),
        "{message}"
    );
}

#[test]
fn malformed_uids_and_unknown_clusters_are_refused() {
    let mut state = with_cluster("dev-1");
    for uid in ["", "has space", "quote\"d", &"a".repeat(65)] {
        let error = apply_err(&mut state, bind("dev-1", uid, 5));
        assert!(
            matches!(error, CommandError::Invalid(_)),
            "{uid:?}: {error}"
        );
    }
    let error = apply_err(&mut state, bind("nope", UID_A, 5));
    assert_eq!(error, CommandError::UnknownCluster("nope".into()));
}

#[test]
fn conflicts_keep_their_first_time_and_move_their_last() {
    let mut state = with_cluster("dev-1");
    // Unbound: nothing to conflict with.
    apply_ok(&mut state, conflict("dev-1", UID_B, 4));
    assert_eq!(state.clusters["dev-1"].identity_conflict, None);
    apply_ok(&mut state, bind("dev-1", UID_A, 5));
    // The bound identity itself is no conflict.
    apply_ok(&mut state, conflict("dev-1", UID_A, 6));
    assert_eq!(state.clusters["dev-1"].identity_conflict, None);
    apply_ok(&mut state, conflict("dev-1", UID_B, 7));
    apply_ok(&mut state, conflict("dev-1", UID_B, 70_000));
    let recorded = state.clusters["dev-1"]
        .identity_conflict
        .clone()
        .expect("a conflict");
    assert_eq!(
        (
            recorded.kube_system_uid.as_str(),
            recorded.first_at,
            recorded.last_at
        ),
        (UID_B, t(7), t(70_000))
    );
}

#[test]
fn a_reset_forgets_binding_and_conflict_or_binds_the_uid_given() {
    let mut state = with_cluster("dev-1");
    apply_ok(&mut state, bind("dev-1", UID_A, 5));
    apply_ok(&mut state, conflict("dev-1", UID_B, 7));
    apply_ok(
        &mut state,
        Command::ResetClusterIdentity {
            cluster: "dev-1".into(),
            kube_system_uid: None,
            by: "token:ops".into(),
            at: t(8),
        },
    );
    assert_eq!(state.clusters["dev-1"].identity, None);
    assert_eq!(state.clusters["dev-1"].identity_conflict, None);
    // The rebuilt cluster's agent binds its own.
    apply_ok(&mut state, bind("dev-1", UID_B, 9));
    assert_eq!(
        state.clusters["dev-1"]
            .identity
            .as_ref()
            .map(|b| b.kube_system_uid.as_str()),
        Some(UID_B)
    );
    apply_ok(
        &mut state,
        Command::ResetClusterIdentity {
            cluster: "dev-1".into(),
            kube_system_uid: Some(UID_A.into()),
            by: "token:ops".into(),
            at: t(10),
        },
    );
    let bound = state.clusters["dev-1"].identity.clone().expect("bound");
    assert_eq!(
        (bound.kube_system_uid.as_str(), bound.bound_by.as_str()),
        (UID_A, "token:ops")
    );
}

#[test]
fn a_cluster_removed_and_added_again_is_unbound() {
    let mut state = with_cluster("dev-1");
    apply_ok(&mut state, bind("dev-1", UID_A, 5));
    apply_ok(
        &mut state,
        Command::RemoveCluster {
            name: "dev-1".into(),
            at: t(6),
        },
    );
    apply_ok(
        &mut state,
        Command::RegisterCluster {
            name: "dev-1".into(),
            labels: Default::default(),
            at: t(7),
        },
    );
    assert_eq!(state.clusters["dev-1"].identity, None);
    apply_ok(&mut state, bind("dev-1", UID_B, 8));
}
