//! Which Kubernetes cluster a registered name stands for: the UID of that cluster's
//! `kube-system` namespace, bound from the first agent hello or registration that reports one.
//! An agent pointed at another cluster under the name — copied credentials, a wrong kubeconfig
//! context — is refused from then on, instead of applying the name's bundles to the wrong
//! cluster and fighting the rightful agent over the same objects.
//!
//! Binding is a command, so every node refuses the same identities, and of two agents racing
//! to bind a fresh name the first committed wins on every replica. Refused identities are
//! recorded as the cluster's conflict for operators to see (`flotilla status`); the proposer
//! writes one at most once a minute per cluster (`sync::identity`). Only an admin's reset
//! forgets a binding; removing the cluster forgets it with the rest of the cluster.

use serde::{Deserialize, Serialize};

use super::audit::{AuditClass, AuditEvent, Outcome};
use super::{CommandError, State, Timestamp};

#[cfg(test)]
mod tests;

/// Longest kube-system UID accepted (Kubernetes UIDs are 36-character UUIDs).
pub const MAX_UID_BYTES: usize = 64;

/// The Kubernetes cluster a name is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundIdentity {
    /// `metadata.uid` of the cluster's `kube-system` namespace.
    pub kube_system_uid: String,
    /// When it was bound.
    pub bound_at: Timestamp,
    /// Who bound it: the agent whose hello did, or the admin who reset it to this UID.
    pub bound_by: String,
}

/// Agents of another cluster were refused for a name bound to a different one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityConflict {
    /// The kube-system UID they reported (the latest, if several).
    pub kube_system_uid: String,
    /// When the first refusal of that UID was recorded.
    pub first_at: Timestamp,
    /// When the latest was recorded.
    pub last_at: Timestamp,
}

/// Whether `uid` can be a kube-system UID: 1 to [`MAX_UID_BYTES`] ASCII letters, digits and
/// dashes. Checked before anything is proposed and again in apply, so an agent's text never
/// reaches a log line, a status or the replicated state unchecked.
pub fn check_uid(uid: &str) -> Result<(), String> {
    if uid.is_empty() {
        return Err("the kube-system UID is empty".to_owned());
    }
    if uid.len() > MAX_UID_BYTES {
        return Err(format!(
            "the kube-system UID is {} bytes, longer than {MAX_UID_BYTES}",
            uid.len()
        ));
    }
    if !uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(
            "the kube-system UID holds characters other than letters, digits and '-'".to_owned(),
        );
    }
    Ok(())
}

/// Binds `cluster` to `uid` unless it is bound already: to the same UID it is a no-op, to
/// another a [`CommandError::IdentityConflict`]. A new binding is audited as the state
/// machine's own decision.
pub(super) fn bind(
    state: &mut State,
    cluster: &str,
    uid: &str,
    by: &str,
    at: Timestamp,
) -> Result<(), CommandError> {
    check_uid(uid).map_err(CommandError::Invalid)?;
    let registered = state
        .clusters
        .get_mut(cluster)
        .ok_or_else(|| CommandError::UnknownCluster(cluster.to_owned()))?;
    match &registered.identity {
        Some(bound) if bound.kube_system_uid == uid => return Ok(()),
        Some(bound) => {
            return Err(CommandError::IdentityConflict {
                cluster: cluster.to_owned(),
                bound: bound.kube_system_uid.clone(),
                offered: uid.to_owned(),
            });
        }
        None => {}
    }
    registered.identity = Some(BoundIdentity {
        kube_system_uid: uid.to_owned(),
        bound_at: at,
        bound_by: by.to_owned(),
    });
    state.audit.push(AuditEvent {
        actor: by.to_owned(),
        action: "cluster.identity.bind".to_owned(),
        target: format!("cluster/{cluster}"),
        detail: format!("kube-system UID {uid}"),
        at,
        outcome: Outcome::Succeeded,
        class: AuditClass::Privileged,
        count: 1,
    });
    Ok(())
}

/// Records that an agent reporting `uid` was refused for `cluster`. Nothing is recorded when
/// the name is unbound or bound to `uid` (a reset or a binding got there first).
pub(super) fn record_conflict(
    state: &mut State,
    cluster: &str,
    uid: &str,
    at: Timestamp,
) -> Result<(), CommandError> {
    check_uid(uid).map_err(CommandError::Invalid)?;
    let registered = state
        .clusters
        .get_mut(cluster)
        .ok_or_else(|| CommandError::UnknownCluster(cluster.to_owned()))?;
    if registered
        .identity
        .as_ref()
        .is_none_or(|bound| bound.kube_system_uid == uid)
    {
        return Ok(());
    }
    match &mut registered.identity_conflict {
        Some(conflict) if conflict.kube_system_uid == uid => {
            conflict.last_at = conflict.last_at.max(at);
        }
        conflict => {
            *conflict = Some(IdentityConflict {
                kube_system_uid: uid.to_owned(),
                first_at: at,
                last_at: at,
            });
        }
    }
    Ok(())
}

/// Forgets `cluster`'s binding and conflict; with `uid`, binds that one instead (by `by`).
pub(super) fn reset(
    state: &mut State,
    cluster: &str,
    uid: Option<&str>,
    by: &str,
    at: Timestamp,
) -> Result<(), CommandError> {
    if let Some(uid) = uid {
        check_uid(uid).map_err(CommandError::Invalid)?;
    }
    let registered = state
        .clusters
        .get_mut(cluster)
        .ok_or_else(|| CommandError::UnknownCluster(cluster.to_owned()))?;
    registered.identity_conflict = None;
    registered.identity = uid.map(|uid| BoundIdentity {
        kube_system_uid: uid.to_owned(),
        bound_at: at,
        bound_by: by.to_owned(),
    });
    Ok(())
}
