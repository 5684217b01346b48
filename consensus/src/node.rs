//! A node: one member of the raft group, and the API the embedding service builds on.
//!
//! [`Node::start`] opens the data dir, starts serving peers and runs the raft thread; the
//! returned [`NodeHandle`] is cheap to clone and is all a service or controller needs:
//!
//! - writes: [`NodeHandle::propose`] on any node (forwarded to the leader), answered once the
//!   command applied on *this* node, so a read of [`NodeHandle::state`] right after sees it;
//! - reads: [`NodeHandle::state`] (this replica, possibly behind the leader) or
//!   [`NodeHandle::read_index`] / [`NodeHandle::linearizable`] (linearizable, via ReadIndex);
//! - notifications: [`NodeHandle::watch_applied`] (applied index) and
//!   [`NodeHandle::watch_leadership`] (leader and term), on which leader-only controllers start
//!   and stop; [`NodeHandle::watch_failure`] (the raft thread stopped) and
//!   [`NodeHandle::watch_disk_full`] (the disk is full: this node refuses writes until it is not);
//! - membership: [`NodeHandle::add_member`], [`NodeHandle::remove_member`], one at a time.
//!
//! The peer listener serves raft ([`crate::transport`]) and the group API ([`crate::group`]);
//! the embedder adds its own peer services to it through the `extend` argument of
//! [`Node::start`].

use std::ops::Deref;
use std::sync::Arc;
use std::sync::mpsc::Sender as EventSender;

use flotilla_proto::v1::hub_group_server::HubGroupServer;
use flotilla_proto::v1::peer_forward_reply::Outcome as ForwardOutcome;
use flotilla_proto::v1::raft_peer_server::RaftPeerServer;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, NodeConfig, Timing};
use crate::group::{GroupClient, GroupService};
use crate::storage::Identity;
use crate::transport::net::{self, HubPeersOnly, Security};
use crate::transport::routes::GrpcRoutes;
use crate::transport::{Inbox, PeerService, Proposal, ProposeReply, Stopped, Transport};
use crate::{NodeId, RequestId, StateMachine};

mod driver;
mod errors;
mod events;
mod founding;
mod logging;
mod peers;
mod security;
mod status;
pub(crate) mod waiters;
use waiters::Proposed;

pub use errors::{ProposeError, ReadError, StartError};
pub(crate) use events::{EntryOutcome, Event};
pub use peers::PeerRouter;
pub use security::{CA_FILE, CA_KEY_FILE};
pub use status::{Leadership, NodeStatus, Role};

#[cfg(test)]
mod tests;

/// Starts nodes.
pub struct Node;

/// A running node replicating `S`. Clones share the node; call [`NodeHandle::shutdown`] to
/// stop it.
pub struct NodeHandle<S: StateMachine> {
    shared: Arc<Shared<S>>,
}

impl<S: StateMachine> Clone for NodeHandle<S> {
    fn clone(&self) -> Self {
        NodeHandle {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<S: StateMachine> {
    id: NodeId,
    group: String,
    address: String,
    timing: Timing,
    events: EventSender<Event<S::Rejection>>,
    replica: Arc<RwLock<Replica<S>>>,
    applied: watch::Receiver<u64>,
    leadership: watch::Receiver<Leadership>,
    failure: watch::Receiver<Option<String>>,
    disk_full: watch::Receiver<Option<String>>,
    transport: Arc<Transport>,
    security: Security,
    data_dir: std::path::PathBuf,
    stop: CancellationToken,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    server: Mutex<Option<JoinHandle<()>>>,
}

/// The state machine and the log index it reflects, always updated together.
#[derive(Debug, Clone)]
pub struct Replica<S> {
    /// Index of the last applied entry.
    pub applied: u64,
    /// The state after applying it.
    pub state: S,
}

/// A read view of this replica's state machine. Holding it blocks applying, so keep it short
/// (it cannot be held across an `.await` in a spawned task: it is not `Send`).
pub struct StateView<'a, S> {
    guard: RwLockReadGuard<'a, Replica<S>>,
}

impl<S> StateView<'_, S> {
    /// Index of the last entry the state reflects.
    pub fn applied(&self) -> u64 {
        self.guard.applied
    }
}

impl<S> Deref for StateView<'_, S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.guard.state
    }
}

/// A command that applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Log index it applied at.
    pub index: u64,
}

impl Node {
    /// Opens the data dir, binds the listen address, and starts the raft thread and the peer
    /// server on the current tokio runtime. `extend` adds the embedder's services to the peer
    /// listener; it is given the node's handle, already usable, before anything is served.
    pub async fn start<S: StateMachine>(
        config: NodeConfig,
        extend: impl FnOnce(&NodeHandle<S>, PeerRouter) -> PeerRouter,
    ) -> Result<NodeHandle<S>, StartError<S>> {
        if config.id == 0 {
            return Err(ConfigError::Invalid {
                field: "--id",
                problem: "node id 0 is reserved; use 1 or more".into(),
            }
            .into());
        }
        let listener = net::bind(&config.listen).await?;
        let address = founding::advertised_address::<S>(&config, &listener)?;
        let log = driver::LogLocation {
            dir: config.data_dir.clone(),
            identity: Identity {
                group: config.group.clone(),
                node_id: config.id,
            },
            disk: config.disk.clone(),
        };
        let mut store = log.open()?;
        if !store.is_initialized()
            && let Some(members) = founding::founding_members(&config, &address)
        {
            let ca = security::founding_ca::<S>(&config, members.len())?;
            if let Some(ca) = &ca {
                security::keep_ca_key(&config.data_dir, ca)?;
            }
            let replicated = ca.map(security::replicated);
            let bootstrap = founding::bootstrap_snapshot::<S>(members, replicated)
                .map_err(StartError::Snapshot)?;
            store.apply_snapshot(&bootstrap)?;
        }
        let applied = store.snapshot_metadata().index;
        let state = match applied {
            0 => S::default(),
            _ => S::restore(&store.snapshot_data()?).map_err(StartError::Snapshot)?,
        };
        let security = security::node_security(&config, &address, &state)?;
        let raw = driver::raft_node(config.id, &config.timing, store)?;

        let (events, events_rx) = std::sync::mpsc::channel();
        let inbox = {
            let events = events.clone();
            Inbox::new(move |inbound| events.send(Event::Peer(inbound)).map_err(|_| Stopped))
        };
        let transport = Arc::new(Transport::new(
            config.id,
            config.group.clone(),
            address.clone(),
            config.faults.clone(),
            tokio::runtime::Handle::current(),
            inbox.clone(),
            security.clone(),
        ));
        transport.set_members(state.members());
        let (applied_tx, applied_rx) = watch::channel(applied);
        let (leadership_tx, leadership_rx) = watch::channel(Leadership::default());
        let (failure_tx, failure_rx) = watch::channel(None);
        let (disk_full_tx, disk_full_rx) = watch::channel(None);
        let replica = Arc::new(RwLock::new(Replica { applied, state }));
        let stop = CancellationToken::new();
        let handle = NodeHandle {
            shared: Arc::new(Shared {
                id: config.id,
                group: config.group.clone(),
                address,
                timing: config.timing,
                events: events.clone(),
                replica: replica.clone(),
                applied: applied_rx,
                leadership: leadership_rx,
                failure: failure_rx,
                disk_full: disk_full_rx,
                transport: transport.clone(),
                security: security.clone(),
                data_dir: config.data_dir.clone(),
                stop: stop.clone(),
                thread: Mutex::new(None),
                server: Mutex::new(None),
            }),
        };

        let peers = PeerService {
            id: config.id,
            group: config.group.clone(),
            events: inbox,
            transport: transport.clone(),
        };
        let peer_router = PeerRouter {
            routes: GrpcRoutes::default(),
            peers_only: HubPeersOnly::new(&security),
        }
        .add_service(
            RaftPeerServer::new(peers)
                .max_decoding_message_size(net::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(net::MAX_MESSAGE_BYTES),
        )
        .add_service(HubGroupServer::new(GroupService::new(handle.clone())));
        let routes = extend(&handle, peer_router).routes;
        let tls = security.tls().map(|tls| tls.peer_server());
        let server = tokio::spawn(net::serve(
            "peer",
            routes,
            listener,
            tls,
            config.peer_connections,
            stop,
        ));

        let driver = driver::Driver {
            id: config.id,
            log,
            events: events_rx,
            transport,
            replica,
            applied_tx,
            leadership_tx,
            failure_tx,
            disk_full_tx,
            disk_full: None,
            timing: config.timing,
            compact_after: config.compact_after.max(1),
            proposals: Default::default(),
            reads: Default::default(),
            ticks: 0,
            next_read: 0,
        };
        let thread = std::thread::Builder::new()
            .name(format!("raft-{}", config.id))
            .spawn(move || driver.run(raw))
            .map_err(StartError::Thread)?;
        *handle.shared.thread.lock() = Some(thread);
        *handle.shared.server.lock() = Some(server);
        tracing::info!(
            node = config.id,
            group = %config.group,
            address = %handle.shared.address,
            applied,
            "hub node started"
        );
        Ok(handle)
    }
}

impl<S: StateMachine> NodeHandle<S> {
    /// This node's raft id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.shared.group
    }

    /// The address peers and clients reach this node at.
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// How this node's connections are protected: its TLS material, or plain.
    pub fn security(&self) -> &Security {
        &self.shared.security
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.shared.data_dir
    }

    /// Cancelled when the node is shut down: tasks kept beside the node end with it.
    pub fn stopping(&self) -> CancellationToken {
        self.shared.stop.clone()
    }

    /// The raft timers this node runs with.
    pub fn timing(&self) -> Timing {
        self.shared.timing
    }

    fn send(&self, event: Event<S::Rejection>) -> Result<(), ProposeError<S>> {
        self.shared
            .events
            .send(event)
            .map_err(|_| ProposeError::Stopped)
    }

    /// Proposes a command and waits until it applied on this node. Accepted on any node: a
    /// follower hands it to the leader. Waits at most the configured request timeout.
    ///
    /// The write applies at most once: it carries one request id through every forward and
    /// retry (see [`crate::request`]). `Superseded` means it did not apply and never will.
    pub async fn propose(&self, command: &S::Command) -> Result<Applied, ProposeError<S>> {
        let bytes = S::encode_command(command).map_err(ProposeError::Encode)?;
        self.submit(Proposal::Command {
            request: RequestId::random(),
            bytes,
        })
        .await
    }

    /// Adds a voting member (one at a time). The new node must be started with `--join`; it
    /// catches up by snapshot.
    pub async fn add_member(&self, id: NodeId, address: &str) -> Result<Applied, ProposeError<S>> {
        self.change_membership(id, ConfChangeType::AddNode, address.as_bytes().to_vec())
            .await
    }

    /// Removes a member, dead or alive. Removing the leader first hands leadership over.
    pub async fn remove_member(&self, id: NodeId) -> Result<Applied, ProposeError<S>> {
        if id == self.shared.id {
            return self.remove_self().await;
        }
        self.change_membership(id, ConfChangeType::RemoveNode, Vec::new())
            .await
    }

    /// A removed node stops hearing from the group, so it may never learn that its own removal
    /// committed: a member that stays proposes it and waits for it instead.
    async fn remove_self(&self) -> Result<Applied, ProposeError<S>> {
        let id = self.shared.id;
        let leader = self.leadership().leader;
        let mut others: Vec<(NodeId, String)> = self
            .state()
            .members()
            .iter()
            .filter(|(member, _)| **member != id)
            .map(|(member, address)| (*member, address.clone()))
            .collect();
        if others.is_empty() {
            return Err(ProposeError::Refused(
                "the last member of a group cannot remove itself".into(),
            ));
        }
        // Ask the leader first when it is another node: it answers soonest.
        others.sort_by_key(|(member, _)| Some(*member) != leader);
        let deadline = Instant::now() + self.shared.timing.request_timeout;
        let mut last = ProposeError::NoLeader;
        while Instant::now() < deadline {
            for (member, address) in &others {
                let Ok(mut client) =
                    GroupClient::<S>::with_security(address, &self.shared.security)
                else {
                    continue;
                };
                match tokio::time::timeout_at(deadline, client.remove_member(id)).await {
                    Ok(Ok(changed)) => {
                        return Ok(Applied {
                            index: changed.index,
                        });
                    }
                    Ok(Err(status)) => {
                        last =
                            ProposeError::Refused(format!("node {member}: {}", status.message()));
                    }
                    Err(_) => return Err(ProposeError::Timeout { index: None }),
                }
            }
            tokio::time::sleep(self.shared.timing.tick).await;
        }
        Err(last)
    }

    async fn change_membership(
        &self,
        id: NodeId,
        change: ConfChangeType,
        context: Vec<u8>,
    ) -> Result<Applied, ProposeError<S>> {
        let mut single = ConfChangeSingle {
            node_id: id,
            ..Default::default()
        };
        single.set_change_type(change);
        let cc = ConfChangeV2 {
            changes: vec![single].into(),
            context: context.into(),
            ..Default::default()
        };
        self.submit(Proposal::ConfChange(cc)).await
    }

    /// Proposes locally if this node leads, otherwise forwards to the leader, retrying across
    /// elections until the deadline.
    ///
    /// A forward that failed in transit may still have been appended by the leader, so after
    /// one the write is sent again with the same request id: if both copies commit, the state
    /// machine applies it once and answers the second with the first's outcome. For the same
    /// reason a superseded copy is only reported as such when no other copy can exist; otherwise
    /// the write is sent again until it has an outcome or the deadline passes.
    async fn submit(&self, proposal: Proposal) -> Result<Applied, ProposeError<S>> {
        let conf_change = matches!(proposal, Proposal::ConfChange(_));
        let request = match &proposal {
            Proposal::Command { request, .. } => Some(*request),
            Proposal::ConfChange(_) => None,
        };
        let deadline = Instant::now() + self.shared.timing.request_timeout;
        let pause = self.shared.timing.tick;
        let mut last_leader = None;
        // Whether a copy of the write may have been appended without this node knowing where.
        let mut copies_in_doubt = false;
        loop {
            let (reply, answer) = oneshot::channel();
            let (outcome, result) = oneshot::channel();
            self.send(Event::Propose {
                proposal: proposal.clone(),
                reply,
                outcome,
            })?;
            let answer = match tokio::time::timeout_at(deadline, answer).await {
                Err(_) => return Err(ProposeError::Timeout { index: None }),
                Ok(Err(_)) => return Err(ProposeError::Stopped),
                Ok(Ok(answer)) => answer,
            };
            match answer {
                ProposeReply::Proposed { index, .. } => {
                    match wait_outcome(result, index, deadline).await {
                        Err(ProposeError::Superseded { .. }) if copies_in_doubt => {}
                        outcome => return outcome,
                    }
                }
                // A copy sent before may still apply: the outcome is unknown, not a refusal.
                ProposeReply::Refused(_) if copies_in_doubt => {
                    return Err(ProposeError::Timeout { index: None });
                }
                ProposeReply::Refused(why) => return Err(ProposeError::Refused(why)),
                ProposeReply::NotLeader {
                    leader: Some(leader),
                } if leader != self.shared.id => {
                    last_leader = Some(leader);
                    match self.shared.transport.forward(leader, &proposal).await {
                        Ok(reply) => match reply.outcome {
                            Some(ForwardOutcome::Proposed(p)) => {
                                let (outcome, result) = oneshot::channel();
                                let proposed = Proposed {
                                    index: p.index,
                                    term: p.term,
                                    request,
                                    conf_change,
                                };
                                self.send(Event::Await { proposed, outcome })?;
                                match wait_outcome(result, p.index, deadline).await {
                                    Err(ProposeError::Superseded { .. }) if copies_in_doubt => {}
                                    outcome => return outcome,
                                }
                            }
                            Some(ForwardOutcome::Refused(_)) if copies_in_doubt => {
                                return Err(ProposeError::Timeout { index: None });
                            }
                            Some(ForwardOutcome::Refused(why)) => {
                                return Err(ProposeError::Refused(why));
                            }
                            Some(ForwardOutcome::NotLeader(n)) if n.leader != 0 => {
                                last_leader = Some(n.leader);
                            }
                            _ => {}
                        },
                        Err(e) => {
                            // The leader may have appended it before the answer was lost.
                            copies_in_doubt |= request.is_some();
                            tracing::debug!(error = %e, "forwarding to the leader failed");
                        }
                    }
                }
                ProposeReply::NotLeader { .. } => {}
            }
            if Instant::now() + pause >= deadline {
                // A copy may still apply: the outcome is unknown, not a refusal.
                if copies_in_doubt {
                    return Err(ProposeError::Timeout { index: None });
                }
                return Err(match last_leader {
                    Some(leader) => ProposeError::NotLeader {
                        leader,
                        address: self.shared.transport.address_of(leader),
                    },
                    None => ProposeError::NoLeader,
                });
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// A linearizable read index: once it returns, this node's state reflects every write
    /// acknowledged anywhere before the call.
    pub async fn read_index(&self) -> Result<u64, ReadError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .events
            .send(Event::ReadIndex(reply))
            .map_err(|_| ReadError::Stopped)?;
        match tokio::time::timeout(self.shared.timing.request_timeout, answer).await {
            Ok(Ok(index)) => Ok(index),
            Ok(Err(_)) => Err(match self.disk_full() {
                Some(why) => ReadError::DiskFull(why),
                None => ReadError::Stopped,
            }),
            Err(_) => Err(ReadError::Timeout),
        }
    }

    /// Runs `read` on this node's state after a linearizable read index.
    pub async fn linearizable<R>(&self, read: impl FnOnce(&S) -> R) -> Result<R, ReadError> {
        self.read_index().await?;
        Ok(read(&self.state()))
    }

    /// This replica's state as applied so far (may lag the leader; see `linearizable`).
    pub fn state(&self) -> StateView<'_, S> {
        StateView {
            guard: self.shared.replica.read(),
        }
    }

    /// The applied index of this replica.
    pub fn applied_index(&self) -> u64 {
        *self.shared.applied.borrow()
    }

    /// Notified whenever the applied index advances (services stream from it).
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.shared.applied.clone()
    }

    /// Waits until this replica applied `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<u64, ReadError> {
        let mut applied = self.watch_applied();
        let reached = applied
            .wait_for(|applied| *applied >= index)
            .await
            .map_err(|_| ReadError::Stopped)?;
        Ok(*reached)
    }

    /// Whether this node leads right now.
    pub fn is_leader(&self) -> bool {
        self.shared.leadership.borrow().leader == Some(self.shared.id)
    }

    /// Leader and term as this node knows them.
    pub fn leadership(&self) -> Leadership {
        *self.shared.leadership.borrow()
    }

    /// Notified on every leader or term change; leader-only controllers start when it names this
    /// node and stop when it does not.
    pub fn watch_leadership(&self) -> watch::Receiver<Leadership> {
        self.shared.leadership.clone()
    }

    /// Why the raft thread stopped on its own, if it did (a failed write or fsync of the log, a
    /// damaged log, an entry from a newer hub; a full disk does not stop it, see
    /// [`NodeHandle::watch_disk_full`]). Notified once.
    pub fn watch_failure(&self) -> watch::Receiver<Option<String>> {
        self.shared.failure.clone()
    }

    /// Why this node refuses writes while the disk under its log is full; `None` while it takes
    /// them. Meanwhile it is out of the group: reads of [`NodeHandle::state`] go on,
    /// linearizable reads fail, and it rejoins by itself once a write to its log succeeds again.
    pub fn watch_disk_full(&self) -> watch::Receiver<Option<String>> {
        self.shared.disk_full.clone()
    }

    /// Why this node refuses writes right now, if its disk is full (see
    /// [`NodeHandle::watch_disk_full`]).
    pub fn disk_full(&self) -> Option<String> {
        self.shared.disk_full.borrow().clone()
    }

    /// Raft and state machine progress, without the state's hash (`state_hash` is empty).
    pub async fn status(&self) -> Result<NodeStatus, ProposeError<S>> {
        self.status_of(false).await
    }

    /// Raft and state machine progress with the hash of the state's canonical encoding, equal
    /// on replicas exactly when their states are. Serializes the whole state on the raft
    /// thread: for comparing replicas, not for polling.
    pub async fn status_with_state_hash(&self) -> Result<NodeStatus, ProposeError<S>> {
        self.status_of(true).await
    }

    async fn status_of(&self, with_hash: bool) -> Result<NodeStatus, ProposeError<S>> {
        let (reply, answer) = oneshot::channel();
        self.send(Event::Status(reply, with_hash))?;
        answer.await.map_err(|_| ProposeError::Stopped)
    }

    /// Starts an election on this node now (operators moving leadership, tests).
    pub fn campaign(&self) -> Result<(), ProposeError<S>> {
        self.send(Event::Campaign)
    }

    /// Stops the node: the raft thread ends (closing the data dir), every peer connection is
    /// cut and the listener closed. Safe to call more than once.
    pub async fn shutdown(&self) {
        let _ = self.shared.events.send(Event::Stop);
        let thread = self.shared.thread.lock().take();
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!(node = self.shared.id, "raft thread panicked");
            }
        }
        self.shared.transport.shutdown();
        self.shared.stop.cancel();
        let server = self.shared.server.lock().take();
        if let Some(server) = server {
            let _ = server.await;
        }
    }
}

async fn wait_outcome<S: StateMachine>(
    result: oneshot::Receiver<EntryOutcome<S::Rejection>>,
    index: u64,
    deadline: Instant,
) -> Result<Applied, ProposeError<S>> {
    match tokio::time::timeout_at(deadline, result).await {
        Err(_) => Err(ProposeError::Timeout { index: Some(index) }),
        Ok(Err(_)) => Err(ProposeError::Stopped),
        Ok(Ok(EntryOutcome::Applied)) => Ok(Applied { index }),
        Ok(Ok(EntryOutcome::Rejected(error))) => Err(ProposeError::Rejected { index, error }),
        Ok(Ok(EntryOutcome::Refused(why))) => Err(ProposeError::Refused(why)),
        Ok(Ok(EntryOutcome::Superseded)) => Err(ProposeError::Superseded { index }),
        Ok(Ok(EntryOutcome::Unknown)) => Err(ProposeError::Unknown { index }),
    }
}
