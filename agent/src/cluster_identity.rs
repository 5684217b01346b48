//! Which Kubernetes cluster the agent's client talks to: the UID of its `kube-system`
//! namespace, which the API server creates with the cluster and never replaces.
//!
//! The hub binds each cluster name to the first UID it is told and refuses agents reporting
//! another, so credentials copied to an agent of another cluster (or a kubeconfig pointing at
//! the wrong one) cannot act for the name. The agent reads it afresh for every hello: a cluster
//! rebuilt behind the same address is told apart at the next reconnect.
//!
//! The same identity guards the state directory: bundles stored there are enforced from the
//! agent's first moment, before any hub is asked, so [`guard_state_dir`] sets aside bundles
//! stored for another cluster (a directory copied with the credentials, a kubeconfig pointing
//! elsewhere, a rebuilt cluster) before the engine loads them.

use std::time::Duration;

use flotilla_proto::v1::ClusterIdentity;
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client};

use crate::state::{Claimed, StateDir, StateError};

/// How long reading the namespace may take before the identity counts as unreadable.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the identity is read again while bundles stored for a cluster wait for it.
const GUARD_RETRY: Duration = Duration::from_secs(5);

/// The namespace whose UID identifies a cluster.
pub const IDENTITY_NAMESPACE: &str = "kube-system";

/// The identity of the cluster a client talks to, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterUid {
    /// `metadata.uid` of the `kube-system` namespace.
    Known(String),
    /// It could not be read (API server unreachable, access denied), and why. The hub treats
    /// the cluster as unknown: it serves no stream until the identity can be read.
    Unreadable(String),
}

impl ClusterUid {
    /// Reads the identity of `client`'s cluster.
    pub async fn read(client: &Client) -> ClusterUid {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        match tokio::time::timeout(READ_TIMEOUT, namespaces.get(IDENTITY_NAMESPACE)).await {
            Err(_) => ClusterUid::Unreadable(format!(
                "reading namespace {IDENTITY_NAMESPACE} took longer than {READ_TIMEOUT:?}"
            )),
            Ok(Err(e)) => {
                ClusterUid::Unreadable(format!("reading namespace {IDENTITY_NAMESPACE}: {e}"))
            }
            Ok(Ok(namespace)) => match namespace.metadata.uid {
                Some(uid) if !uid.is_empty() => ClusterUid::Known(uid),
                _ => ClusterUid::Unreadable(format!(
                    "namespace {IDENTITY_NAMESPACE} has no metadata.uid"
                )),
            },
        }
    }

    /// As the hello and the registration carry it.
    pub fn to_proto(&self) -> ClusterIdentity {
        match self {
            ClusterUid::Known(uid) => ClusterIdentity {
                kube_system_uid: uid.clone(),
                unreadable: String::new(),
            },
            ClusterUid::Unreadable(why) => ClusterIdentity {
                kube_system_uid: String::new(),
                unreadable: why.clone(),
            },
        }
    }
}

/// Makes sure the bundles stored in `dir` are the desired state of the cluster `client` talks
/// to before an engine enforces them: stored for another cluster, they are set aside (see
/// [`StateDir::claim_for`]). While the identity cannot be read and bundles are stored, it waits
/// and reads again: the cluster that answers later might not be theirs. Cancel it to give up.
pub async fn guard_state_dir(client: &Client, dir: &StateDir) -> Result<(), StateError> {
    let mut warned = false;
    loop {
        match ClusterUid::read(client).await {
            ClusterUid::Known(uid) => {
                match dir.claim_for(&uid)? {
                    Claimed::Same => {}
                    Claimed::Recorded => {
                        tracing::info!(kube_system_uid = %uid, "state directory recorded for this cluster");
                    }
                    Claimed::SetAside { other, moved_to } => tracing::error!(
                        kube_system_uid = %uid,
                        stored_for = %other,
                        moved_to = %moved_to.display(),
                        "the state directory held another cluster's bundles (copied from another \
                         agent, or this cluster was rebuilt): set aside, not enforced; the hub \
                         decides what this cluster gets"
                    ),
                }
                return Ok(());
            }
            ClusterUid::Unreadable(why) => {
                if dir.load()?.is_empty() {
                    return Ok(());
                }
                if !warned {
                    tracing::warn!(%why, "cannot read the cluster's identity; the stored bundles \
                        wait until it can be checked");
                    warned = true;
                }
                tokio::time::sleep(GUARD_RETRY).await;
            }
        }
    }
}
