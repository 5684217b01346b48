//! The notify controller: sends the notices the state records (`state::notice`) to every
//! configured receiver (`notify`), in order, each receiver on its own so a slow one delays no
//! other.
//!
//! Per receiver it reads from the state the last notice that receiver is done with, sends the
//! ones after it that the receiver takes (its kinds and stages), retrying what is worth another
//! try with backoff (1 s, doubling, at most 5 minutes between tries, `maxAttempts` tries), and
//! records each one done by proposing `AckNotices` — delivered or given up on. The record is
//! replicated, so a new leader starts after the last notice the old one recorded: a failover
//! re-sends at most the one notice in flight when the leader died (with the same delivery id,
//! so a receiver can drop it), never the backlog.
//!
//! A receiver first seen (newly configured) starts after the last notice already recorded:
//! it is not sent the past. A receiver that falls more than `NOTICES_KEPT` behind loses the
//! oldest (counted as `dropped`).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::task::JoinSet;

use crate::controller::{Controller, ControllerContext, Wake};
use crate::metrics::Metrics;
use crate::notify::{Outcome, Receiver};
use crate::state::notice::Notice;
use crate::state::rollout::pipeline;
use crate::state::{Command, State};

/// First wait before another try.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);

/// Longest wait between tries.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How often an idle receiver looks again when nothing applied.
const IDLE_RECHECK: Duration = Duration::from_secs(30);

/// Most notices read from the state at once.
const BATCH: usize = 64;

/// Sends notices to receivers.
pub struct NotifyController {
    receivers: Vec<Arc<Receiver>>,
    source: Option<String>,
    metrics: Arc<Metrics>,
}

impl NotifyController {
    /// A controller for these receivers; `source` names the source whose pipeline says which
    /// stage a cluster is in.
    pub fn new(
        receivers: Vec<Arc<Receiver>>,
        source: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        NotifyController {
            receivers,
            source,
            metrics,
        }
    }
}

impl Controller for NotifyController {
    fn name(&self) -> &'static str {
        "notify"
    }

    fn run(&self, context: ControllerContext) -> BoxFuture<'static, ()> {
        let mut tasks = JoinSet::new();
        for receiver in &self.receivers {
            let run = Run {
                receiver: receiver.clone(),
                source: self.source.clone().unwrap_or_default(),
                metrics: self.metrics.clone(),
                context: context.clone(),
            };
            tasks.spawn(run.run());
        }
        // A receiver's task that panicked ends the run, so the supervisor starts it again.
        Box::pin(async move {
            while let Some(ended) = tasks.join_next().await {
                if ended.is_err() {
                    return;
                }
            }
        })
    }
}

/// One receiver's deliveries during one term.
struct Run {
    receiver: Arc<Receiver>,
    source: String,
    metrics: Arc<Metrics>,
    context: ControllerContext,
}

/// What a receiver has to do next, read from the state.
#[derive(Debug, PartialEq)]
enum Next {
    /// Nothing is recorded for it yet: it starts after notice `after`.
    Start { after: u64 },
    /// Nothing to send.
    Idle,
    /// Send these (each with its stage), in order; `dropped` older ones were lost first.
    Send {
        dropped: u64,
        notices: Vec<(Notice, Option<String>)>,
    },
}

fn next(state: &State, receiver: &str, source: &str) -> Next {
    let notices = &state.notices;
    let Some(&done) = notices.done.get(receiver) else {
        return Next::Start {
            after: notices.last(),
        };
    };
    let batch: Vec<&Notice> = notices.after(done).take(BATCH).collect();
    let Some(first) = batch.first() else {
        return Next::Idle;
    };
    let spec = batch
        .iter()
        .any(|n| n.stage.is_none() && n.cluster.is_some())
        .then(|| pipeline::current(state, source).map(|(_, spec)| spec))
        .flatten();
    let stage_of = |notice: &Notice| {
        notice.stage.clone().or_else(|| {
            let labels = &state.clusters.get(notice.cluster.as_ref()?)?.labels;
            let stage = spec.as_ref()?.stage_for(labels).ok().flatten()?;
            Some(stage.name.clone())
        })
    };
    Next::Send {
        dropped: first.seq.saturating_sub(done + 1),
        notices: batch.iter().map(|n| ((*n).clone(), stage_of(n))).collect(),
    }
}

impl Run {
    async fn run(self) {
        let name = self.receiver.config.name.clone();
        let mut applied = self.context.node.watch_applied();
        loop {
            let next = next(&self.context.node.state(), &name, &self.source);
            match next {
                Next::Start { after } => {
                    tracing::info!(receiver = %name, after, "notifications: a new receiver starts after the last notice");
                    if !self.record_done(after).await {
                        return;
                    }
                }
                Next::Idle => {
                    if self.context.wait(&mut applied, IDLE_RECHECK).await == Wake::Stop {
                        return;
                    }
                }
                Next::Send { dropped, notices } => {
                    if dropped > 0 {
                        tracing::warn!(receiver = %name, dropped, "notifications: the receiver fell too far behind; the oldest notices were lost");
                        self.count("dropped", dropped);
                    }
                    let mut skipped = None;
                    for (notice, stage) in notices {
                        if !self.receiver.wants(&notice, stage.as_deref()) {
                            skipped = Some(notice.seq);
                            continue;
                        }
                        skipped = None;
                        let Some(delivered) = self.send(&notice, stage.as_deref()).await else {
                            return;
                        };
                        self.count(if delivered { "delivered" } else { "failed" }, 1);
                        // Sent: only the record is retried, never the notice.
                        if !self.record_done(notice.seq).await {
                            return;
                        }
                    }
                    if let Some(seq) = skipped
                        && !self.record_done(seq).await
                    {
                        return;
                    }
                }
            }
            if self.context.stop.is_cancelled() {
                return;
            }
        }
    }

    /// Sends one notice, trying again while that is worth it: whether it was delivered, or
    /// none when the run was stopped first.
    async fn send(&self, notice: &Notice, stage: Option<&str>) -> Option<bool> {
        let name = &self.receiver.config.name;
        let message = self.receiver.message(notice, stage);
        let attempts = self.receiver.config.max_attempts;
        let mut wait = BACKOFF_FIRST;
        for attempt in 1..=attempts {
            let outcome = tokio::select! {
                _ = self.context.stop.cancelled() => return None,
                outcome = self.receiver.send(&message) => outcome,
            };
            let result = match &outcome {
                Outcome::Delivered => "delivered",
                Outcome::Retry(_) => "retry",
                Outcome::Refused(_) => "refused",
            };
            self.metrics
                .notification_attempts
                .get_or_create(&vec![
                    ("receiver".to_owned(), name.clone()),
                    ("result".to_owned(), result.to_owned()),
                ])
                .inc();
            match outcome {
                Outcome::Delivered => {
                    tracing::debug!(receiver = %name, seq = notice.seq, kind = notice.kind.name(), "notice delivered");
                    return Some(true);
                }
                Outcome::Refused(why) => {
                    tracing::warn!(receiver = %name, seq = notice.seq, kind = notice.kind.name(), %why, "notice refused; not tried again");
                    return Some(false);
                }
                Outcome::Retry(why) if attempt == attempts => {
                    tracing::warn!(receiver = %name, seq = notice.seq, kind = notice.kind.name(), attempts, %why, "notice given up on");
                    return Some(false);
                }
                Outcome::Retry(why) => {
                    tracing::info!(receiver = %name, seq = notice.seq, attempt, %why, retry_in = ?wait, "notice not delivered; trying again");
                    if !self.context.pause(wait).await {
                        return None;
                    }
                    wait = (wait * 2).min(BACKOFF_MAX);
                }
            }
        }
        Some(false)
    }

    /// Records the receiver done through `through`, trying again (with backoff) until the
    /// record applies; false when the run was stopped first. A notice already sent is not sent
    /// again while its record is retried (a record that applied late is harmless: records never
    /// move back).
    async fn record_done(&self, through: u64) -> bool {
        let mut wait = BACKOFF_FIRST;
        loop {
            if self.done(through).await {
                return true;
            }
            if self
                .context
                .node
                .state()
                .notices
                .done
                .get(&self.receiver.config.name)
                >= Some(&through)
            {
                return true;
            }
            if !self.context.pause(wait).await {
                return false;
            }
            wait = (wait * 2).min(BACKOFF_MAX);
        }
    }

    /// Records the receiver done through `seq`; whether that applied.
    async fn done(&self, through: u64) -> bool {
        let command = Command::AckNotices {
            receiver: self.receiver.config.name.clone(),
            through,
        };
        match self.context.node.propose(&command).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(receiver = %self.receiver.config.name, through, error = %e, "notice not recorded done");
                false
            }
        }
    }

    fn count(&self, result: &str, n: u64) {
        self.metrics
            .notifications
            .get_or_create(&vec![
                ("receiver".to_owned(), self.receiver.config.name.clone()),
                ("result".to_owned(), result.to_owned()),
            ])
            .inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::notice::NoticeKind;
    use crate::state::{Command, Labels};

    #[test]
    fn a_receiver_starts_after_the_last_notice_and_then_gets_what_follows() {
        let mut state = State::bootstrap(Default::default());
        let at = crate::state::Timestamp(1);
        let labels = Labels::default();
        state
            .apply(&Command::RegisterCluster {
                name: "a".into(),
                labels,
                at,
            })
            .expect("test set-up");
        for online in [true, false, true] {
            state
                .apply(&Command::SetLiveness {
                    cluster: "a".into(),
                    online,
                    at,
                })
                .expect("test set-up");
        }
        // The first connection is no news; offline and back are.
        let kinds: Vec<NoticeKind> = state.notices.recent.iter().map(|n| n.kind).collect();
        assert_eq!(kinds, [NoticeKind::ClusterOffline, NoticeKind::ClusterBack]);
        assert_eq!(next(&state, "ops", ""), Next::Start { after: 2 });
        state
            .apply(&Command::AckNotices {
                receiver: "ops".into(),
                through: 1,
            })
            .expect("test set-up");
        let Next::Send { dropped, notices } = next(&state, "ops", "") else {
            panic!("notice 2 is to send");
        };
        assert_eq!(dropped, 0);
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].0.seq, 2);
        // No pipeline: a cluster's stage is unknown.
        assert_eq!(notices[0].1, None);
        state
            .apply(&Command::AckNotices {
                receiver: "ops".into(),
                through: 2,
            })
            .expect("test set-up");
        assert_eq!(next(&state, "ops", ""), Next::Idle);
    }
}
