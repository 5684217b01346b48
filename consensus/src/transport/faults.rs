//! Faults injected into outgoing peer traffic: partitions (symmetric or one-way), dropped and
//! delayed messages, and lost answers to forwarded proposals (the leader appended the write,
//! the follower never hears so). Tests share one plan between every node of an in-process group and change it
//! while the group runs; in production the plan is empty and every verdict is `Deliver`.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::NodeId;

/// What happens to one outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it now.
    Deliver,
    /// Lose it.
    Drop,
    /// Send it after this long.
    Delay(Duration),
}

/// The faults currently in force.
#[derive(Debug)]
pub struct FaultPlan {
    inner: Mutex<Faults>,
}

#[derive(Debug)]
struct Faults {
    /// Directed links that deliver nothing: `(from, to)`.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Probability of losing a message on a link that is not blocked.
    drop_probability: f64,
    /// Delay range applied to a fraction of messages.
    delay: Option<Range<Duration>>,
    /// Probability a delivered message is delayed.
    delay_probability: f64,
    /// Answers to forwarded proposals still to be lost on purpose.
    lost_answers: u32,
    rng: StdRng,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan::seeded(0)
    }
}

impl FaultPlan {
    /// An empty plan whose random choices (drops, delays) come from `seed`.
    pub fn seeded(seed: u64) -> Self {
        FaultPlan {
            inner: Mutex::new(Faults {
                blocked: BTreeSet::new(),
                drop_probability: 0.0,
                delay: None,
                delay_probability: 0.0,
                lost_answers: 0,
                rng: StdRng::seed_from_u64(seed),
            }),
        }
    }

    /// Messages from `from` to `to` are lost (a one-way partition).
    pub fn block(&self, from: NodeId, to: NodeId) {
        self.inner.lock().blocked.insert((from, to));
    }

    /// Cuts every link between the two sides, both ways.
    pub fn partition(&self, side_a: &[NodeId], side_b: &[NodeId]) {
        let mut inner = self.inner.lock();
        for &a in side_a {
            for &b in side_b {
                inner.blocked.insert((a, b));
                inner.blocked.insert((b, a));
            }
        }
    }

    /// Loses each message with this probability (0 to 1).
    pub fn set_drop_probability(&self, probability: f64) {
        self.inner.lock().drop_probability = probability.clamp(0.0, 1.0);
    }

    /// Delays a fraction of messages by a random duration in `range`.
    pub fn set_delay(&self, probability: f64, range: Range<Duration>) {
        let mut inner = self.inner.lock();
        inner.delay_probability = probability.clamp(0.0, 1.0);
        inner.delay = (!range.is_empty()).then_some(range);
    }

    /// The answers to the next `count` forwarded proposals are lost after the receiver handled
    /// them, as when a connection drops with the reply in flight.
    pub fn lose_forward_answers(&self, count: u32) {
        self.inner.lock().lost_answers = count;
    }

    /// Whether the answer to a proposal `from` forwarded to `to` is lost: on purpose
    /// (`lose_forward_answers`), or like any message on the way back `to → from`.
    pub fn forward_answer_lost(&self, from: NodeId, to: NodeId) -> bool {
        {
            let mut inner = self.inner.lock();
            if inner.lost_answers > 0 {
                inner.lost_answers -= 1;
                return true;
            }
        }
        self.verdict(to, from) == Verdict::Drop
    }

    /// Removes every fault.
    pub fn heal(&self) {
        let mut inner = self.inner.lock();
        inner.blocked.clear();
        inner.drop_probability = 0.0;
        inner.delay = None;
        inner.delay_probability = 0.0;
        inner.lost_answers = 0;
    }

    /// Whether the link `from → to` is cut.
    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.inner.lock().blocked.contains(&(from, to))
    }

    /// Decides the fate of one message on `from → to`.
    pub fn verdict(&self, from: NodeId, to: NodeId) -> Verdict {
        let mut inner = self.inner.lock();
        if inner.blocked.contains(&(from, to)) {
            return Verdict::Drop;
        }
        if inner.drop_probability > 0.0 {
            let p = inner.drop_probability;
            if inner.rng.random_bool(p) {
                return Verdict::Drop;
            }
        }
        if let Some(range) = inner.delay.clone() {
            let p = inner.delay_probability;
            if inner.rng.random_bool(p) {
                return Verdict::Delay(inner.rng.random_range(range));
            }
        }
        Verdict::Deliver
    }
}
