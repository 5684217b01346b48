//! `ResetClusterIdentity` (`flotilla cluster reset-identity NAME [--uid UID]`): an admin
//! forgets the Kubernetes cluster bound to a name, for a cluster that was really rebuilt, so
//! its agent is let in again (see `state::identity`).

use flotilla_proto::v1::{AdminClusterIdentity, AdminResetClusterIdentityRequest};
use tonic::Status;

use super::caller::Caller;
use super::convert;
use super::propose_status;
use crate::context::HubContext;
use crate::state::Command;
use crate::state::fleet::Cluster;
use crate::state::identity::check_uid;
use crate::status::IdentityConflictStatus;

/// What the audit trail says the reset changed: the identity bound before, and the conflict.
pub(super) fn detail(hub: &HubContext, request: &AdminResetClusterIdentityRequest) -> String {
    let state = hub.node.state();
    let Some(cluster) = state.clusters.get(&request.name) else {
        return String::new();
    };
    let before = cluster
        .identity
        .as_ref()
        .map_or("none".to_owned(), |b| b.kube_system_uid.clone());
    let conflict = cluster
        .identity_conflict
        .as_ref()
        .map(|c| format!(" (refused: {})", c.kube_system_uid))
        .unwrap_or_default();
    let after = match request.kube_system_uid.as_str() {
        "" => "the next agent's",
        uid => uid,
    };
    format!("kube-system UID {before}{conflict} -> {after}")
}

/// Resets the identity bound to a registered cluster's name, or binds the UID given.
pub(super) async fn reset(
    hub: &HubContext,
    caller: &Caller,
    request: AdminResetClusterIdentityRequest,
) -> Result<AdminClusterIdentity, Status> {
    let name = request.name;
    if !hub.node.state().clusters.contains_key(&name) {
        return Err(Status::not_found(format!(
            "cluster `{name}` is not registered; `flotilla clusters` lists the registered clusters"
        )));
    }
    let uid = Some(request.kube_system_uid).filter(|uid| !uid.is_empty());
    if let Some(uid) = &uid {
        check_uid(uid).map_err(|e| {
            Status::invalid_argument(format!(
                "{e}; give the UID `kubectl get namespace kube-system -o \
                 jsonpath='{{.metadata.uid}}'` prints on the rebuilt cluster"
            ))
        })?;
    }
    let command = Command::ResetClusterIdentity {
        cluster: name.clone(),
        kube_system_uid: uid,
        by: caller.name.clone(),
        at: hub.clock.now(),
    };
    hub.node.propose(&command).await.map_err(propose_status)?;
    let state = hub.node.state();
    let cluster = state
        .clusters
        .get(&name)
        .ok_or_else(|| Status::not_found(format!("cluster `{name}` was removed meanwhile")))?;
    tracing::info!(cluster = %name, by = %caller.name, "cluster identity reset");
    Ok(answer(&name, cluster))
}

/// A cluster's identity as the API shows it.
fn answer(name: &str, cluster: &Cluster) -> AdminClusterIdentity {
    let bound = cluster.identity.as_ref();
    AdminClusterIdentity {
        name: name.to_owned(),
        kube_system_uid: bound.map(|b| b.kube_system_uid.clone()).unwrap_or_default(),
        bound_at_ms: bound.map_or(0, |b| b.bound_at.0 as i64),
        conflict: cluster.identity_conflict.as_ref().map(|conflict| {
            let uid = bound.map(|b| b.kube_system_uid.as_str());
            convert::identity_conflict(IdentityConflictStatus::of(name, uid, conflict))
        }),
    }
}
