//! The raft thread: the only owner of the `RawNode`. It waits for events (peer messages,
//! proposals, reads, transport reports) or the next tick, then handles the node's `Ready` in
//! raft-rs's order — see `on_ready`, the one place that order lives.
//!
//! A plain thread rather than a task: every ready ends in an fsync, which must not stall the
//! async runtime that serves peers and agents.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use parking_lot::RwLock;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Snapshot, SnapshotMetadata,
};
use raft::{RawNode, StateRole, Storage};
use tokio::sync::{oneshot, watch};

use super::waiters::{EntryKind, Proposals, Proposed, Reads};
use super::{EntryOutcome, Event, Leadership, NodeStatus, Replica, Role};
use crate::config::Timing;
use crate::storage::{RaftStore, StoreError};
use crate::transport::{Inbound, Proposal, ProposeReply, Transport};
use crate::{RequestId, StateMachine};

/// Events handled between two readies at most, so ticks are never starved.
const MAX_EVENTS_PER_ROUND: usize = 4096;

/// Why the raft thread stopped on its own. The node cannot go on safely after any of these.
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

/// Everything the raft thread owns.
pub(super) struct Driver<S: StateMachine> {
    pub(super) raw: RawNode<RaftStore>,
    pub(super) events: Receiver<Event<S::Rejection>>,
    pub(super) transport: Arc<Transport>,
    pub(super) replica: Arc<RwLock<Replica<S>>>,
    pub(super) applied_tx: watch::Sender<u64>,
    pub(super) leadership_tx: watch::Sender<Leadership>,
    pub(super) failure_tx: watch::Sender<Option<String>>,
    pub(super) timing: Timing,
    pub(super) compact_after: u64,
    pub(super) proposals: Proposals<S::Rejection>,
    pub(super) reads: Reads,
    pub(super) ticks: u64,
    pub(super) next_read: u64,
}

impl<S: StateMachine> Driver<S> {
    /// Runs until told to stop, or until an error makes going on unsafe.
    pub(super) fn run(mut self) {
        let id = self.raw.raft.id;
        let mut next_tick = Instant::now() + self.timing.tick;
        self.publish_leadership();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let first = match self.events.recv_timeout(wait) {
                Ok(event) => Some(event),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut stop = false;
            let more = std::iter::from_fn(|| self.events.try_recv().ok());
            for event in first
                .into_iter()
                .chain(more.take(MAX_EVENTS_PER_ROUND).collect::<Vec<_>>())
            {
                if matches!(event, Event::Stop) {
                    stop = true;
                    break;
                }
                self.handle(event);
            }
            if stop {
                break;
            }
            if Instant::now() >= next_tick {
                self.tick();
                next_tick += self.timing.tick;
                let now = Instant::now();
                if next_tick < now {
                    next_tick = now + self.timing.tick;
                }
            }
            if let Err(fatal) = self.on_ready() {
                tracing::error!(node = id, error = %fatal, "raft node stopped");
                let _ = self.failure_tx.send(Some(fatal.to_string()));
                break;
            }
        }
        tracing::debug!(node = id, "raft thread exiting");
    }

    fn handle(&mut self, event: Event<S::Rejection>) {
        match event {
            Event::Peer(Inbound::Raft(msg)) => {
                if let Err(e) = self.raw.step(*msg) {
                    tracing::debug!(error = %e, "raft message not stepped");
                }
            }
            Event::Peer(Inbound::Forwarded { proposal, reply }) => {
                // The follower that forwarded it waits for the entry itself (`Event::Await`).
                let _ = reply.send(self.propose(proposal));
            }
            Event::Peer(Inbound::Unreachable(peer)) => self.raw.report_unreachable(peer),
            Event::Peer(Inbound::SnapshotReport(peer, status)) => {
                self.raw.report_snapshot(peer, status)
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
                let answer = self.propose(proposal);
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
            Event::Await {
                index,
                term,
                request,
                conf_change,
                outcome,
            } => {
                let proposed = Proposed {
                    index,
                    term,
                    request,
                    conf_change,
                };
                self.await_entry(proposed, outcome);
            }
            Event::ReadIndex(reply) => {
                self.next_read += 1;
                let ctx = self.next_read;
                self.reads.add(ctx, reply, self.ticks);
                self.raw.read_index(self.read_context(ctx));
            }
            Event::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Event::Campaign => {
                if let Err(e) = self.raw.campaign() {
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
        let mut bytes = self.raw.raft.id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&ctx.to_be_bytes());
        bytes
    }

    fn tick(&mut self) {
        self.raw.tick();
        self.ticks += 1;
        let every = (2 * self.timing.heartbeat_ticks) as u64;
        for ctx in self.reads.due(self.ticks, every) {
            self.raw.read_index(self.read_context(ctx));
        }
        if self.ticks.is_multiple_of(16) {
            self.proposals.sweep();
        }
    }

    fn propose(&mut self, proposal: Proposal) -> ProposeReply {
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader {
            return ProposeReply::NotLeader {
                leader: (raft.leader_id != 0).then_some(raft.leader_id),
            };
        }
        let before = raft.raft_log.last_index();
        let result = match proposal {
            Proposal::Command { request, bytes } => {
                self.raw.propose(request.as_bytes().to_vec(), bytes)
            }
            Proposal::ConfChange(cc) => {
                if self.raw.raft.has_pending_conf() {
                    return ProposeReply::Refused(
                        "a membership change is still being applied; retry when it is done".into(),
                    );
                }
                if let Some(successor) = self.removes_self_as_leader(&cc) {
                    // A leader cannot remove itself cleanly: hand leadership over first, and let
                    // the caller retry on the new leader.
                    self.raw.transfer_leader(successor);
                    return ProposeReply::NotLeader { leader: None };
                }
                self.raw.propose_conf_change(vec![], cc)
            }
        };
        let raft = &self.raw.raft;
        match result {
            Ok(()) if raft.raft_log.last_index() > before => ProposeReply::Proposed {
                index: raft.raft_log.last_index(),
                term: raft.term,
            },
            Ok(()) | Err(raft::Error::ProposalDropped) => ProposeReply::NotLeader { leader: None },
            Err(e) => ProposeReply::Refused(e.to_string()),
        }
    }

    /// If `cc` removes this node while it leads, the best-replicated other voter.
    fn removes_self_as_leader(&self, cc: &ConfChangeV2) -> Option<u64> {
        let id = self.raw.raft.id;
        let removes_self = cc
            .changes
            .iter()
            .any(|c| c.node_id == id && c.get_change_type() == ConfChangeType::RemoveNode);
        if !removes_self {
            return None;
        }
        let voters = self.raw.raft.prs().conf().voters().ids();
        self.raw
            .raft
            .prs()
            .iter()
            .filter(|(peer, _)| **peer != id && voters.contains(**peer))
            .max_by_key(|(_, progress)| progress.matched)
            .map(|(peer, _)| *peer)
    }

    /// Handles one `Ready` in raft-rs's order: send messages, apply the snapshot, apply
    /// committed entries, append entries, persist the hard state, send the messages that had to
    /// wait for persistence, advance — then the same for the light ready advance returns.
    fn on_ready(&mut self) -> Result<(), Fatal<S>> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        self.transport.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot())?;
        }
        self.apply_committed(ready.take_committed_entries())?;
        // One fsync per ready at most: an append followed by a hard-state write is made durable
        // by that write; a ready that only moves the commit index needs none (`must_sync`).
        let must_sync = ready.must_sync();
        let store = self.raw.mut_store();
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
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit)?;
        }
        self.transport.send(light.take_messages());
        self.apply_committed(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.publish_leadership();
        self.reads.release(self.replica.read().applied);
        self.maybe_compact()
    }

    /// Replaces the log and the state machine with a snapshot from the leader.
    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), Fatal<S>> {
        let index = snapshot.get_metadata().index;
        self.raw.mut_store().apply_snapshot(snapshot)?;
        let state = S::restore(&snapshot.data).map_err(Fatal::Snapshot)?;
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
        tracing::info!(node = self.raw.raft.id, index, "installed snapshot");
        let replica = self.replica.read();
        self.proposals
            .unknown_through(index, |request| replica.state.request_outcome(request));
        drop(replica);
        self.transport.set_members(&members);
        let _ = self.applied_tx.send(index);
        Ok(())
    }

    fn apply_committed(&mut self, entries: Vec<Entry>) -> Result<(), Fatal<S>> {
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
                        let outcome = self.apply_conf_change(&entry, &mut replica.state);
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

    fn apply_conf_change(&mut self, entry: &Entry, state: &mut S) -> EntryOutcome<S::Rejection> {
        let cc = match entry.get_entry_type() {
            EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&entry.data),
            _ => ConfChange::parse_from_bytes(&entry.data).map(|cc| v1_to_v2(&cc)),
        };
        let cc = match cc {
            Ok(cc) => cc,
            Err(e) => return EntryOutcome::Refused(format!("undecodable membership change: {e}")),
        };
        if let Err(e) = self.raw.apply_conf_change(&cc) {
            return EntryOutcome::Refused(format!("membership change refused by raft: {e}"));
        }
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
            node = self.raw.raft.id,
            index = entry.index,
            voters = ?self.raw.raft.prs().conf().voters().ids().iter().collect::<Vec<_>>(),
            "membership changed"
        );
        EntryOutcome::Applied
    }

    /// Takes a snapshot of the state machine and drops the log it covers, every `compact_after`
    /// entries, or sooner when a peer needs a snapshot newer than the stored one.
    fn maybe_compact(&mut self) -> Result<(), Fatal<S>> {
        let store = self.raw.store();
        let snapshot_index = store.snapshot_metadata().index;
        let replica = self.replica.read();
        let applied = replica.applied;
        let due = applied.saturating_sub(snapshot_index) >= self.compact_after;
        let wanted = store.wanted_snapshot().is_some_and(|w| w <= applied);
        if applied <= snapshot_index || !(due || wanted) {
            return Ok(());
        }
        let mut meta = SnapshotMetadata {
            index: applied,
            term: store.term(applied)?,
            ..SnapshotMetadata::default()
        };
        meta.set_conf_state(self.raw.raft.prs().conf().to_conf_state());
        let data = replica.state.snapshot().map_err(Fatal::Snapshot)?;
        drop(replica);
        self.raw.mut_store().compact(&meta, &data)?;
        tracing::debug!(
            node = self.raw.raft.id,
            index = applied,
            bytes = data.len(),
            "log compacted"
        );
        Ok(())
    }

    fn publish_leadership(&self) {
        let raft = &self.raw.raft;
        let now = Leadership {
            leader: (raft.leader_id != 0).then_some(raft.leader_id),
            term: raft.term,
        };
        self.leadership_tx.send_if_modified(|old| {
            let changed = *old != now;
            *old = now;
            changed
        });
    }

    fn status(&self) -> NodeStatus {
        let raft = &self.raw.raft;
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
            first_index: self.raw.store().snapshot_metadata().index + 1,
            last_index: raft.raft_log.last_index(),
            ticks: self.ticks,
            voters: raft.prs().conf().voters().ids().iter().collect(),
            members: replica.state.members().clone(),
            state_hash: replica.state.digest().unwrap_or_default(),
        }
    }
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
