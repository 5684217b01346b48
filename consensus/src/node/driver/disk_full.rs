//! A node whose disk is full, out of the group until its log takes writes again (see the
//! driver's module docs for what holds meanwhile).

use super::*;

/// How often a node whose disk is full tries its log again.
const FULL_DISK_RETRY: Duration = Duration::from_secs(1);

/// Why a node is out of the group: its disk filled up, and it has not yet shown that its log
/// takes the group's writes again.
pub(in crate::node) struct DiskFull {
    /// What proposals to this node are told.
    pub(in crate::node) why: String,
    /// When the raft node was rebuilt on the reopened log, while it is on probation.
    pub(in crate::node) rejoined: Option<Instant>,
}

impl<S: StateMachine> Driver<S> {
    /// A rebuilt raft node that ran `FULL_DISK_RETRY` without filling the disk takes writes.
    pub(super) fn end_probation(&mut self) {
        let Some(DiskFull {
            rejoined: Some(rejoined),
            ..
        }) = &self.disk_full
        else {
            return;
        };
        if rejoined.elapsed() < FULL_DISK_RETRY {
            return;
        }
        self.disk_full = None;
        let _ = self.disk_full_tx.send(None);
        tracing::info!(
            node = self.id,
            "disk has space again: this node rejoined the group and takes writes"
        );
    }

    /// Serves the node without a raft node while its disk is full, until a reopened log takes
    /// a durable write: proposals are refused with `full`'s message, proposals forwarded by
    /// peers sent back to look for the leader elsewhere, linearizable reads failed, status
    /// answered from `last`; raft messages are dropped, so to the group the node is silent.
    /// Returns the new raft node, on probation (see `end_probation`): a log with free pages
    /// takes a small write on a full disk, so only a raft node that keeps up with the group's
    /// writes shows there is space. `None` when told to stop.
    pub(super) fn wait_for_space(
        &mut self,
        full: StoreError,
        last: NodeStatus,
    ) -> Result<Option<Raw>, Fatal<S>> {
        match &mut self.disk_full {
            Some(out) => {
                tracing::debug!(node = self.id, error = %full, "disk still full: out again");
                out.rejoined = None;
            }
            None => {
                tracing::error!(
                    node = self.id,
                    error = %full,
                    "disk full: this node left the group and refuses writes; it rejoins by \
                     itself once space is freed"
                );
                let why = format!(
                    "node {}: {full}; writes through the other nodes of the group continue",
                    self.id
                );
                self.disk_full = Some(DiskFull {
                    why: why.clone(),
                    rejoined: None,
                });
                // Before the reads are dropped below, so their callers find the reason.
                let _ = self.disk_full_tx.send(Some(why));
            }
        }
        self.reads = Reads::default();
        self.publish(Leadership {
            leader: None,
            term: last.term,
        });
        let status = NodeStatus {
            role: Role::Follower,
            leader: None,
            matched: Default::default(),
            ..last
        };
        let mut next_tick = Instant::now() + self.timing.tick;
        let mut next_try = Instant::now() + FULL_DISK_RETRY;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(wait) {
                Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => return Ok(None),
                Ok(event) => self.handle_without_log(event, &status),
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now < next_tick {
                continue;
            }
            self.ticks += 1;
            next_tick = now + self.timing.tick;
            if self.ticks.is_multiple_of(16) {
                self.proposals.sweep();
            }
            if now < next_try {
                continue;
            }
            next_try = now + FULL_DISK_RETRY;
            if let Some(raw) = self.reopen()? {
                tracing::debug!(node = self.id, "the log took a write again: rejoining");
                if let Some(out) = &mut self.disk_full {
                    out.rejoined = Some(Instant::now());
                }
                return Ok(Some(raw));
            }
        }
    }

    /// One event while the disk is full (see `wait_for_space`).
    fn handle_without_log(&mut self, event: Event<S::Rejection>, last: &NodeStatus) {
        match event {
            Event::Peer(Inbound::Forwarded { reply, .. }) => {
                let _ = reply.send(ProposeReply::NotLeader { leader: None });
            }
            Event::Peer(_) => {}
            Event::Propose { reply, .. } => {
                let _ = reply.send(self.refusal());
            }
            Event::Await { proposed, outcome } => self.await_entry(proposed, outcome),
            // Dropping the reply fails the read; its caller finds why in the disk-full watch.
            Event::ReadIndex(_) => {}
            Event::Status(reply, _) => {
                let _ = reply.send(NodeStatus {
                    ticks: self.ticks,
                    disk_full: self.disk_full.as_ref().map(|full| full.why.clone()),
                    ..last.clone()
                });
            }
            Event::Campaign | Event::Stop => {}
        }
    }

    /// What a proposal to this node is told while its disk is full.
    pub(super) fn refusal(&self) -> ProposeReply {
        let why = self.disk_full.as_ref().map(|full| full.why.clone());
        ProposeReply::Refused(why.unwrap_or_default())
    }

    /// Opens the log again and writes its hard state back durably: a raft node over it once
    /// that worked, `None` while the disk is still full.
    fn reopen(&mut self) -> Result<Option<Raw>, Fatal<S>> {
        let mut store = match self.log.open() {
            Err(StoreError::DiskFull { .. }) => return Ok(None),
            opened => opened?,
        };
        let hard_state = store.hard_state().clone();
        match store.set_hard_state(&hard_state, true) {
            Err(StoreError::DiskFull { .. }) => return Ok(None),
            written => written?,
        }
        // A snapshot whose install failed may still have reached the log: the replica adopts it.
        let stored = store.snapshot_metadata().index;
        if stored > self.replica.read().applied {
            self.restore(stored, &store.snapshot_data()?)?;
        }
        let applied = self.replica.read().applied;
        let last = raft::Storage::last_index(&store)?;
        if last < applied {
            return Err(Fatal::Store(StoreError::Damaged {
                path: self.log.dir.clone(),
                detail: format!(
                    "the log ends at entry {last} but this node applied entry {applied} before \
                     its disk filled up"
                ),
            }));
        }
        Ok(Some(raft_node(self.id, &self.timing, store)?))
    }
}
