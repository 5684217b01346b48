//! Raft traffic between hub nodes over tonic: one long-lived, batched stream per peer for
//! ordinary messages, chunked uploads for snapshots, and a unary call that hands a follower's
//! proposal to the leader.
//!
//! Sending never blocks the raft thread: each peer has a task fed by an unbounded queue. A
//! failed stream is reported to raft (`report_unreachable`) and re-opened after a short pause;
//! raft resends whatever was lost. Every snapshot sent is reported as finished or failed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use flotilla_proto::v1::raft_peer_client::RaftPeerClient;
use flotilla_proto::v1::raft_peer_server::RaftPeer;
use flotilla_proto::v1::{
    PeerForwardReply, PeerForwardRequest, PeerHeader, PeerSnapshotChunk, PeerSnapshotInstalled,
    RaftBatch, RaftStreamClosed, peer_forward_reply, peer_forward_request,
};
use parking_lot::Mutex;
use protobuf::Message as _;
use raft::SnapshotStatus;
use raft::eraftpb::{ConfChangeV2, Message, MessageType};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::{NodeId, RequestId};

pub mod faults;
pub mod listener;
pub mod net;
pub mod routes;

use faults::{FaultPlan, Verdict};

/// Snapshot messages are uploaded in chunks of this size.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Largest snapshot a node accepts.
const MAX_SNAPSHOT_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Most messages in one batch.
const MAX_BATCH: usize = 256;

/// Pause before re-opening a failed stream.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// What the transport hands the raft thread.
pub(crate) enum Inbound {
    /// A message from a peer.
    Raft(Box<Message>),
    /// Sending to the peer failed.
    Unreachable(NodeId),
    /// A snapshot upload to the peer finished or failed.
    SnapshotReport(NodeId, SnapshotStatus),
    /// A follower handed this node a proposal: answer `reply` at once.
    Forwarded {
        /// What to append.
        proposal: Proposal,
        /// The immediate answer.
        reply: oneshot::Sender<ProposeReply>,
    },
}

/// Something to append to the log.
#[derive(Debug, Clone)]
pub(crate) enum Proposal {
    /// An encoded command and the id of the write it carries.
    Command {
        /// The write's id, the same in every copy of it.
        request: RequestId,
        /// The encoded command.
        bytes: Vec<u8>,
    },
    /// A membership change.
    ConfChange(ConfChangeV2),
}

/// The raft thread's immediate answer to a proposal.
#[derive(Debug, Clone)]
pub(crate) enum ProposeReply {
    Proposed { index: u64, term: u64 },
    NotLeader { leader: Option<NodeId> },
    Refused(String),
}

/// The raft thread is gone.
#[derive(Debug)]
pub(crate) struct Stopped;

/// Where inbound traffic goes: the raft thread's queue, whatever else that queue carries.
#[derive(Clone)]
pub(crate) struct Inbox(Arc<dyn Fn(Inbound) -> Result<(), Stopped> + Send + Sync>);

impl Inbox {
    /// An inbox that delivers through `deliver`.
    pub(crate) fn new(
        deliver: impl Fn(Inbound) -> Result<(), Stopped> + Send + Sync + 'static,
    ) -> Self {
        Inbox(Arc::new(deliver))
    }

    /// Delivers `inbound`, unless the raft thread stopped.
    pub(crate) fn send(&self, inbound: Inbound) -> Result<(), Stopped> {
        (self.0)(inbound)
    }
}

/// Outgoing raft traffic of one node.
pub(crate) struct Transport {
    id: NodeId,
    group: String,
    advertise: String,
    faults: Arc<FaultPlan>,
    runtime: tokio::runtime::Handle,
    events: Inbox,
    links: Mutex<HashMap<NodeId, Link>>,
    stop: CancellationToken,
    security: net::Security,
}

struct Link {
    address: String,
    queue: mpsc::UnboundedSender<Message>,
    task: JoinHandle<()>,
    channel: Channel,
}

/// Why a forwarded proposal did not reach the leader.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    /// No address is known for the node.
    #[error("no address known for node {0}")]
    UnknownPeer(NodeId),
    /// The call failed.
    #[error("node {node} did not answer: {status}")]
    Call {
        /// The node.
        node: NodeId,
        /// The gRPC status.
        status: Box<Status>,
    },
}

impl Transport {
    pub(crate) fn new(
        id: NodeId,
        group: String,
        advertise: String,
        faults: Arc<FaultPlan>,
        runtime: tokio::runtime::Handle,
        events: Inbox,
        security: net::Security,
    ) -> Self {
        Transport {
            security,
            id,
            group,
            advertise,
            faults,
            runtime,
            events,
            links: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
        }
    }

    fn header(&self, to: NodeId) -> PeerHeader {
        PeerHeader {
            group: self.group.clone(),
            from: self.id,
            to,
            from_address: self.advertise.clone(),
        }
    }

    /// Queues messages for their peers, applying the fault plan. Called from the raft thread.
    pub(crate) fn send(&self, messages: Vec<Message>) {
        let links = self.links.lock();
        for msg in messages {
            let to = msg.to;
            let is_snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
            let Some(link) = links.get(&to) else {
                tracing::debug!(to, "no address for peer; message dropped");
                self.report_failure(to, is_snapshot);
                continue;
            };
            match self.faults.verdict(self.id, to) {
                Verdict::Deliver => {
                    if link.queue.send(msg).is_err() {
                        self.report_failure(to, is_snapshot);
                    }
                }
                Verdict::Drop => self.report_failure(to, is_snapshot),
                Verdict::Delay(delay) => {
                    let queue = link.queue.clone();
                    let events = self.events.clone();
                    self.runtime.spawn(async move {
                        tokio::time::sleep(delay).await;
                        if queue.send(msg).is_err() && is_snapshot {
                            let _ =
                                events.send(Inbound::SnapshotReport(to, SnapshotStatus::Failure));
                        }
                    });
                }
            }
        }
    }

    fn report_failure(&self, to: NodeId, snapshot: bool) {
        if snapshot {
            let _ = self
                .events
                .send(Inbound::SnapshotReport(to, SnapshotStatus::Failure));
        }
    }

    /// Makes the links match the membership (id → address). An empty membership (a node waiting
    /// to join) keeps the links it learnt from incoming traffic.
    pub(crate) fn set_members(&self, members: &BTreeMap<NodeId, String>) {
        if members.is_empty() {
            return;
        }
        let mut links = self.links.lock();
        links.retain(|id, link| {
            let keep = members.get(id) == Some(&link.address);
            if !keep {
                link.task.abort();
            }
            keep
        });
        for (id, address) in members {
            if *id != self.id
                && !links.contains_key(id)
                && let Some(link) = self.open_link(*id, address)
            {
                links.insert(*id, link);
            }
        }
    }

    /// Records the address of a node that sent us traffic, if we had none for it.
    pub(crate) fn learn(&self, id: NodeId, address: &str) {
        if id == self.id || address.is_empty() {
            return;
        }
        let mut links = self.links.lock();
        if let std::collections::hash_map::Entry::Vacant(slot) = links.entry(id)
            && let Some(link) = self.open_link(id, address)
        {
            slot.insert(link);
        }
    }

    /// The address known for a node.
    pub(crate) fn address_of(&self, id: NodeId) -> Option<String> {
        self.links.lock().get(&id).map(|l| l.address.clone())
    }

    fn open_link(&self, to: NodeId, address: &str) -> Option<Link> {
        // Called from the raft thread too: tonic spawns the channel's worker on the runtime.
        let _runtime = self.runtime.enter();
        let channel = match net::channel(address, &self.security) {
            Ok(channel) => channel,
            Err(e) => {
                tracing::warn!(to, error = %e, "cannot reach peer");
                return None;
            }
        };
        let (queue, rx) = mpsc::unbounded_channel();
        let sender = LinkSender {
            to,
            header: self.header(to),
            channel: channel.clone(),
            events: self.events.clone(),
            stop: self.stop.clone(),
        };
        let task = self.runtime.spawn(sender.run(rx));
        Some(Link {
            address: address.to_owned(),
            queue,
            task,
            channel,
        })
    }

    /// Hands a proposal to the node `to` (the leader, we believe).
    pub(crate) async fn forward(
        &self,
        to: NodeId,
        proposal: &Proposal,
    ) -> Result<PeerForwardReply, ForwardError> {
        let channel = self
            .links
            .lock()
            .get(&to)
            .map(|l| l.channel.clone())
            .ok_or(ForwardError::UnknownPeer(to))?;
        if self.faults.is_blocked(self.id, to) {
            return Err(ForwardError::Call {
                node: to,
                status: Box::new(Status::unavailable("link cut by the fault plan")),
            });
        }
        let proposal_id = match proposal {
            Proposal::Command { request, .. } => Some(*request),
            Proposal::ConfChange(_) => None,
        };
        let proposal =
            match proposal {
                Proposal::Command { bytes, .. } => {
                    peer_forward_request::Proposal::Command(bytes.clone())
                }
                Proposal::ConfChange(cc) => peer_forward_request::Proposal::ConfChange(
                    cc.write_to_bytes().map_err(|e| ForwardError::Call {
                        node: to,
                        status: Box::new(Status::internal(e.to_string())),
                    })?,
                ),
            };
        let request_id = match proposal_id {
            Some(id) => id.as_bytes().to_vec(),
            None => Vec::new(),
        };
        let request = PeerForwardRequest {
            header: Some(self.header(to)),
            proposal: Some(proposal),
            request_id,
        };
        let mut client = RaftPeerClient::new(channel)
            .max_decoding_message_size(net::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(net::MAX_MESSAGE_BYTES);
        let answer = client
            .forward(request)
            .await
            .map(Response::into_inner)
            .map_err(|status| ForwardError::Call {
                node: to,
                status: Box::new(status),
            })?;
        if self.faults.forward_answer_lost(self.id, to) {
            return Err(ForwardError::Call {
                node: to,
                status: Box::new(Status::unavailable("answer lost by the fault plan")),
            });
        }
        Ok(answer)
    }

    /// Stops every sending task.
    pub(crate) fn shutdown(&self) {
        self.stop.cancel();
        for (_, link) in self.links.lock().drain() {
            link.task.abort();
        }
    }
}

/// The task that owns the stream to one peer.
struct LinkSender {
    to: NodeId,
    header: PeerHeader,
    channel: Channel,
    events: Inbox,
    stop: CancellationToken,
}

impl LinkSender {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Message>) {
        while let Some(first) = queue.recv().await {
            let mut pending = Some(first);
            if let Err(status) = self.stream(&mut queue, &mut pending).await {
                tracing::debug!(to = self.to, %status, "peer stream failed");
                let _ = self.events.send(Inbound::Unreachable(self.to));
                // Whatever queued up while the peer was away is stale; raft resends it. A
                // snapshot must still be reported, or raft waits for its outcome forever.
                tokio::select! {
                    _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
                    _ = self.stop.cancelled() => return,
                }
                while let Ok(msg) = queue.try_recv() {
                    if msg.get_msg_type() == MessageType::MsgSnapshot {
                        let _ = self
                            .events
                            .send(Inbound::SnapshotReport(self.to, SnapshotStatus::Failure));
                    }
                }
            }
        }
    }

    /// Streams batches until the stream fails or the queue closes.
    async fn stream(
        &self,
        queue: &mut mpsc::UnboundedReceiver<Message>,
        pending: &mut Option<Message>,
    ) -> Result<(), Status> {
        let (batches, rx) = mpsc::channel::<RaftBatch>(8);
        let mut client = RaftPeerClient::new(self.channel.clone())
            .max_decoding_message_size(net::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(net::MAX_MESSAGE_BYTES);
        let mut call = tokio::spawn(async move { client.stream(ReceiverStream::new(rx)).await });
        let result = loop {
            let first = match pending.take() {
                Some(msg) => msg,
                None => tokio::select! {
                    msg = queue.recv() => match msg {
                        Some(msg) => msg,
                        None => break Ok(()),
                    },
                    ended = &mut call => break Err(call_error(ended)),
                },
            };
            let mut messages = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                if msg.get_msg_type() == MessageType::MsgSnapshot {
                    tokio::spawn(send_snapshot(
                        self.channel.clone(),
                        self.header.clone(),
                        msg,
                        self.events.clone(),
                    ));
                } else {
                    match msg.write_to_bytes() {
                        Ok(bytes) => messages.push(bytes),
                        Err(e) => tracing::error!(error = %e, "cannot encode raft message"),
                    }
                }
                if messages.len() < MAX_BATCH {
                    next = queue.try_recv().ok();
                }
            }
            if messages.is_empty() {
                continue;
            }
            let batch = RaftBatch {
                header: Some(self.header.clone()),
                messages,
            };
            tokio::select! {
                sent = batches.send(batch) => if sent.is_err() {
                    break Err(Status::unavailable("stream closed"));
                },
                ended = &mut call => break Err(call_error(ended)),
            }
        };
        call.abort();
        result
    }
}

fn call_error(
    ended: Result<Result<Response<RaftStreamClosed>, Status>, tokio::task::JoinError>,
) -> Status {
    match ended {
        Ok(Ok(_)) => Status::unavailable("peer closed the stream"),
        Ok(Err(status)) => status,
        Err(e) => Status::internal(e.to_string()),
    }
}

/// Uploads one snapshot message in chunks and reports the outcome to raft.
async fn send_snapshot(channel: Channel, header: PeerHeader, msg: Message, events: Inbox) {
    let to = header.to;
    let result = async {
        let bytes = msg
            .write_to_bytes()
            .map_err(|e| Status::internal(e.to_string()))?;
        let total_len = bytes.len() as u64;
        tracing::info!(to, bytes = total_len, "sending snapshot");
        let chunks: Vec<PeerSnapshotChunk> = bytes
            .chunks(SNAPSHOT_CHUNK_BYTES)
            .enumerate()
            .map(|(i, data)| PeerSnapshotChunk {
                header: Some(header.clone()),
                total_len,
                offset: (i * SNAPSHOT_CHUNK_BYTES) as u64,
                data: data.to_vec(),
            })
            .collect();
        let mut client = RaftPeerClient::new(channel)
            .max_decoding_message_size(net::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(net::MAX_MESSAGE_BYTES);
        client
            .install_snapshot(tokio_stream::iter(chunks))
            .await
            .map(|_| total_len)
    }
    .await;
    let status = match result {
        Ok(bytes) => {
            tracing::info!(to, bytes, "snapshot sent");
            SnapshotStatus::Finish
        }
        Err(status) => {
            tracing::warn!(to, %status, "snapshot upload failed");
            let _ = events.send(Inbound::Unreachable(to));
            SnapshotStatus::Failure
        }
    };
    let _ = events.send(Inbound::SnapshotReport(to, status));
}

/// The receiving side: steps incoming raft traffic into the local node.
pub(crate) struct PeerService {
    pub(crate) id: NodeId,
    pub(crate) group: String,
    pub(crate) events: Inbox,
    pub(crate) transport: Arc<Transport>,
}

impl PeerService {
    fn check(&self, header: Option<&PeerHeader>) -> Result<NodeId, Status> {
        let header = header.ok_or_else(|| Status::invalid_argument("missing peer header"))?;
        if header.group != self.group || header.to != self.id {
            return Err(Status::failed_precondition(format!(
                "this is node {} of group '{}', not node {} of group '{}'; check the peer addresses",
                self.id, self.group, header.to, header.group
            )));
        }
        self.transport.learn(header.from, &header.from_address);
        Ok(header.from)
    }

    fn step(&self, msg: Message) -> Result<(), Status> {
        self.events
            .send(Inbound::Raft(Box::new(msg)))
            .map_err(|_| Status::unavailable("hub node is stopping"))
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn stream(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<RaftStreamClosed>, Status> {
        let mut stream = request.into_inner();
        while let Some(batch) = stream.message().await? {
            let from = self.check(batch.header.as_ref())?;
            for bytes in batch.messages {
                let msg = Message::parse_from_bytes(&bytes).map_err(|e| {
                    Status::invalid_argument(format!("undecodable raft message from {from}: {e}"))
                })?;
                self.step(msg)?;
            }
        }
        Ok(Response::new(RaftStreamClosed {}))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<PeerSnapshotChunk>>,
    ) -> Result<Response<PeerSnapshotInstalled>, Status> {
        let mut stream = request.into_inner();
        let mut buffer: Vec<u8> = Vec::new();
        let mut expected_len = None;
        while let Some(chunk) = stream.message().await? {
            self.check(chunk.header.as_ref())?;
            let total = *expected_len.get_or_insert(chunk.total_len);
            if chunk.total_len != total || total > MAX_SNAPSHOT_BYTES {
                return Err(Status::invalid_argument("inconsistent snapshot length"));
            }
            if chunk.offset != buffer.len() as u64 {
                return Err(Status::invalid_argument(format!(
                    "snapshot chunk at offset {} where {} was expected",
                    chunk.offset,
                    buffer.len()
                )));
            }
            buffer.extend_from_slice(&chunk.data);
            if buffer.len() as u64 > total {
                return Err(Status::invalid_argument("snapshot longer than announced"));
            }
        }
        if expected_len != Some(buffer.len() as u64) {
            return Err(Status::invalid_argument("snapshot upload ended early"));
        }
        let msg = Message::parse_from_bytes(&buffer)
            .map_err(|e| Status::invalid_argument(format!("undecodable snapshot: {e}")))?;
        self.step(msg)?;
        Ok(Response::new(PeerSnapshotInstalled {}))
    }

    async fn forward(
        &self,
        request: Request<PeerForwardRequest>,
    ) -> Result<Response<PeerForwardReply>, Status> {
        let request = request.into_inner();
        self.check(request.header.as_ref())?;
        let proposal = match request.proposal {
            Some(peer_forward_request::Proposal::Command(bytes)) => Proposal::Command {
                request: RequestId::from_context(&request.request_id).ok_or_else(|| {
                    Status::invalid_argument("a forwarded command needs a 16-byte request id")
                })?,
                bytes,
            },
            Some(peer_forward_request::Proposal::ConfChange(bytes)) => {
                Proposal::ConfChange(ConfChangeV2::parse_from_bytes(&bytes).map_err(|e| {
                    Status::invalid_argument(format!("undecodable conf change: {e}"))
                })?)
            }
            None => return Err(Status::invalid_argument("empty proposal")),
        };
        let (reply, answer) = oneshot::channel();
        self.events
            .send(Inbound::Forwarded { proposal, reply })
            .map_err(|_| Status::unavailable("hub node is stopping"))?;
        let answer = answer
            .await
            .map_err(|_| Status::unavailable("hub node is stopping"))?;
        let outcome = match answer {
            ProposeReply::Proposed { index, term } => {
                peer_forward_reply::Outcome::Proposed(flotilla_proto::v1::PeerProposed {
                    index,
                    term,
                })
            }
            ProposeReply::NotLeader { leader } => {
                let leader = leader.unwrap_or(0);
                peer_forward_reply::Outcome::NotLeader(flotilla_proto::v1::PeerNotLeader {
                    leader,
                    leader_address: self.transport.address_of(leader).unwrap_or_default(),
                })
            }
            ProposeReply::Refused(why) => peer_forward_reply::Outcome::Refused(why),
        };
        Ok(Response::new(PeerForwardReply {
            outcome: Some(outcome),
        }))
    }
}
