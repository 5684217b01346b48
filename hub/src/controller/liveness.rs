//! The liveness controller: marks a cluster online when some hub node holds a stream for it,
//! and offline when no node has named it for `offline_after`.
//!
//! Every node reports its streams to the leader each presence period (`node::presence`, `sync::report_presence`); the
//! leader's board remembers, per cluster, when a report last named it. [`LivenessJudge`] turns
//! that, the replicated `online` flags and the time into transitions, and the run proposes
//! `SetLiveness` for transitions only: the replicated flag is the memory, so a new leader never
//! re-proposes what is already recorded.
//!
//! Why a cluster goes offline in time:
//! - its agent died or lost its network: the node's stream ends (at once on a closed
//!   connection, after the agent's missed heartbeats otherwise), the node stops naming it, and
//!   `offline_after` later it is offline;
//! - the node holding its stream died: that node's reports stop, so the same holds;
//! - the leader died: the new leader's board starts empty, so it waits `offline_after` after
//!   taking over — every live node has reported by then — before marking anything offline.
//!
//! An agent failing over to another node is named again by that node within a reconnect and a
//! presence period, well inside `offline_after`, so a failover does not flap the flag.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use tokio::time::Instant;

use crate::config::LivenessConfig;
use crate::controller::{Controller, ControllerContext};
use crate::state::{Command, State};

#[cfg(test)]
mod tests;

/// The liveness controller.
pub struct Liveness {
    config: LivenessConfig,
}

impl Liveness {
    /// A controller with these thresholds.
    pub fn new(config: LivenessConfig) -> Self {
        Liveness { config }
    }
}

impl Controller for Liveness {
    fn name(&self) -> &'static str {
        "liveness"
    }

    fn run(&self, context: ControllerContext) -> BoxFuture<'static, ()> {
        let run = Run {
            judge: LivenessJudge::new(&self.config, Instant::now()),
            check_interval: self.config.check_interval,
            context,
        };
        Box::pin(run.run())
    }
}

/// Decides liveness transitions for one term of leadership.
#[derive(Debug, Clone)]
pub struct LivenessJudge {
    offline_after: Duration,
    leading_since: Instant,
}

impl LivenessJudge {
    /// A judge for a leadership that began at `leading_since`.
    pub fn new(config: &LivenessConfig, leading_since: Instant) -> Self {
        LivenessJudge {
            offline_after: config.offline_after,
            leading_since,
        }
    }

    /// The `(cluster, online)` changes to propose at `now`, given when each cluster was last
    /// named by a presence report and the replicated flags. Online transitions are immediate;
    /// offline ones wait until the judge has listened for `offline_after`.
    pub fn transitions(
        &self,
        now: Instant,
        last_seen: &HashMap<String, Instant>,
        state: &State,
    ) -> Vec<(String, bool)> {
        let settled = now.saturating_duration_since(self.leading_since) >= self.offline_after;
        state
            .clusters
            .iter()
            .filter_map(|(name, cluster)| {
                let present = last_seen
                    .get(name)
                    .is_some_and(|seen| now.saturating_duration_since(*seen) < self.offline_after);
                match (cluster.online, present) {
                    (false, true) => Some((name.clone(), true)),
                    (true, false) if settled => Some((name.clone(), false)),
                    _ => None,
                }
            })
            .collect()
    }
}

/// One term of leadership.
struct Run {
    judge: LivenessJudge,
    check_interval: Duration,
    context: ControllerContext,
}

impl Run {
    async fn run(self) {
        let node = &self.context.node;
        // What an earlier term heard is stale; start from what this term hears.
        node.presence().reset();
        let mut tick = tokio::time::interval(self.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.context.stop.cancelled() => return,
                _ = tick.tick() => {}
                () = node.presence().changed() => {}
            }
            let transitions = {
                let seen = node.presence().last_seen();
                let state = node.state();
                self.judge.transitions(Instant::now(), &seen, &state)
            };
            if !transitions.is_empty() {
                self.propose(transitions).await;
            }
        }
    }

    /// Proposes every transition at once (raft batches them); a failed one is proposed again at
    /// the next check, since the flag it would have changed still differs.
    async fn propose(&self, transitions: Vec<(String, bool)>) {
        let at = self.context.clock.now();
        let proposals = transitions.into_iter().map(|(cluster, online)| {
            let node = self.context.node.clone();
            async move {
                tracing::info!(%cluster, online, "cluster liveness changed");
                let command = Command::SetLiveness {
                    cluster: cluster.clone(),
                    online,
                    at,
                };
                if let Err(e) = node.propose(&command).await {
                    tracing::warn!(%cluster, online, error = %e, "liveness not recorded; will retry");
                }
            }
        });
        join_all(proposals).await;
    }
}
