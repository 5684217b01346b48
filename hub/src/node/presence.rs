//! Presence: which clusters have a live agent stream somewhere in the group, and from which
//! agent instance.
//!
//! Every node tells the leader, every presence period and at once when its streams change,
//! which clusters it holds streams for and the instance of each (`HubPresence.Report`, on the
//! peer listener). The leader notes, per cluster, when it last heard of a stream for it
//! ([`PresenceBoard`]); the liveness judge turns that into `SetLiveness` decisions. Nothing
//! here goes through raft: a report is chatter that is stale a period later, and losing it with
//! a leader costs one period.
//!
//! Before a node serves a new stream it asks the leader (`HubPresence.Claim`) whether another
//! node holds a live stream for the cluster from another agent instance; the leader answers
//! from the latest reports and notes the claim as that node's until its next report, so of two
//! agents saying hello on two nodes at once the second is refused. A holder counts as live
//! until `offline_after` without a report naming it, the same bound liveness uses. Without a
//! leader (an election) or an answer within a presence period the claim is granted: the
//! replicated identity binding still keeps out agents of another cluster, and a group without a
//! leader can change nothing an agent would act on.

use std::collections::HashMap;
use std::time::Duration;

use flotilla_proto::v1::hub_presence_client::HubPresenceClient;
use flotilla_proto::v1::hub_presence_server::{HubPresence, HubPresenceServer};
use flotilla_proto::v1::{
    PresenceAck, PresenceReport, PresenceStream, StreamClaim, StreamClaimReply,
};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::NodeHandle;
use crate::state::NodeId;
use flotilla_consensus::transport::net;

#[cfg(test)]
mod tests;

/// How long a stream the leader heard of (or a claim it granted) counts as live without a
/// report naming it, unless the node's sync configuration says otherwise.
const DEFAULT_HOLDER_TTL: Duration = Duration::from_secs(3);

/// What the leader has heard about streams.
#[derive(Debug)]
pub struct PresenceBoard {
    inner: Mutex<Board>,
    changed: Notify,
}

impl Default for PresenceBoard {
    fn default() -> Self {
        PresenceBoard {
            inner: Mutex::new(Board {
                seen: HashMap::new(),
                nodes: HashMap::new(),
                holders: HashMap::new(),
                holder_ttl: DEFAULT_HOLDER_TTL,
            }),
            changed: Notify::new(),
        }
    }
}

#[derive(Debug)]
struct Board {
    /// Cluster → when a report last named it.
    seen: HashMap<String, Instant>,
    /// Node → when it last reported.
    nodes: HashMap<NodeId, Instant>,
    /// Cluster → node → the agent instance streaming there and when the node last said so.
    holders: HashMap<String, HashMap<NodeId, Holder>>,
    /// How long a holder counts as live without a report naming it.
    holder_ttl: Duration,
}

#[derive(Debug, Clone)]
struct Holder {
    /// The agent instance; empty when the node did not say (an older node), which matches no
    /// instance.
    instance: String,
    at: Instant,
    /// Granted by a claim and not yet named by a report of its node: kept until a report names
    /// it or it expires, since a report computed before the claim may arrive after it.
    claimed: bool,
}

/// Another node holds a live stream for the cluster from another agent instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimRefused {
    /// That node.
    pub holder: NodeId,
}

impl PresenceBoard {
    /// Records that `from` holds streams for `clusters` as of `now`; `streams` (the same
    /// streams, with their agent instances) replaces what was known of `from`'s streams. A
    /// report without `streams` but with clusters comes from a node that predates instances:
    /// its streams count as held by an unknown instance.
    pub fn record(
        &self,
        from: NodeId,
        clusters: &[String],
        streams: &[(String, String)],
        now: Instant,
    ) {
        let mut board = self.inner.lock();
        board.nodes.insert(from, now);
        for cluster in clusters {
            board.seen.insert(cluster.clone(), now);
        }
        let unknown: Vec<(String, String)>;
        let streams = if streams.is_empty() && !clusters.is_empty() {
            unknown = clusters
                .iter()
                .map(|c| (c.clone(), String::new()))
                .collect();
            &unknown
        } else {
            streams
        };
        let ttl = board.holder_ttl;
        board.holders.retain(|_, nodes| {
            nodes.retain(|node, holder| {
                now.saturating_duration_since(holder.at) < ttl && (*node != from || holder.claimed)
            });
            !nodes.is_empty()
        });
        for (cluster, instance) in streams {
            board.holders.entry(cluster.clone()).or_default().insert(
                from,
                Holder {
                    instance: instance.clone(),
                    at: now,
                    claimed: false,
                },
            );
        }
        drop(board);
        self.changed.notify_waiters();
    }

    /// Grants `from` a stream of `instance` for `cluster` unless another node holds a live one
    /// from another instance; a granted claim counts as `from`'s stream until its next report.
    pub fn claim(
        &self,
        from: NodeId,
        cluster: &str,
        instance: &str,
        now: Instant,
    ) -> Result<(), ClaimRefused> {
        let mut board = self.inner.lock();
        let ttl = board.holder_ttl;
        let nodes = board.holders.entry(cluster.to_owned()).or_default();
        let other = nodes.iter().find(|(node, holder)| {
            **node != from
                && now.saturating_duration_since(holder.at) < ttl
                && (holder.instance.is_empty() || holder.instance != instance)
        });
        if let Some((holder, _)) = other {
            return Err(ClaimRefused { holder: *holder });
        }
        nodes.insert(
            from,
            Holder {
                instance: instance.to_owned(),
                at: now,
                claimed: true,
            },
        );
        Ok(())
    }

    /// How long a stream counts as live without a report naming it: the liveness controller's
    /// `offline_after`.
    pub fn set_holder_ttl(&self, ttl: Duration) {
        self.inner.lock().holder_ttl = ttl;
    }

    /// Forgets everything: a node that has just become leader starts from what it hears.
    pub fn reset(&self) {
        let mut board = self.inner.lock();
        board.seen.clear();
        board.nodes.clear();
        board.holders.clear();
    }

    /// Cluster → when a report last named it.
    pub fn last_seen(&self) -> HashMap<String, Instant> {
        self.inner.lock().seen.clone()
    }

    /// Node → when it last reported.
    pub fn reporters(&self) -> HashMap<NodeId, Instant> {
        self.inner.lock().nodes.clone()
    }

    /// Resolves at the next report.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// The `HubPresence` service of a node, served on its peer listener.
pub(crate) fn server(node: NodeHandle) -> HubPresenceServer<PresenceService> {
    HubPresenceServer::new(PresenceService { node })
}

/// Takes presence reports while the node leads.
pub(crate) struct PresenceService {
    node: NodeHandle,
}

#[tonic::async_trait]
impl HubPresence for PresenceService {
    async fn report(
        &self,
        request: Request<PresenceReport>,
    ) -> Result<Response<PresenceAck>, Status> {
        let report = request.into_inner();
        if report.group != self.node.group() {
            return Err(Status::failed_precondition(format!(
                "presence report for group '{}' reached a node of group '{}'",
                report.group,
                self.node.group()
            )));
        }
        let leader = self.node.is_leader();
        if leader {
            let streams: Vec<(String, String)> = report
                .streams
                .into_iter()
                .map(|s| (s.cluster, s.instance))
                .collect();
            self.node
                .presence()
                .record(report.from, &report.clusters, &streams, Instant::now());
        }
        Ok(Response::new(PresenceAck { leader }))
    }

    async fn claim(
        &self,
        request: Request<StreamClaim>,
    ) -> Result<Response<StreamClaimReply>, Status> {
        let claim = request.into_inner();
        if claim.group != self.node.group() {
            return Err(Status::failed_precondition(format!(
                "stream claim for group '{}' reached a node of group '{}'",
                claim.group,
                self.node.group()
            )));
        }
        if !self.node.is_leader() {
            return Ok(Response::new(StreamClaimReply {
                leader: false,
                granted: false,
                holder: 0,
            }));
        }
        let answer =
            self.node
                .presence()
                .claim(claim.from, &claim.cluster, &claim.instance, Instant::now());
        Ok(Response::new(StreamClaimReply {
            leader: true,
            granted: answer.is_ok(),
            holder: answer.err().map_or(0, |refused| refused.holder),
        }))
    }
}

/// Asks the leader whether this node may serve a stream of `instance` for `cluster`, within
/// `timeout`. Granted when this node leads and no other node holds one, and also when no
/// leader answers (see the module).
pub(crate) async fn claim(
    node: &NodeHandle,
    leader: &LeaderChannel,
    cluster: &str,
    instance: &str,
    timeout: Duration,
) -> Result<(), ClaimRefused> {
    let Some(target) = leader.target(node) else {
        return Ok(());
    };
    let client = match target {
        Target::Itself(id) => {
            return node.presence().claim(id, cluster, instance, Instant::now());
        }
        Target::Remote(client) => client,
    };
    let request = StreamClaim {
        group: node.group().to_owned(),
        from: node.id(),
        cluster: cluster.to_owned(),
        instance: instance.to_owned(),
    };
    let mut client = client;
    match tokio::time::timeout(timeout, client.claim(request)).await {
        Ok(Ok(reply)) => {
            let reply = reply.into_inner();
            match (reply.leader, reply.granted) {
                (true, false) => Err(ClaimRefused {
                    holder: reply.holder,
                }),
                _ => Ok(()),
            }
        }
        Ok(Err(status)) => {
            tracing::debug!(%cluster, %status, "stream claim not answered; granted");
            Ok(())
        }
        Err(_) => {
            tracing::debug!(%cluster, "stream claim timed out; granted");
            Ok(())
        }
    }
}

/// Where the leader is: this node, or a peer reached through a channel kept while it leads.
#[derive(Default)]
pub(crate) struct LeaderChannel {
    channel: Mutex<Option<(String, HubPresenceClient<Channel>)>>,
}

/// The leader to talk to.
enum Target {
    /// This node leads (its id).
    Itself(NodeId),
    /// Another node leads.
    Remote(HubPresenceClient<Channel>),
}

impl LeaderChannel {
    /// The current leader; `None` when none is known or it cannot be reached.
    fn target(&self, node: &NodeHandle) -> Option<Target> {
        let leader = node.leadership().leader?;
        if leader == node.id() {
            return Some(Target::Itself(leader));
        }
        let address = node.state().members.get(&leader).cloned()?;
        let mut channel = self.channel.lock();
        if let Some((known, client)) = channel.as_ref()
            && *known == address
        {
            return Some(Target::Remote(client.clone()));
        }
        match net::channel(&address, node.security()) {
            Ok(connection) => {
                let client = HubPresenceClient::new(connection);
                *channel = Some((address, client.clone()));
                Some(Target::Remote(client))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the leader for presence");
                None
            }
        }
    }
}

/// Tells whichever node leads which streams this node holds.
pub(crate) async fn send_report(
    node: &NodeHandle,
    leader: &LeaderChannel,
    streams: Vec<(String, String)>,
    timeout: Duration,
) {
    let clusters: Vec<String> = streams.iter().map(|(cluster, _)| cluster.clone()).collect();
    let client = match leader.target(node) {
        None => return,
        Some(Target::Itself(id)) => {
            node.presence()
                .record(id, &clusters, &streams, Instant::now());
            return;
        }
        Some(Target::Remote(client)) => client,
    };
    let report = PresenceReport {
        group: node.group().to_owned(),
        from: node.id(),
        clusters,
        streams: streams
            .into_iter()
            .map(|(cluster, instance)| PresenceStream { cluster, instance })
            .collect(),
    };
    let mut client = client;
    match tokio::time::timeout(timeout, client.report(report)).await {
        Ok(Ok(_)) => {}
        Ok(Err(status)) => tracing::debug!(%status, "presence report refused"),
        Err(_) => tracing::debug!("presence report timed out"),
    }
}
