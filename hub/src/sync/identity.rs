//! The cluster an agent talks to, checked against the one bound to the cluster's name (see
//! `state::identity`) at every hello and registration.
//!
//! | reported                          | name unbound                 | bound to the same | bound to another |
//! |-----------------------------------|------------------------------|-------------------|------------------|
//! | a kube-system UID                 | bound (hello) or let through (registration) | served | refused, audited, counted, recorded as the cluster's conflict |
//! | unreadable (API server down)      | hello: refused for now (`UNAVAILABLE`); registration: let through, binds nothing | same | same |
//! | nothing (an agent predating this) | served, binds nothing        | refused           | refused          |
//!
//! An unreadable identity is never taken for a match: an agent whose cluster cannot be reached
//! can apply nothing anyway, and serving it could hand a name's bundles to whatever cluster it
//! reaches once the API server answers. Registration binds nothing itself, but refuses before
//! the bootstrap token is spent; the registered agent binds at its first hello.

use std::time::Duration;

use flotilla_proto::v1::ClusterIdentity;
use tonic::Status;

use super::Shared;
use super::refusal::{Reason, Refusal, refuse};
use crate::node::ProposeError;
use crate::state::identity::check_uid;
use crate::state::{Command, CommandError};

/// A conflict already recorded for the same UID is recorded again at most this often, so an
/// agent retrying for ever costs one raft write a minute.
const CONFLICT_RECORD_INTERVAL: Duration = Duration::from_secs(60);

/// Longest reason for an unreadable identity quoted back (the agent's text).
const MAX_REASON_CHARS: usize = 300;

/// What the call is: a hello binds an unbound name; a registration only checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    /// A `Sync` hello.
    Hello,
    /// A `Register` call.
    Register,
}

impl Call {
    fn action(self) -> &'static str {
        match self {
            Call::Hello => "agent.sync",
            Call::Register => "agent.register",
        }
    }
}

/// Who is asking, for what cluster.
pub(super) struct Caller<'a> {
    /// The cluster the call acts for (from the certificate or the bootstrap token).
    pub(super) cluster: &'a str,
    /// `agent:cluster NAME`.
    pub(super) actor: &'a str,
}

/// What the agent reported, checked.
enum Reported<'a> {
    /// An agent that predates identity binding.
    Nothing,
    /// It could not read it, and why.
    Unreadable(String),
    /// A kube-system UID.
    Uid(&'a str),
}

fn reported(identity: Option<&ClusterIdentity>) -> Result<Reported<'_>, Status> {
    let Some(identity) = identity else {
        return Ok(Reported::Nothing);
    };
    if identity.kube_system_uid.is_empty() {
        let why: String = identity
            .unreadable
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_REASON_CHARS)
            .collect();
        return Ok(Reported::Unreadable(why));
    }
    check_uid(&identity.kube_system_uid)
        .map_err(|e| Status::invalid_argument(format!("cluster identity refused: {e}")))?;
    Ok(Reported::Uid(&identity.kube_system_uid))
}

/// Lets the call through, binding the name to the reported identity on a hello when it is
/// unbound, or refuses it (see the module).
pub(super) async fn admit(
    shared: &Shared,
    call: Call,
    caller: &Caller<'_>,
    identity: Option<&ClusterIdentity>,
) -> Result<(), Status> {
    let reported = reported(identity)?;
    let bound = shared
        .node
        .state()
        .clusters
        .get(caller.cluster)
        .and_then(|c| c.identity.clone());
    match (reported, bound) {
        (Reported::Uid(uid), Some(bound)) if bound.kube_system_uid == uid => Ok(()),
        (Reported::Uid(uid), Some(bound)) => {
            Err(conflict(shared, call, caller, &bound.kube_system_uid, uid).await)
        }
        (Reported::Uid(_), None) if call == Call::Register => Ok(()),
        (Reported::Uid(uid), None) => bind(shared, call, caller, uid).await,
        (Reported::Unreadable(_), _) if call == Call::Register => Ok(()),
        (Reported::Unreadable(why), _) => {
            let status = Status::unavailable(format!(
                "the agent cannot read the identity of the cluster it talks to (the UID of its \
                 kube-system namespace): {why}; it is served once it can, so check that it \
                 reaches its Kubernetes API server and may get namespaces"
            ));
            Err(refuse(
                shared,
                refusal(Reason::IdentityUnknown, call, caller),
                status,
            )
            .await)
        }
        (Reported::Nothing, None) => Ok(()),
        (Reported::Nothing, Some(bound)) => {
            let status = Status::permission_denied(format!(
                "cluster '{}' is bound to the Kubernetes cluster whose kube-system namespace has \
                 UID {}, and this agent does not say which cluster it talks to (it predates \
                 cluster identities): upgrade it",
                caller.cluster, bound.kube_system_uid
            ));
            Err(refuse(
                shared,
                refusal(Reason::IdentityMissing, call, caller),
                status,
            )
            .await)
        }
    }
}

/// Binds the name to `uid`; another agent may have bound it a moment earlier.
async fn bind(shared: &Shared, call: Call, caller: &Caller<'_>, uid: &str) -> Result<(), Status> {
    let command = Command::BindClusterIdentity {
        cluster: caller.cluster.to_owned(),
        kube_system_uid: uid.to_owned(),
        by: caller.actor.to_owned(),
        at: shared.clock.now(),
    };
    match shared.node.propose(&command).await {
        Ok(_) => {
            tracing::info!(
                cluster = caller.cluster,
                kube_system_uid = uid,
                "cluster name bound to the Kubernetes cluster its agent talks to"
            );
            Ok(())
        }
        Err(ProposeError::Rejected {
            error: CommandError::IdentityConflict { bound, .. },
            ..
        }) => Err(conflict(shared, call, caller, &bound, uid).await),
        Err(ProposeError::Rejected {
            error: CommandError::UnknownCluster(_),
            ..
        }) => Err(Status::not_found(format!(
            "cluster '{}' is not registered with this hub",
            caller.cluster
        ))),
        Err(e) => Err(Status::unavailable(format!(
            "cannot record the cluster's identity: {e}; try again (the hub group may be \
             electing a leader)"
        ))),
    }
}

/// Refuses an agent of another cluster: counted per cluster, recorded as the cluster's conflict
/// (at most once a minute), audited and logged through the refusal path.
async fn conflict(
    shared: &Shared,
    call: Call,
    caller: &Caller<'_>,
    bound: &str,
    uid: &str,
) -> Status {
    shared.counters.identity_conflict();
    shared
        .metrics
        .agent_identity_conflicts
        .get_or_create(&vec![("cluster".to_owned(), caller.cluster.to_owned())])
        .inc();
    record_conflict(shared, caller.cluster, uid).await;
    let status = Status::permission_denied(conflict_message(caller.cluster, bound, uid));
    refuse(
        shared,
        refusal(Reason::IdentityConflict, call, caller),
        status,
    )
    .await
}

/// What an agent (and its operator) is told when its cluster is not the one bound to the name.
fn conflict_message(cluster: &str, bound: &str, reported: &str) -> String {
    format!(
        "cluster '{cluster}' is bound to the Kubernetes cluster whose kube-system namespace has \
         UID {bound}, but this agent talks to the one with UID {reported}: it is pointed at \
         another cluster (credentials copied from '{cluster}'s agent, or a wrong kubeconfig \
         context?). Fix the agent; if '{cluster}' was really rebuilt, an admin runs `flotilla \
         cluster reset-identity {cluster}` and its agent is let in"
    )
}

/// Proposes `RecordIdentityConflict` unless this node's replica recorded the same UID less
/// than [`CONFLICT_RECORD_INTERVAL`] ago; a failure is logged, the refusal stands anyway.
async fn record_conflict(shared: &Shared, cluster: &str, uid: &str) {
    let now = shared.clock.now();
    let recent = shared
        .node
        .state()
        .clusters
        .get(cluster)
        .and_then(|c| c.identity_conflict.clone())
        .is_some_and(|recorded| {
            recorded.kube_system_uid == uid
                && now.0.saturating_sub(recorded.last_at.0)
                    < CONFLICT_RECORD_INTERVAL.as_millis() as u64
        });
    if recent {
        return;
    }
    let command = Command::RecordIdentityConflict {
        cluster: cluster.to_owned(),
        kube_system_uid: uid.to_owned(),
        at: now,
    };
    if let Err(e) = shared.node.propose(&command).await {
        tracing::warn!(cluster, error = %e, "identity conflict not recorded");
    }
}

fn refusal<'a>(reason: Reason, call: Call, caller: &Caller<'a>) -> Refusal<'a> {
    Refusal {
        reason,
        actor: caller.actor,
        action: call.action(),
        cluster: caller.cluster,
    }
}
