//! Presence: which clusters have a live agent stream somewhere in the group.
//!
//! Every node tells the leader, every presence period and at once when its streams change,
//! which clusters it holds streams for (`HubPresence.Report`, on the peer listener). The leader
//! notes, per cluster, when it last heard of a stream for it ([`PresenceBoard`]); the liveness
//! judge turns that into `SetLiveness` decisions. Nothing here goes through raft: a report is
//! chatter that is stale a period later, and losing it with a leader costs one period.

use std::collections::HashMap;
use std::time::Duration;

use flotilla_proto::v1::hub_presence_client::HubPresenceClient;
use flotilla_proto::v1::hub_presence_server::{HubPresence, HubPresenceServer};
use flotilla_proto::v1::{PresenceAck, PresenceReport};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::streams::Streams;
use crate::node::NodeHandle;
use crate::state::NodeId;
use crate::transport::net;

/// Shortest pause between two reports triggered by stream changes, so a burst of agents
/// connecting at once costs a few reports, not one per agent.
const CHANGE_COALESCE: Duration = Duration::from_millis(100);

/// What the leader has heard about streams.
#[derive(Debug, Default)]
pub struct PresenceBoard {
    inner: Mutex<Board>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct Board {
    /// Cluster → when a report last named it.
    seen: HashMap<String, Instant>,
    /// Node → when it last reported.
    nodes: HashMap<NodeId, Instant>,
}

impl PresenceBoard {
    /// Records that `from` holds streams for `clusters` as of `now`.
    pub fn record(&self, from: NodeId, clusters: &[String], now: Instant) {
        let mut board = self.inner.lock();
        board.nodes.insert(from, now);
        for cluster in clusters {
            board.seen.insert(cluster.clone(), now);
        }
        drop(board);
        self.changed.notify_waiters();
    }

    /// Forgets everything: a node that has just become leader starts from what it hears.
    pub fn reset(&self) {
        let mut board = self.inner.lock();
        board.seen.clear();
        board.nodes.clear();
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
            self.node
                .presence()
                .record(report.from, &report.clusters, Instant::now());
        }
        Ok(Response::new(PresenceAck { leader }))
    }
}

/// Reports this node's streams to the leader every `period`, when they change, and when the
/// leader changes, until `stop`.
pub(crate) async fn report_loop(
    node: NodeHandle,
    streams: Streams,
    period: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leadership = node.watch_leadership();
    let mut changes = streams.watch();
    let mut reporter = Reporter::default();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            changed = leadership.changed() => if changed.is_err() { return },
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                tokio::time::sleep(CHANGE_COALESCE).await;
                changes.mark_unchanged();
            }
        }
        let clusters = streams.clusters();
        reporter.send(&node, clusters, period).await;
    }
}

/// Sends reports to whichever node leads, keeping a channel to it.
#[derive(Default)]
struct Reporter {
    channel: Option<(String, HubPresenceClient<Channel>)>,
}

impl Reporter {
    async fn send(&mut self, node: &NodeHandle, clusters: Vec<String>, timeout: Duration) {
        let Some(leader) = node.leadership().leader else {
            return;
        };
        if leader == node.id() {
            node.presence().record(leader, &clusters, Instant::now());
            return;
        }
        let Some(address) = node.state().members.get(&leader).cloned() else {
            return;
        };
        let client = match &self.channel {
            Some((known, client)) if *known == address => client.clone(),
            _ => match net::channel(&address, node.security()) {
                Ok(channel) => {
                    let client = HubPresenceClient::new(channel);
                    self.channel = Some((address.clone(), client.clone()));
                    client
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the leader for presence");
                    return;
                }
            },
        };
        let report = PresenceReport {
            group: node.group().to_owned(),
            from: node.id(),
            clusters,
        };
        let mut client = client;
        match tokio::time::timeout(timeout, client.report(report)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => {
                tracing::debug!(leader, %status, "presence report refused");
            }
            Err(_) => tracing::debug!(leader, "presence report timed out"),
        }
    }
}
