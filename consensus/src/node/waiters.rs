//! Callers waiting on the raft thread: proposals waiting for their entry to apply, and
//! linearizable reads waiting for a read index and for the state machine to reach it.
//!
//! A proposal is identified by the (index, term) it was appended at. When the entry at that
//! index applies, the log matching property tells whether it is ours: same term, ours; another
//! term, ours was overwritten by a later leader (superseded, safe to retry). Every waiter is
//! answered exactly once: by that entry, by a snapshot that jumped over it (outcome unknown), or
//! by the caller's own deadline (its receiver closes and the waiter is swept). A command's
//! waiter also knows its write's request id: when its own copy was superseded or jumped over,
//! the state machine's record of that id (another copy of the same write may have applied)
//! gives the real outcome.

use std::collections::{BTreeMap, HashMap, VecDeque};

use tokio::sync::oneshot;

use super::EntryOutcome;
use crate::RequestId;

/// Applied outcomes remembered for callers that register after their entry applied (a
/// forwarded proposal can apply locally before the leader's answer arrives).
const RECENT_OUTCOMES: usize = 4096;

/// What kind of entry applied at an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EntryKind {
    /// A command.
    Command,
    /// A membership change.
    ConfChange,
    /// An empty entry (a new leader's, or a refused conf change raft replaced).
    Empty,
}

struct Waiter<R> {
    term: u64,
    request: Option<RequestId>,
    conf_change: bool,
    reply: oneshot::Sender<EntryOutcome<R>>,
}

/// Proposals waiting for their entry. `R` is the state machine's rejection.
pub(super) struct Proposals<R> {
    waiting: BTreeMap<u64, Vec<Waiter<R>>>,
    recent: VecDeque<(u64, u64, EntryKind, EntryOutcome<R>)>,
}

impl<R> Default for Proposals<R> {
    fn default() -> Self {
        Proposals {
            waiting: BTreeMap::new(),
            recent: VecDeque::new(),
        }
    }
}

impl<R: Clone> Proposals<R> {
    /// Waits for the entry proposed at `(index, term)`; answers at once if it already applied.
    /// `known` is the state machine's record of requests that applied.
    pub(super) fn register(
        &mut self,
        proposed: Proposed,
        reply: oneshot::Sender<EntryOutcome<R>>,
        applied: u64,
        known: impl Fn(RequestId) -> Option<Result<(), R>>,
    ) {
        let Proposed {
            index,
            term,
            request,
            conf_change,
        } = proposed;
        let waiter = Waiter {
            term,
            request,
            conf_change,
            reply,
        };
        if index > applied {
            self.waiting.entry(index).or_default().push(waiter);
            return;
        }
        let outcome = match self.recent.iter().find(|(i, ..)| *i == index) {
            Some((_, t, kind, outcome)) => judge(&waiter, *t, *kind, outcome),
            None => EntryOutcome::Unknown,
        };
        let outcome = learn(&waiter, outcome, &known);
        let _ = waiter.reply.send(outcome);
    }

    /// The entry at `index` applied with this outcome.
    pub(super) fn resolve(
        &mut self,
        index: u64,
        term: u64,
        kind: EntryKind,
        outcome: EntryOutcome<R>,
        known: impl Fn(RequestId) -> Option<Result<(), R>>,
    ) {
        if let Some(waiters) = self.waiting.remove(&index) {
            for waiter in waiters {
                let answer = learn(&waiter, judge(&waiter, term, kind, &outcome), &known);
                let _ = waiter.reply.send(answer);
            }
        }
        self.recent.push_back((index, term, kind, outcome));
        if self.recent.len() > RECENT_OUTCOMES {
            self.recent.pop_front();
        }
    }

    /// A snapshot replaced the state up to `index`: whether those entries were ours is unknown,
    /// unless the state's record of their requests says.
    pub(super) fn unknown_through(
        &mut self,
        index: u64,
        known: impl Fn(RequestId) -> Option<Result<(), R>>,
    ) {
        let later = self.waiting.split_off(&(index + 1));
        for waiter in std::mem::replace(&mut self.waiting, later)
            .into_values()
            .flatten()
        {
            let answer = learn(&waiter, EntryOutcome::Unknown, &known);
            let _ = waiter.reply.send(answer);
        }
        self.recent.clear();
    }

    /// Forgets waiters whose callers gave up.
    pub(super) fn sweep(&mut self) {
        self.waiting.retain(|_, waiters| {
            waiters.retain(|w| !w.reply.is_closed());
            !waiters.is_empty()
        });
    }
}

/// Where a proposal was appended, and what it carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Proposed {
    /// Its index.
    pub(crate) index: u64,
    /// The leader's term when it was appended.
    pub(crate) term: u64,
    /// The write's request id, for a command.
    pub(crate) request: Option<RequestId>,
    /// Whether it is a membership change.
    pub(crate) conf_change: bool,
}

/// A superseded or unknown outcome of a command is replaced by the outcome its request had,
/// if another copy of the same write applied.
fn learn<R>(
    waiter: &Waiter<R>,
    outcome: EntryOutcome<R>,
    known: &impl Fn(RequestId) -> Option<Result<(), R>>,
) -> EntryOutcome<R> {
    match (&outcome, waiter.request) {
        (EntryOutcome::Superseded | EntryOutcome::Unknown, Some(request)) => match known(request) {
            Some(Ok(())) => EntryOutcome::Applied,
            Some(Err(rejection)) => EntryOutcome::Rejected(rejection),
            None => outcome,
        },
        _ => outcome,
    }
}

fn judge<R: Clone>(
    waiter: &Waiter<R>,
    term: u64,
    kind: EntryKind,
    outcome: &EntryOutcome<R>,
) -> EntryOutcome<R> {
    if term != waiter.term {
        return EntryOutcome::Superseded;
    }
    match (waiter.conf_change, kind) {
        (true, EntryKind::ConfChange) | (false, EntryKind::Command) => outcome.clone(),
        // raft replaces a conf change with an empty entry when another one is still pending.
        (true, _) => EntryOutcome::Refused(
            "another membership change was still in progress; retry when it is applied".into(),
        ),
        (false, _) => EntryOutcome::Superseded,
    }
}

struct PendingRead {
    reply: oneshot::Sender<u64>,
    index: Option<u64>,
    issued_tick: u64,
}

/// Linearizable reads in flight, by request context.
#[derive(Default)]
pub(super) struct Reads {
    pending: HashMap<u64, PendingRead>,
}

impl Reads {
    /// A read was issued at `tick` with context `ctx`.
    pub(super) fn add(&mut self, ctx: u64, reply: oneshot::Sender<u64>, tick: u64) {
        self.pending.insert(
            ctx,
            PendingRead {
                reply,
                index: None,
                issued_tick: tick,
            },
        );
    }

    /// The leader confirmed a read index for `ctx`.
    pub(super) fn confirmed(&mut self, ctx: u64, index: u64) {
        if let Some(read) = self.pending.get_mut(&ctx) {
            read.index.get_or_insert(index);
        }
    }

    /// Answers every read whose index the state machine has reached; forgets abandoned ones.
    pub(super) fn release(&mut self, applied: u64) {
        let reached = self
            .pending
            .extract_if(|_, read| read.index.is_some_and(|index| index <= applied));
        for (_, read) in reached {
            let _ = read.reply.send(read.index.unwrap_or(applied));
        }
        self.pending.retain(|_, read| !read.reply.is_closed());
    }

    /// Reads still unconfirmed `every` ticks after they were issued (raft drops a read index
    /// request silently when there is no leader or it has not committed in its term): they are
    /// re-issued with the same context.
    pub(super) fn due(&mut self, tick: u64, every: u64) -> Vec<u64> {
        let mut due = Vec::new();
        for (ctx, read) in &mut self.pending {
            if read.index.is_none() && tick.saturating_sub(read.issued_tick) >= every {
                read.issued_tick = tick;
                due.push(*ctx);
            }
        }
        due
    }
}
