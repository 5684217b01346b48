//! The rollout controller: a loop that proposes, one by one, the commands
//! [`decide`](crate::state::rollout::decide::decide) returns for the replicated state and the
//! time, and looks again when the state changes or the decision says it will by time alone.
//! Every rule it follows lives in `state::rollout`; a refused proposal (the state moved under
//! the pass) only makes it decide again.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::controller::source::SourceConfig;
use crate::controller::{Controller, ControllerContext, Wake};
use crate::node::ProposeError;
use crate::state::rollout::decide::{Followed, SETTLE, SpecCache, decide};

/// How often the controller looks again when nothing changed and nothing is due.
const IDLE_RECHECK: Duration = Duration::from_secs(5);

/// Pause after a refused proposal before deciding again.
const REFUSED_PAUSE: Duration = Duration::from_millis(500);

/// Drives stages through their rollouts.
pub struct RolloutController {
    source: SourceConfig,
}

impl RolloutController {
    /// A controller following `source`'s branch.
    pub fn new(source: SourceConfig) -> Self {
        RolloutController { source }
    }
}

impl Controller for RolloutController {
    fn name(&self) -> &'static str {
        "rollout"
    }

    fn run(&self, context: ControllerContext) -> BoxFuture<'static, ()> {
        let run = Run {
            source: self.source.clone(),
            specs: SpecCache::default(),
            context,
        };
        Box::pin(run.run())
    }
}

struct Run {
    source: SourceConfig,
    specs: SpecCache,
    context: ControllerContext,
}

impl Run {
    async fn run(mut self) {
        let mut applied = self.context.node.watch_applied();
        loop {
            let now = self.context.clock.now();
            let decision = {
                let state = self.context.node.state();
                let followed = Followed {
                    name: &self.source.name,
                    branch: &self.source.branch,
                };
                decide(
                    &state,
                    followed,
                    &mut self.specs,
                    now,
                    crate::state::millis(SETTLE),
                )
            };
            let mut refused = false;
            for command in decision.commands {
                match self.context.node.propose(&command).await {
                    Ok(_) => {}
                    // The state moved under this pass (another proposal, a failover): look again.
                    Err(ProposeError::Rejected { error, .. }) => {
                        tracing::debug!(command = command.kind(), %error, "rollout step refused");
                        refused = true;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(command = command.kind(), error = %e, "rollout step not recorded");
                        refused = true;
                        break;
                    }
                }
            }
            // A refused command is itself an applied entry: without a pause, a decision apply
            // keeps refusing would be proposed again at once, forever.
            if refused && !self.context.pause(REFUSED_PAUSE).await {
                return;
            }
            let wait = decision
                .wake_at
                .map(|at| {
                    Duration::from_millis(at.0.saturating_sub(now.0)).max(Duration::from_millis(10))
                })
                .map_or(IDLE_RECHECK, |d| d.min(IDLE_RECHECK));
            if self.context.wait(&mut applied, wait).await == Wake::Stop {
                return;
            }
        }
    }
}
