//! The raft thread: the only owner of the `RawNode`. It waits for events (peer messages,
//! proposals, reads, transport reports) or the next tick, then handles the node's `Ready` in
//! raft-rs's order — see `on_ready`, the one place that order lives.
//!
//! A plain thread rather than a task: every ready ends in an fsync, which must not stall the
//! async runtime that serves peers and agents.
//!
//! A failed write stops the thread for good (`Fatal`): after a failed fsync nothing tells what
//! reached the disk, so the node must restart from what its log holds, as etcd does. A full disk
//! is the one exception, since freeing space is an operator's routine fix: the thread drops the
//! raft node and its log (redb refuses every later write on an open log after an I/O error),
//! keeps the replica, and waits out of the group (`wait_for_space`): proposals to it are refused
//! at once with the store's message, reads of its replica go on, linearizable reads fail, and
//! about once a second it opens the log again and writes the hard state back durably. Once that
//! works it builds a new raft node from the log (`raft_node`, as at start) and catches up like a
//! restarted follower — on probation: a log file with free pages takes a small write on a full
//! device, so the node goes on refusing proposals and reads until its raft node has run a
//! second without filling the disk (`end_probation`); if it fills it again, it waits again.
//! What holds meanwhile:
//!
//! - nothing acknowledged is lost: the node sends the messages that acknowledge entries or votes
//!   only after they are durable, and applies only entries it persisted, so everything in its
//!   replica is in its log and every acknowledgement it gave stands;
//! - the rest of the group goes on while a quorum of it has space: to them the node is silent,
//!   as if partitioned (a full leader stops heartbeating, and the others elect a new one);
//! - its replica never moves back: the new raft node replays the log from the stored snapshot,
//!   and entries the replica already applied only give raft back its configuration changes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Snapshot, SnapshotMetadata,
};
use raft::{RawNode, StateRole, Storage};
use tokio::sync::{oneshot, watch};

use super::logging;
use super::waiters::{EntryKind, Proposals, Proposed, Reads};
use super::{EntryOutcome, Event, Leadership, NodeStatus, Replica, Role};
use crate::config::Timing;
use crate::storage::{Identity, RaftStore, SimulatedDisk, StoreError};
use crate::transport::{Inbound, Proposal, ProposeReply, Transport};
use crate::{NodeId, RequestId, StateMachine};

mod disk_full;

use disk_full::DiskFull;

/// Events handled between two readies at most, so ticks are never starved.
const MAX_EVENTS_PER_ROUND: usize = 4096;

/// The raft node over a node's log.
pub(super) type Raw = RawNode<RaftStore>;

/// Where a node's raft log lives, so the raft thread can open it again.
pub(super) struct LogLocation {
    /// The data dir.
    pub(super) dir: PathBuf,
    /// The node and group the log must belong to.
    pub(super) identity: Identity,
    /// Tests only: the simulated disk the log is on.
    pub(super) disk: Option<SimulatedDisk>,
}

impl LogLocation {
    /// Opens the log, checking it belongs to this node and is whole.
    pub(super) fn open(&self) -> Result<RaftStore, StoreError> {
        RaftStore::open_on(&self.dir, &self.identity, self.disk.as_ref())
    }
}

/// A raft node over `store`, with the store's snapshot as its applied index: raft hands out the
/// committed entries after it again. Campaigns at once when the stored configuration has this
/// node as its only voter: nobody else can win, and waiting an election timeout would only
/// delay the first write.
pub(super) fn raft_node(id: NodeId, timing: &Timing, store: RaftStore) -> Result<Raw, raft::Error> {
    let snapshot = store.snapshot_metadata();
    let sole_voter = snapshot.get_conf_state().voters == [id];
    let config = raft::Config {
        id,
        election_tick: timing.election_ticks,
        heartbeat_tick: timing.heartbeat_ticks,
        applied: snapshot.index,
        check_quorum: true,
        pre_vote: true,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        ..raft::Config::default()
    };
    config.validate()?;
    let mut raw = RawNode::new(&config, store, &logging::raft_logger(id))?;
    if sole_voter {
        raw.campaign()?;
    }
    Ok(raw)
}

/// Why the raft thread stopped on its own. The node cannot go on safely after any of these —
/// except a full disk (`StoreError::DiskFull`), which `run` waits out instead.
#[derive(Debug, thiserror::Error)]
pub(super) enum Fatal<S: StateMachine> {
    /// The log could not be written or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// raft reported an error while reading its log.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// A committed entry is from a newer hub or damaged: applying anything after it would diverge.
    #[error("cannot apply log entry {index}: {source}")]
    Undecodable {
        /// The entry.
        index: u64,
        /// Why.
        source: S::DecodeError,
    },
    /// A snapshot could not be read or written.
    #[error("state snapshot: {0}")]
    Snapshot(S::SnapshotError),
}

/// Everything the raft thread owns besides the raft node, which `run` holds: a full disk
/// replaces the raft node, and the rest stays.
pub(super) struct Driver<S: StateMachine> {
    pub(super) id: NodeId,
    pub(super) log: LogLocation,
    pub(super) events: Receiver<Event<S::Rejection>>,
    pub(super) transport: Arc<Transport>,
    pub(super) replica: Arc<RwLock<Replica<S>>>,
    pub(super) applied_tx: watch::Sender<u64>,
    pub(super) leadership_tx: watch::Sender<Leadership>,
    pub(super) failure_tx: watch::Sender<Option<String>>,
    pub(super) disk_full_tx: watch::Sender<Option<String>>,
    /// Set while the disk is full, and while the raft node rebuilt after that is on probation.
    pub(super) disk_full: Option<DiskFull>,
    pub(super) timing: Timing,
    pub(super) compact_after: u64,
    pub(super) proposals: Proposals<S::Rejection>,
    pub(super) reads: Reads,
    pub(super) ticks: u64,
    pub(super) next_read: u64,
}

impl<S: StateMachine> Driver<S> {
    /// Runs `raw` until told to stop, or until an error makes going on unsafe; while the disk
    /// is full, without a raft node (see the module docs).
    pub(super) fn run(mut self, mut raw: Raw) {
        loop {
            let fatal = match self.serve(&mut raw) {
                Ok(()) => break,
                Err(Fatal::Store(full @ StoreError::DiskFull { .. })) => {
                    let last = self.status(&raw, true);
                    // redb refuses every later write on this open log: it must be opened again.
                    drop(raw);
                    match self.wait_for_space(full, last) {
                        Ok(Some(reopened)) => {
                            raw = reopened;
                            continue;
                        }
                        Ok(None) => break,
                        Err(fatal) => fatal,
                    }
                }
                Err(fatal) => fatal,
            };
            tracing::error!(node = self.id, error = %fatal, "raft node stopped");
            let _ = self.failure_tx.send(Some(fatal.to_string()));
            break;
        }
        tracing::debug!(node = self.id, "raft thread exiting");
    }

    /// Runs `raw` until told to stop (`Ok`) or a ready fails.
    fn serve(&mut self, raw: &mut Raw) -> Result<(), Fatal<S>> {
        let mut next_tick = Instant::now() + self.timing.tick;
        self.publish_leadership(raw);
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let first = match self.events.recv_timeout(wait) {
                Ok(event) => Some(event),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            let more = std::iter::from_fn(|| self.events.try_recv().ok());
            for event in first
                .into_iter()
                .chain(more.take(MAX_EVENTS_PER_ROUND).collect::<Vec<_>>())
            {
                if matches!(event, Event::Stop) {
                    return Ok(());
                }
                self.handle(raw, event);
            }
            if Instant::now() >= next_tick {
                self.tick(raw);
                next_tick += self.timing.tick;
                let now = Instant::now();
                if next_tick < now {
                    next_tick = now + self.timing.tick;
                }
            }
            self.on_ready(raw)?;
            self.end_probation();
        }
    }

    fn handle(&mut self, raw: &mut Raw, event: Event<S::Rejection>) {
        match event {
            Event::Peer(Inbound::Raft(msg)) => {
                if let Err(e) = raw.step(*msg) {
                    tracing::debug!(error = %e, "raft message not stepped");
                }
            }
            Event::Peer(Inbound::Forwarded { proposal, reply }) => {
                // The follower that forwarded it waits for the entry itself (`Event::Await`).
                let _ = reply.send(Self::propose(raw, proposal));
            }
            Event::Peer(Inbound::Unreachable(peer)) => raw.report_unreachable(peer),
            Event::Peer(Inbound::SnapshotReport(peer, status)) => raw.report_snapshot(peer, status),
            Event::Propose { reply, .. } if self.disk_full.is_some() => {
                let _ = reply.send(self.refusal());
            }
            Event::Propose {
                proposal,
                reply,
                outcome,
            } => {
                let (request, conf_change) = match &proposal {
                    Proposal::Command { request, .. } => (Some(*request), false),
                    Proposal::ConfChange(_) => (None, true),
                };
                let answer = Self::propose(raw, proposal);
                if let ProposeReply::Proposed { index, term } = &answer {
                    let proposed = Proposed {
                        index: *index,
                        term: *term,
                        request,
                        conf_change,
                    };
                    self.await_entry(proposed, outcome);
                }
                let _ = reply.send(answer);
            }
            Event::Await { proposed, outcome } => self.await_entry(proposed, outcome),
            // Dropping the reply fails the read; its caller finds why in the disk-full watch.
            Event::ReadIndex(_) if self.disk_full.is_some() => {}
            Event::ReadIndex(reply) => {
                self.next_read += 1;
                let ctx = self.next_read;
                self.reads.add(ctx, reply, self.ticks);
                raw.read_index(self.read_context(ctx));
            }
            Event::Status(reply, with_hash) => {
                let _ = reply.send(self.status(raw, with_hash));
            }
            Event::Campaign => {
                if let Err(e) = raw.campaign() {
                    tracing::debug!(error = %e, "campaign refused");
                }
            }
            Event::Stop => {}
        }
    }

    /// Answers `outcome` when the proposed entry applies (at once if it already did).
    fn await_entry(
        &mut self,
        proposed: Proposed,
        outcome: oneshot::Sender<EntryOutcome<S::Rejection>>,
    ) {
        let replica = self.replica.read();
        self.proposals
            .register(proposed, outcome, replica.applied, |request| {
                replica.state.request_outcome(request)
            });
    }

    /// Read contexts carry the node id, so reads of different nodes never share one at the leader.
    fn read_context(&self, ctx: u64) -> Vec<u8> {
        let mut bytes = self.id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&ctx.to_be_bytes());
        bytes
    }

    fn tick(&mut self, raw: &mut Raw) {
        raw.tick();
        self.ticks += 1;
        let every = (2 * self.timing.heartbeat_ticks) as u64;
        for ctx in self.reads.due(self.ticks, every) {
            raw.read_index(self.read_context(ctx));
        }
        if self.ticks.is_multiple_of(16) {
            self.proposals.sweep();
        }
    }

    fn propose(raw: &mut Raw, proposal: Proposal) -> ProposeReply {
        let raft = &raw.raft;
        if raft.state != StateRole::Leader {
            return ProposeReply::NotLeader {
                leader: (raft.leader_id != 0).then_some(raft.leader_id),
            };
        }
        let before = raft.raft_log.last_index();
        let result = match proposal {
            Proposal::Command { request, bytes } => raw.propose(request.as_bytes().to_vec(), bytes),
            Proposal::ConfChange(cc) => {
                if raw.raft.has_pending_conf() {
                    return ProposeReply::Refused(
                        "a membership change is still being applied; retry when it is done".into(),
                    );
                }
                if let Some(successor) = removes_self_as_leader(raw, &cc) {
                    // A leader cannot remove itself cleanly: hand leadership over first, and let
                    // the caller retry on the new leader.
                    raw.transfer_leader(successor);
                    return ProposeReply::NotLeader { leader: None };
                }
                raw.propose_conf_change(vec![], cc)
            }
        };
        let raft = &raw.raft;
        match result {
            Ok(()) if raft.raft_log.last_index() > before => ProposeReply::Proposed {
                index: raft.raft_log.last_index(),
                term: raft.term,
            },
            Ok(()) | Err(raft::Error::ProposalDropped) => ProposeReply::NotLeader { leader: None },
            Err(e) => ProposeReply::Refused(e.to_string()),
        }
    }

    /// Handles one `Ready` in raft-rs's order: send messages, apply the snapshot, apply
    /// committed entries, append entries, persist the hard state, send the messages that had to
    /// wait for persistence, advance — then the same for the light ready advance returns.
    fn on_ready(&mut self, raw: &mut Raw) -> Result<(), Fatal<S>> {
        if !raw.has_ready() {
            return Ok(());
        }
        let mut ready = raw.ready();
        self.transport.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.install_snapshot(raw, ready.snapshot())?;
        }
        self.apply_committed(raw, ready.take_committed_entries())?;
        // One fsync per ready at most: an append followed by a hard-state write is made durable
        // by that write; a ready that only moves the commit index needs none (`must_sync`).
        let must_sync = ready.must_sync();
        let store = raw.mut_store();
        store.append(ready.entries(), ready.hs().is_none())?;
        if let Some(hs) = ready.hs() {
            store.set_hard_state(hs, must_sync)?;
        }
        for read in ready.take_read_states() {
            if let Some(ctx) = read.request_ctx.get(8..16).and_then(|b| b.try_into().ok()) {
                self.reads.confirmed(u64::from_be_bytes(ctx), read.index);
            }
        }
        self.transport.send(ready.take_persisted_messages());
        let mut light = raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            raw.mut_store().set_commit(commit)?;
        }
        self.transport.send(light.take_messages());
        self.apply_committed(raw, light.take_committed_entries())?;
        raw.advance_apply();
        self.publish_leadership(raw);
        self.reads.release(self.replica.read().applied);
        self.maybe_compact(raw)
    }

    /// Replaces the log and the state machine with a snapshot from the leader.
    fn install_snapshot(&mut self, raw: &mut Raw, snapshot: &Snapshot) -> Result<(), Fatal<S>> {
        raw.mut_store().apply_snapshot(snapshot)?;
        self.restore(snapshot.get_metadata().index, &snapshot.data)
    }

    /// Replaces the state machine with a snapshot's image taken at `index`, unless the replica
    /// is already there.
    fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), Fatal<S>> {
        let state = S::restore(data).map_err(Fatal::Snapshot)?;
        let members = state.members().clone();
        {
            let mut replica = self.replica.write();
            if index <= replica.applied {
                return Ok(());
            }
            *replica = Replica {
                applied: index,
                state,
            };
        }
        tracing::info!(node = self.id, index, "installed snapshot");
        let replica = self.replica.read();
        self.proposals
            .unknown_through(index, |request| replica.state.request_outcome(request));
        drop(replica);
        self.transport.set_members(&members);
        let _ = self.applied_tx.send(index);
        Ok(())
    }

    fn apply_committed(&mut self, raw: &mut Raw, entries: Vec<Entry>) -> Result<(), Fatal<S>> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        tracing::trace!(first = entries[0].index, last, "applying committed entries");
        let replica = Arc::clone(&self.replica);
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut members = None;
        {
            let mut replica = replica.write();
            for entry in entries {
                if entry.index <= replica.applied {
                    // A raft node rebuilt after a full disk replays what the replica already
                    // applied: raft needs the configuration changes back, the state nothing.
                    if is_conf_change(&entry) {
                        let _ = apply_conf_change_to_raft(raw, &entry);
                    }
                    continue;
                }
                let (kind, outcome) = match entry.get_entry_type() {
                    EntryType::EntryNormal if entry.data.is_empty() => {
                        (EntryKind::Empty, EntryOutcome::Applied)
                    }
                    EntryType::EntryNormal => {
                        let command = S::decode_command(&entry.data).map_err(|source| {
                            Fatal::Undecodable {
                                index: entry.index,
                                source,
                            }
                        })?;
                        let request = RequestId::from_context(&entry.context);
                        let outcome = match replica.state.apply_command(&command, request) {
                            Ok(()) => EntryOutcome::Applied,
                            Err(e) => EntryOutcome::Rejected(e),
                        };
                        (EntryKind::Command, outcome)
                    }
                    EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                        let outcome = apply_conf_change(raw, &entry, &mut replica.state);
                        members = Some(replica.state.members().clone());
                        (EntryKind::ConfChange, outcome)
                    }
                };
                replica.applied = entry.index;
                outcomes.push((entry.index, entry.term, kind, outcome));
            }
        }
        // Entries at or below the applied index are skipped above, so `last` never moves back.
        let _ = self.applied_tx.send_if_modified(|applied| {
            let moved = last > *applied;
            *applied = (*applied).max(last);
            moved
        });
        let state = self.replica.read();
        for (index, term, kind, outcome) in outcomes {
            self.proposals
                .resolve(index, term, kind, outcome, |request| {
                    state.state.request_outcome(request)
                });
        }
        drop(state);
        if let Some(members) = members {
            self.transport.set_members(&members);
        }
        Ok(())
    }

    /// Takes a snapshot of the state machine and drops the log it covers, every `compact_after`
    /// entries, or sooner when a peer needs a snapshot newer than the stored one.
    fn maybe_compact(&mut self, raw: &mut Raw) -> Result<(), Fatal<S>> {
        let store = raw.store();
        let snapshot_index = store.snapshot_metadata().index;
        let replica = self.replica.read();
        let applied = replica.applied;
        let due = applied.saturating_sub(snapshot_index) >= self.compact_after;
        let wanted = store.wanted_snapshot().is_some_and(|w| w <= applied);
        // Until a rebuilt raft node replayed up to the replica, its configuration is older than
        // the replica's state, and a snapshot must carry both at the same index.
        let replaying = raw.raft.raft_log.applied < applied;
        if applied <= snapshot_index || !(due || wanted) || replaying {
            return Ok(());
        }
        let mut meta = SnapshotMetadata {
            index: applied,
            term: store.term(applied)?,
            ..SnapshotMetadata::default()
        };
        meta.set_conf_state(raw.raft.prs().conf().to_conf_state());
        let data = replica.state.snapshot().map_err(Fatal::Snapshot)?;
        drop(replica);
        raw.mut_store().compact(&meta, &data)?;
        tracing::debug!(
            node = self.id,
            index = applied,
            bytes = data.len(),
            "log compacted"
        );
        Ok(())
    }

    fn publish_leadership(&self, raw: &Raw) {
        let raft = &raw.raft;
        self.publish(Leadership {
            leader: (raft.leader_id != 0).then_some(raft.leader_id),
            term: raft.term,
        });
    }

    fn publish(&self, now: Leadership) {
        self.leadership_tx.send_if_modified(|old| {
            let changed = *old != now;
            *old = now;
            changed
        });
    }

    /// Progress; `with_hash` also hashes the state's canonical encoding (the whole state
    /// serialized: at ten thousand clusters long enough to stall this thread, so only asked for
    /// by tests and operators comparing replicas).
    fn status(&self, raw: &Raw, with_hash: bool) -> NodeStatus {
        let raft = &raw.raft;
        let replica = self.replica.read();
        NodeStatus {
            id: raft.id,
            role: match raft.state {
                StateRole::Leader => Role::Leader,
                StateRole::Follower => Role::Follower,
                StateRole::Candidate => Role::Candidate,
                StateRole::PreCandidate => Role::PreCandidate,
            },
            leader: (raft.leader_id != 0).then_some(raft.leader_id),
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: replica.applied,
            first_index: raw.store().snapshot_metadata().index + 1,
            last_index: raft.raft_log.last_index(),
            ticks: self.ticks,
            voters: raft.prs().conf().voters().ids().iter().collect(),
            members: replica.state.members().clone(),
            state_hash: if with_hash {
                replica.state.digest().unwrap_or_default()
            } else {
                String::new()
            },
            matched: if raft.state == StateRole::Leader {
                let voters = raft.prs().conf().voters().ids();
                raft.prs()
                    .iter()
                    .filter(|(id, _)| **id != raft.id && voters.contains(**id))
                    .map(|(id, progress)| (*id, progress.matched))
                    .collect()
            } else {
                BTreeMap::new()
            },
            disk_full: self.disk_full.as_ref().map(|full| full.why.clone()),
        }
    }
}

/// If `cc` removes this node while it leads, the best-replicated other voter.
fn removes_self_as_leader(raw: &Raw, cc: &ConfChangeV2) -> Option<u64> {
    let id = raw.raft.id;
    let removes_self = cc
        .changes
        .iter()
        .any(|c| c.node_id == id && c.get_change_type() == ConfChangeType::RemoveNode);
    if !removes_self {
        return None;
    }
    let voters = raw.raft.prs().conf().voters().ids();
    raw.raft
        .prs()
        .iter()
        .filter(|(peer, _)| **peer != id && voters.contains(**peer))
        .max_by_key(|(_, progress)| progress.matched)
        .map(|(peer, _)| *peer)
}

fn is_conf_change(entry: &Entry) -> bool {
    matches!(
        entry.get_entry_type(),
        EntryType::EntryConfChange | EntryType::EntryConfChangeV2
    )
}

/// Applies a committed membership change to raft and to the state machine's member list.
fn apply_conf_change<S: StateMachine>(
    raw: &mut Raw,
    entry: &Entry,
    state: &mut S,
) -> EntryOutcome<S::Rejection> {
    let cc = match apply_conf_change_to_raft(raw, entry) {
        Ok(cc) => cc,
        Err(why) => return EntryOutcome::Refused(why),
    };
    let address = String::from_utf8_lossy(&cc.context).into_owned();
    for change in cc.changes.iter() {
        match change.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                state.change_member(change.node_id, Some(address.clone()));
            }
            ConfChangeType::RemoveNode => state.change_member(change.node_id, None),
        }
    }
    tracing::info!(
        node = raw.raft.id,
        index = entry.index,
        voters = ?raw.raft.prs().conf().voters().ids().iter().collect::<Vec<_>>(),
        "membership changed"
    );
    EntryOutcome::Applied
}

/// Applies a committed membership change to raft's configuration only.
fn apply_conf_change_to_raft(raw: &mut Raw, entry: &Entry) -> Result<ConfChangeV2, String> {
    let cc = match entry.get_entry_type() {
        EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&entry.data),
        _ => ConfChange::parse_from_bytes(&entry.data).map(|cc| v1_to_v2(&cc)),
    }
    .map_err(|e| format!("undecodable membership change: {e}"))?;
    raw.apply_conf_change(&cc)
        .map_err(|e| format!("membership change refused by raft: {e}"))?;
    Ok(cc)
}

/// raft-rs converts legacy conf changes only through a trait it does not export; the mapping is
/// one change with the same context.
fn v1_to_v2(cc: &ConfChange) -> ConfChangeV2 {
    let mut single = raft::eraftpb::ConfChangeSingle {
        node_id: cc.node_id,
        ..Default::default()
    };
    single.set_change_type(cc.get_change_type());
    ConfChangeV2 {
        changes: vec![single].into(),
        context: cc.context.clone(),
        ..Default::default()
    }
}
