//! Recent client writes by request id, with their outcomes: what makes each write apply at most
//! once however often it was forwarded or retried (`flotilla_consensus::request`).
//!
//! A command whose request id is here already applied: it changes nothing and answers the
//! outcome recorded the first time. The log keeps the last [`REQUEST_LOG_LEN`] requests, in
//! the order they applied — deterministic, so identical on every replica and carried by
//! snapshots. Assumption: a write is retried within far fewer than that many writes of the
//! group (retries stop at the request timeout, seconds; the hub writes far less than 10,000
//! times a second).

use std::collections::{BTreeMap, VecDeque};

use flotilla_consensus::RequestId;
use serde::{Deserialize, Serialize};

use super::CommandError;

/// How many recent requests are remembered.
pub const REQUEST_LOG_LEN: usize = 10_000;

/// Recent requests and what became of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestLog {
    outcomes: BTreeMap<RequestId, Result<(), CommandError>>,
    order: VecDeque<RequestId>,
}

impl RequestLog {
    /// The outcome of `request`, if it applied recently.
    pub fn get(&self, request: RequestId) -> Option<&Result<(), CommandError>> {
        self.outcomes.get(&request)
    }

    /// Records what became of `request`, forgetting the oldest beyond the limit.
    pub fn record(&mut self, request: RequestId, outcome: Result<(), CommandError>) {
        if self.outcomes.insert(request, outcome).is_none() {
            self.order.push_back(request);
        }
        while self.order.len() > REQUEST_LOG_LEN {
            if let Some(oldest) = self.order.pop_front() {
                self.outcomes.remove(&oldest);
            }
        }
    }

    /// How many requests are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}
