//! The retention controller: keeps the newest revisions of the source (for rollback and diffs)
//! and forgets older ones, whose blobs the state then collects.
//!
//! A revision is never forgotten while it is in use: a stage's pin, a cluster's assignment, the
//! from or to of an active rollout (the state machine refuses these itself), the source head, or
//! a revision whose bundle a cluster still reports as applied.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::controller::{Controller, ControllerContext, Wake};
use crate::state::source::RevisionRef;
use crate::state::{Command, State};

/// How often the controller looks again when nothing changed.
const IDLE_RECHECK: Duration = Duration::from_secs(30);

/// Shortest time between two looks.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Forgets revisions beyond the retention count.
pub struct RetentionController {
    source: String,
    keep: usize,
}

impl RetentionController {
    /// A controller keeping the newest `keep` revisions of `source` besides those in use.
    pub fn new(source: String, keep: usize) -> Self {
        RetentionController { source, keep }
    }
}

impl Controller for RetentionController {
    fn name(&self) -> &'static str {
        "retention"
    }

    fn run(&self, context: ControllerContext) -> BoxFuture<'static, ()> {
        let (source, keep) = (self.source.clone(), self.keep);
        Box::pin(async move {
            let mut applied = context.node.watch_applied();
            loop {
                let forget = expired(&context.node.state(), &source, keep);
                for revision in forget {
                    let command = Command::ForgetRevision {
                        revision: revision.clone(),
                        at: context.clock.now(),
                    };
                    match context.node.propose(&command).await {
                        Ok(_) => tracing::info!(%revision, "revision forgotten"),
                        Err(e) => {
                            tracing::debug!(%revision, error = %e, "revision not forgotten");
                            break;
                        }
                    }
                }
                // Forgetting is never urgent: look at most once a second, however busy the log.
                if !context.pause(MIN_INTERVAL).await
                    || context.wait(&mut applied, IDLE_RECHECK).await == Wake::Stop
                {
                    return;
                }
            }
        })
    }
}

/// Revisions of `source` beyond the newest `keep` that nothing uses, oldest first.
pub fn expired(state: &State, source: &str, keep: usize) -> Vec<RevisionRef> {
    let mut revisions: Vec<(&RevisionRef, u64)> = state
        .revisions
        .iter()
        .filter(|(r, _)| r.source == source)
        .map(|(r, rev)| (r, rev.seq))
        .collect();
    revisions.sort_by_key(|(_, seq)| std::cmp::Reverse(*seq));
    let mut old: Vec<RevisionRef> = revisions
        .into_iter()
        .skip(keep)
        .map(|(r, _)| r.clone())
        .filter(|r| !in_use(state, r))
        .collect();
    old.reverse();
    old
}

/// Whether anything still needs the revision.
fn in_use(state: &State, revision: &RevisionRef) -> bool {
    let head = state
        .sources
        .get(&revision.source)
        .and_then(|s| s.head.as_deref())
        == Some(revision.commit.as_str());
    let pinned = state
        .stages
        .values()
        .any(|s| s.pinned.as_ref() == Some(revision));
    let assigned = state
        .clusters
        .values()
        .any(|c| c.assigned.as_ref() == Some(revision));
    let rolling = state
        .rollouts
        .values()
        .any(|r| r.is_active() && (&r.to == revision || r.from.as_ref() == Some(revision)));
    let held = state.revisions.get(revision).is_some_and(|rev| {
        state.health.iter().any(|(key, record)| {
            record.applied.is_some()
                && rev
                    .bundles_for(&key.cluster)
                    .and_then(|b| b.get(&key.bundle))
                    == record.applied.as_ref()
        })
    });
    head || pinned || assigned || rolling || held
}
