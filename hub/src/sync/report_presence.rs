//! The reporting half of presence: this node tells whichever node leads which agent streams
//! it holds (`node::presence` keeps the leader's board and answers claims).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::streams::Streams;
use crate::node::NodeHandle;
use crate::node::presence::{LeaderChannel, send_report};

/// Shortest pause between two reports triggered by stream changes, so a burst of agents
/// connecting at once costs a few reports, not one per agent.
const CHANGE_COALESCE: Duration = Duration::from_millis(100);

/// Reports this node's streams to the leader every `period`, when they change, and when the
/// leader changes, until `stop`.
pub(crate) async fn report_loop(
    node: NodeHandle,
    streams: Streams,
    leader: std::sync::Arc<LeaderChannel>,
    period: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leadership = node.watch_leadership();
    let mut changes = streams.watch();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            changed = leadership.changed() => if changed.is_err() { return },
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                tokio::time::sleep(CHANGE_COALESCE).await;
                changes.mark_unchanged();
            }
        }
        send_report(&node, &leader, streams.streams(), period).await;
    }
}
