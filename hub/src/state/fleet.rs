//! Clusters: registration, labels, liveness and the revision each must hold.

use serde::{Deserialize, Serialize};

use super::identity::{BoundIdentity, IdentityConflict};
use super::notice::{About, NoticeKind};
use super::source::RevisionRef;
use super::{CommandError, Labels, State, Timestamp};

/// A registered cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// Labels stages and bundles select on.
    pub labels: Labels,
    /// When it was registered.
    pub registered_at: Timestamp,
    /// Whether its agent is connected to some hub node.
    pub online: bool,
    /// When `online` last changed.
    pub liveness_changed_at: Option<Timestamp>,
    /// The revision it must hold, if any yet.
    pub assigned: Option<RevisionRef>,
    /// When `assigned` last changed.
    pub assigned_at: Option<Timestamp>,
    /// The Kubernetes cluster its name is bound to, once an agent has said hello from one.
    pub identity: Option<BoundIdentity>,
    /// The last identity refused for its name since it was bound, until an admin resets it.
    pub identity_conflict: Option<IdentityConflict>,
    /// Whether its agent reaches the cluster's API server, as the agent last said; none before
    /// it said.
    pub api: Option<ApiReachability>,
    /// What the cluster serves, as its agent last said; none before it said.
    #[serde(default)]
    pub capabilities: Option<KnownCapabilities>,
    /// The revisions it was given, newest last, each with how far it got
    /// ([`super::delivery::DELIVERIES_KEPT`] at most).
    pub deliveries: Vec<super::delivery::Delivery>,
}

/// What a cluster serves and when a hub node heard it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownCapabilities {
    /// Its Kubernetes version and API group versions.
    pub read: flotilla_core::inventory::Capabilities,
    /// The version of the agent that said it.
    pub agent_version: String,
    /// When the proposing node heard it.
    pub at: Timestamp,
}

impl Cluster {
    /// Whether what its agent reports is current: the agent streams and reaches the cluster's
    /// API server (or has not said otherwise).
    pub fn reporting(&self) -> bool {
        self.online && self.api.as_ref().is_none_or(|api| api.reachable)
    }
}

/// Whether an agent reaches its cluster's API server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiReachability {
    /// Whether the API server answers its readiness probe.
    pub reachable: bool,
    /// Since when (the agent's clock).
    pub since: Timestamp,
    /// The probe's error while unreachable.
    pub error: String,
}

fn check_name(name: &str) -> Result<(), CommandError> {
    if name.is_empty() {
        return Err(CommandError::Invalid("cluster name is empty".into()));
    }
    Ok(())
}

pub(super) fn register(
    state: &mut State,
    name: &str,
    labels: &Labels,
    at: Timestamp,
) -> Result<(), CommandError> {
    check_name(name)?;
    if state.clusters.contains_key(name) {
        return Err(CommandError::ClusterExists(name.to_owned()));
    }
    state.clusters.insert(
        name.to_owned(),
        Cluster {
            labels: labels.clone(),
            registered_at: at,
            online: false,
            liveness_changed_at: None,
            assigned: None,
            assigned_at: None,
            identity: None,
            identity_conflict: None,
            api: None,
            capabilities: None,
            deliveries: Vec::new(),
        },
    );
    Ok(())
}

pub(super) fn relabel(
    state: &mut State,
    name: &str,
    labels: &Labels,
    _at: Timestamp,
) -> Result<(), CommandError> {
    let cluster = state
        .clusters
        .get_mut(name)
        .ok_or_else(|| CommandError::UnknownCluster(name.to_owned()))?;
    cluster.labels = labels.clone();
    Ok(())
}

pub(super) fn remove(state: &mut State, name: &str, at: Timestamp) -> Result<(), CommandError> {
    if state.clusters.remove(name).is_none() {
        return Err(CommandError::UnknownCluster(name.to_owned()));
    }
    state.health.retain(|key, _| key.cluster != name);
    state.access.bootstrap.retain(|_, t| t.cluster != name);
    super::pki::revoke_cluster(state, name, at);
    super::source::drop_cluster(state, name);
    Ok(())
}

pub(super) fn set_liveness(
    state: &mut State,
    name: &str,
    online: bool,
    at: Timestamp,
) -> Result<(), CommandError> {
    let cluster = state
        .clusters
        .get_mut(name)
        .ok_or_else(|| CommandError::UnknownCluster(name.to_owned()))?;
    if cluster.online != online {
        // Its first connection is no news; going offline, and coming back after, are.
        let notice = match (online, cluster.liveness_changed_at) {
            (false, _) => Some((NoticeKind::ClusterOffline, "its agent stopped reporting")),
            (true, Some(_)) => Some((NoticeKind::ClusterBack, "its agent reports again")),
            (true, None) => None,
        };
        cluster.online = online;
        cluster.liveness_changed_at = Some(at);
        if let Some((kind, message)) = notice {
            state.notices.push(kind, at, cluster_about(name), message);
        }
    }
    Ok(())
}

pub(super) fn set_api(
    state: &mut State,
    name: &str,
    api: &ApiReachability,
) -> Result<(), CommandError> {
    let cluster = state
        .clusters
        .get_mut(name)
        .ok_or_else(|| CommandError::UnknownCluster(name.to_owned()))?;
    // Proposals of one agent's changes may commit out of order (each is proposed on its own):
    // an older one never replaces a newer one. Both come from the same agent's clock.
    if cluster
        .api
        .as_ref()
        .is_none_or(|known| known.since <= api.since)
    {
        let was = cluster.api.as_ref().map(|known| known.reachable);
        cluster.api = Some(api.clone());
        let notice = match (was, api.reachable) {
            (Some(true) | None, false) => Some((
                NoticeKind::ClusterUnreachable,
                format!("its agent cannot reach the API server: {}", api.error),
            )),
            (Some(false), true) => Some((
                NoticeKind::ClusterBack,
                "its agent reaches the API server again".to_owned(),
            )),
            _ => None,
        };
        if let Some((kind, message)) = notice {
            state
                .notices
                .push(kind, api.since, cluster_about(name), &message);
        }
    }
    Ok(())
}

fn cluster_about(name: &str) -> About {
    About {
        cluster: Some(name.to_owned()),
        ..About::default()
    }
}

/// Most characters of an agent's version the state records.
pub const MAX_AGENT_VERSION_CHARS: usize = 64;

pub(super) fn set_capabilities(
    state: &mut State,
    name: &str,
    capabilities: &flotilla_core::inventory::Capabilities,
    agent_version: &str,
    at: Timestamp,
) -> Result<(), CommandError> {
    // Shown to people: bounded and printable, whoever proposed it.
    if agent_version.chars().count() > MAX_AGENT_VERSION_CHARS
        || !agent_version
            .chars()
            .all(|c| c == ' ' || c.is_ascii_graphic())
    {
        return Err(CommandError::Invalid(format!(
            "agent version of '{name}' is not up to {MAX_AGENT_VERSION_CHARS} printable \
             ASCII characters"
        )));
    }
    let cluster = state
        .clusters
        .get_mut(name)
        .ok_or_else(|| CommandError::UnknownCluster(name.to_owned()))?;
    // As for the API's reachability: an older proposal committed later never wins.
    if cluster
        .capabilities
        .as_ref()
        .is_none_or(|known| known.at <= at)
    {
        cluster.capabilities = Some(KnownCapabilities {
            read: capabilities.clone(),
            agent_version: agent_version.to_owned(),
            at,
        });
    }
    Ok(())
}

pub(super) fn assign(
    state: &mut State,
    clusters: &[String],
    revision: &RevisionRef,
    at: Timestamp,
) -> Result<(), CommandError> {
    super::source::require_rendered(state, revision)?;
    if let Some(unknown) = clusters.iter().find(|c| !state.clusters.contains_key(*c)) {
        return Err(CommandError::UnknownCluster(unknown.clone()));
    }
    super::rollout::check_assignment(state, clusters, revision)?;
    set_assigned(state, clusters, revision, at);
    Ok(())
}

/// Assigns without validation; callers have checked the revision and clusters.
pub(super) fn set_assigned(
    state: &mut State,
    clusters: &[String],
    revision: &RevisionRef,
    at: Timestamp,
) {
    for name in clusters {
        if let Some(cluster) = state.clusters.get_mut(name) {
            cluster.assigned = Some(revision.clone());
            cluster.assigned_at = Some(at);
        }
    }
    super::delivery::given(state, clusters, revision, at);
}
