//! Which Kubernetes cluster the agent's client talks to: the UID of its `kube-system`
//! namespace, which the API server creates with the cluster and never replaces.
//!
//! The hub binds each cluster name to the first UID it is told and refuses agents reporting
//! another, so credentials copied to an agent of another cluster (or a kubeconfig pointing at
//! the wrong one) cannot act for the name. The agent reads it afresh for every hello: a cluster
//! rebuilt behind the same address is told apart at the next reconnect.

use std::time::Duration;

use flotilla_proto::v1::ClusterIdentity;
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client};

/// How long reading the namespace may take before the identity counts as unreadable.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

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
