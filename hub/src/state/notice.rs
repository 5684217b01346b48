//! Notices: the events the hub tells the outside world about (a revision that failed to render,
//! a rollout started, awaiting approval, held by the deletion guard, completed, failed, rolled
//! back, superseded or abandoned, a cluster offline, unreachable or back, drift corrected), kept in the replicated state
//! as the commands that cause them apply.
//!
//! Each notice gets the next sequence number, so every replica numbers it alike and a notice is
//! one thing however many nodes hold it. The leader's notify controller delivers them to the
//! configured receivers and records, per receiver, the last notice it is done with
//! ([`Notices::done`], by [`super::Command::AckNotices`]): a new leader resumes after it, so a
//! failover re-sends at most the notice that was in flight, never the backlog.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::{State, Timestamp};

/// How many notices the state keeps, newest last. A receiver that falls further behind (one
/// that has been failing for a long time) loses the oldest; the controller counts them.
pub const NOTICES_KEPT: usize = 1000;

/// Most characters of a notice's message.
const MESSAGE_CHARS: usize = 300;

/// What happened. The names (`NoticeKind::name`) are a stable contract: receivers filter on
/// them, and the hub's config lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NoticeKind {
    /// A revision failed to render (or to parse, or to pass lint).
    RenderFailed,
    /// A rollout began to run (at once, or when approved).
    RolloutStarted,
    /// A rollout waits for a person's approval (the stage asks for it).
    RolloutAwaitingApproval,
    /// The deletion guard holds a rollout: it would delete more than the stage allows.
    DeletionGuardHolding,
    /// Every wave of a rollout passed.
    RolloutCompleted,
    /// A rollout failed its health gate (it then pauses or rolls back).
    RolloutFailed,
    /// A stage went back to an earlier revision (by its gate, or by hand).
    RolloutRolledBack,
    /// A newer rollout of the stage replaced a rollout before it ended.
    RolloutSuperseded,
    /// A rollout ended because its stage left `flotilla.yaml`.
    RolloutAbandoned,
    /// A cluster's agent stopped reporting.
    ClusterOffline,
    /// A cluster's agent reports its API server unreachable.
    ClusterUnreachable,
    /// A cluster offline or unreachable is back.
    ClusterBack,
    /// An agent re-applied objects someone had changed.
    DriftCorrected,
}

impl NoticeKind {
    /// Every kind, in order.
    pub const ALL: [NoticeKind; 13] = [
        NoticeKind::RenderFailed,
        NoticeKind::RolloutStarted,
        NoticeKind::RolloutAwaitingApproval,
        NoticeKind::DeletionGuardHolding,
        NoticeKind::RolloutCompleted,
        NoticeKind::RolloutFailed,
        NoticeKind::RolloutRolledBack,
        NoticeKind::RolloutSuperseded,
        NoticeKind::RolloutAbandoned,
        NoticeKind::ClusterOffline,
        NoticeKind::ClusterUnreachable,
        NoticeKind::ClusterBack,
        NoticeKind::DriftCorrected,
    ];

    /// The kind's name: camelCase, no spaces.
    pub fn name(self) -> &'static str {
        match self {
            NoticeKind::RenderFailed => "renderFailed",
            NoticeKind::RolloutStarted => "rolloutStarted",
            NoticeKind::RolloutAwaitingApproval => "rolloutAwaitingApproval",
            NoticeKind::DeletionGuardHolding => "deletionGuardHolding",
            NoticeKind::RolloutCompleted => "rolloutCompleted",
            NoticeKind::RolloutFailed => "rolloutFailed",
            NoticeKind::RolloutRolledBack => "rolloutRolledBack",
            NoticeKind::RolloutSuperseded => "rolloutSuperseded",
            NoticeKind::RolloutAbandoned => "rolloutAbandoned",
            NoticeKind::ClusterOffline => "clusterOffline",
            NoticeKind::ClusterUnreachable => "clusterUnreachable",
            NoticeKind::ClusterBack => "clusterBack",
            NoticeKind::DriftCorrected => "driftCorrected",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<NoticeKind> {
        NoticeKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// How people read it: `rollout failed`.
    pub fn describe(self) -> &'static str {
        match self {
            NoticeKind::RenderFailed => "revision failed to render",
            NoticeKind::RolloutStarted => "rollout started",
            NoticeKind::RolloutAwaitingApproval => "rollout awaiting approval",
            NoticeKind::DeletionGuardHolding => "deletion guard holding a rollout",
            NoticeKind::RolloutCompleted => "rollout completed",
            NoticeKind::RolloutFailed => "rollout failed",
            NoticeKind::RolloutRolledBack => "rolled back",
            NoticeKind::RolloutSuperseded => "rollout superseded",
            NoticeKind::RolloutAbandoned => "rollout abandoned",
            NoticeKind::ClusterOffline => "cluster offline",
            NoticeKind::ClusterUnreachable => "cluster API unreachable",
            NoticeKind::ClusterBack => "cluster back",
            NoticeKind::DriftCorrected => "drift corrected",
        }
    }
}

/// One notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Its number: one more than the notice before it.
    pub seq: u64,
    /// When this state recorded its first notice: with the group's name and the number, it
    /// makes the notice's id unique even across a group founded again (numbers restart).
    pub epoch: Timestamp,
    /// What happened.
    pub kind: NoticeKind,
    /// When (the proposer's clock; an agent's for what an agent reported).
    pub at: Timestamp,
    /// The stage, for rollouts and renders of a stage; none for cluster notices (the
    /// controller names the stage that selects the cluster as it delivers them).
    pub stage: Option<String>,
    /// The cluster, for cluster and drift notices.
    pub cluster: Option<String>,
    /// The commit concerned, when one is.
    pub commit: Option<String>,
    /// The rollout, for rollout notices.
    pub rollout: Option<u64>,
    /// What happened, in words (at most 300 characters).
    pub message: String,
}

impl Notice {
    /// Its id, the same from every node of group `group`: `GROUP-EPOCH-SEQ`.
    pub fn id(&self, group: &str) -> String {
        format!("{group}-{}-{}", self.epoch.0, self.seq)
    }
}

/// What a notice is about.
#[derive(Debug, Clone, Default)]
pub struct About {
    /// The stage.
    pub stage: Option<String>,
    /// The cluster.
    pub cluster: Option<String>,
    /// The commit.
    pub commit: Option<String>,
    /// The rollout.
    pub rollout: Option<u64>,
}

/// The notices kept, and how far each receiver is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Notices {
    /// The number the next notice gets (the first is 1).
    pub next: u64,
    /// When the first notice was recorded.
    pub epoch: Timestamp,
    /// The newest notices ([`NOTICES_KEPT`] at most), oldest first.
    pub recent: VecDeque<Notice>,
    /// Per receiver (by its configured name), the last notice it is done with: delivered, given
    /// up on, or not for it.
    pub done: BTreeMap<String, u64>,
}

impl Notices {
    /// Records a notice.
    pub(super) fn push(&mut self, kind: NoticeKind, at: Timestamp, about: About, message: &str) {
        let seq = self.next.max(1);
        if seq == 1 {
            self.epoch = at;
        }
        self.next = seq + 1;
        self.recent.push_back(Notice {
            seq,
            epoch: self.epoch,
            kind,
            at,
            stage: about.stage,
            cluster: about.cluster,
            commit: about.commit,
            rollout: about.rollout,
            message: bounded(message),
        });
        while self.recent.len() > NOTICES_KEPT {
            self.recent.pop_front();
        }
    }

    /// The last number given (0 before the first notice).
    pub fn last(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    /// The notices after `seq`, oldest first.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = &Notice> {
        let start = self.recent.partition_point(|n| n.seq <= seq);
        self.recent.range(start..)
    }

    /// The oldest notice still kept.
    pub fn oldest(&self) -> Option<u64> {
        self.recent.front().map(|n| n.seq)
    }
}

/// Records that `receiver` is done with every notice up to `through`. Never moves backwards (a
/// late proposal from an old leader is harmless), never past the last notice.
pub(super) fn done(
    state: &mut State,
    receiver: &str,
    through: u64,
) -> Result<(), super::CommandError> {
    if receiver.is_empty() || receiver.len() > 64 {
        return Err(super::CommandError::Invalid(
            "a notification receiver's name is 1 to 64 characters".into(),
        ));
    }
    let last = state.notices.last();
    if through > last {
        return Err(super::CommandError::Invalid(format!(
            "notice {through} does not exist yet (the last is {last})"
        )));
    }
    let entry = state.notices.done.entry(receiver.to_owned()).or_insert(0);
    *entry = (*entry).max(through);
    Ok(())
}

fn bounded(message: &str) -> String {
    match message.char_indices().nth(MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(notices: &mut Notices, message: &str) {
        notices.push(
            NoticeKind::ClusterOffline,
            Timestamp(1),
            About::default(),
            message,
        );
    }

    #[test]
    fn notices_are_numbered_from_one_and_bounded() {
        let mut notices = Notices::default();
        assert_eq!(notices.last(), 0);
        for i in 0..NOTICES_KEPT + 5 {
            note(&mut notices, &format!("n{i}"));
        }
        assert_eq!(notices.last(), NOTICES_KEPT as u64 + 5);
        assert_eq!(notices.recent.len(), NOTICES_KEPT);
        assert_eq!(notices.oldest(), Some(6));
        let after: Vec<u64> = notices
            .after(NOTICES_KEPT as u64 + 3)
            .map(|n| n.seq)
            .collect();
        assert_eq!(after, [NOTICES_KEPT as u64 + 4, NOTICES_KEPT as u64 + 5]);
        assert_eq!(notices.after(0).count(), NOTICES_KEPT);
    }

    #[test]
    fn a_long_message_is_cut() {
        let mut notices = Notices::default();
        note(&mut notices, &"é".repeat(500));
        assert_eq!(notices.recent[0].message.chars().count(), MESSAGE_CHARS + 1);
    }

    #[test]
    fn done_never_moves_back_nor_past_the_last() {
        let mut state = State::default();
        note(&mut state.notices, "a");
        note(&mut state.notices, "b");
        done(&mut state, "ops", 2).expect("test set-up");
        done(&mut state, "ops", 1).expect("test set-up");
        assert_eq!(state.notices.done["ops"], 2);
        assert!(done(&mut state, "ops", 3).is_err());
        assert!(done(&mut state, "", 1).is_err());
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in NoticeKind::ALL {
            assert_eq!(NoticeKind::parse(kind.name()), Some(kind));
            assert!(!kind.name().contains(' '));
        }
    }
}
