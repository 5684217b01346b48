//! Which revision a stage moves to, and whether it may: candidates for automatic promotion,
//! the upstream gate, and the command that starts a rollout. Where a rollback may go is
//! `rollback.rs`.

use std::collections::BTreeSet;

use flotilla_core::FleetSpec;
use flotilla_core::spec::{FailureAction, Stage as StageSpec, StageSource};

use crate::state::rollout::pipeline::short;
use crate::state::rollout::{DeletionLimits, Gate, OnFailure};
use crate::state::source::{RevisionRef, RevisionStatus};
use crate::state::stage::StageChange;
use crate::state::{Command, PlannedWave, State, Timestamp};

/// The clusters a stage selects today: registered clusters whose labels the current
/// `flotilla.yaml` gives to it (a cluster two stages select belongs to neither).
pub fn stage_clusters(state: &State, spec: &FleetSpec, stage: &str) -> BTreeSet<String> {
    state
        .clusters
        .iter()
        .filter(|(_, c)| {
            spec.stage_for(&c.labels)
                .ok()
                .flatten()
                .is_some_and(|s| s.name == stage)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// A revision a stage should move to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The revision.
    pub revision: RevisionRef,
    /// How it comes: tracking or promotion.
    pub change: StageChange,
    /// Why, for the stage's history.
    pub reason: String,
}

pub(super) fn rendered(state: &State, revision: &RevisionRef) -> bool {
    matches!(
        state.revisions.get(revision).map(|r| &r.status),
        Some(RevisionStatus::Rendered { .. })
    )
}

/// The revision `stage` should move to by itself, if any:
/// - a stage tracking the followed branch: its head, when it rendered and has not failed in
///   the stage (so a force-push back to an older commit is followed too);
/// - a stage promoting from another: the newest revision the upstream stage passed that has
///   not failed here and is newer than anything this stage was ever pinned to (a stage rolled
///   back stays back until something newer passes upstream).
pub fn candidate(
    state: &State,
    stage: &StageSpec,
    source: &str,
    branch: &str,
) -> Option<Candidate> {
    let here = state.stages.get(&stage.name);
    let failed = |r: &RevisionRef| here.is_some_and(|s| s.failed.contains(r));
    match &stage.source {
        StageSource::Track { branch: tracked } if tracked == branch => {
            let head = crate::state::rollout::pipeline::head_if_rendered(state, source)?;
            (!failed(&head)).then(|| Candidate {
                reason: format!("branch `{branch}` is at {}", short(&head.commit)),
                revision: head,
                change: StageChange::Track,
            })
        }
        StageSource::Track { .. } => None,
        StageSource::PromoteFrom { stage: upstream } => {
            let newest_seq = here.map_or(0, |s| s.newest_seq);
            let revision = newest_passed(state, upstream, |revision, seq| {
                seq > newest_seq && !failed(revision)
            })?;
            Some(Candidate {
                reason: format!("passed stage `{upstream}`"),
                revision,
                change: StageChange::Promote,
            })
        }
    }
}

/// The newest (by arrival) rendered revision `upstream` passed that `keep` accepts.
fn newest_passed(
    state: &State,
    upstream: &str,
    keep: impl Fn(&RevisionRef, u64) -> bool,
) -> Option<RevisionRef> {
    state
        .stages
        .get(upstream)?
        .passed
        .iter()
        .filter(|r| rendered(state, r))
        .filter_map(|r| state.revisions.get(r).map(|rev| (r, rev.seq)))
        .filter(|(r, seq)| keep(r, *seq))
        .max_by_key(|(_, seq)| *seq)
        .map(|(r, _)| r.clone())
}

/// The revision `flotilla promote STAGE` takes when none is named: the newest the upstream
/// stage passed, or for a tracking stage the branch head.
pub fn default_promotion(state: &State, stage: &StageSpec, source: &str) -> Option<RevisionRef> {
    match &stage.source {
        StageSource::Track { .. } => {
            crate::state::rollout::pipeline::head_if_rendered(state, source)
        }
        StageSource::PromoteFrom { stage: upstream } => newest_passed(state, upstream, |_, _| true),
    }
}

/// Whether `revision` may enter `stage` without `--force`: a stage promoting from another
/// takes only what that stage passed; a tracking stage takes revisions of its source.
pub fn upstream_gate(
    state: &State,
    stage: &StageSpec,
    source: &str,
    revision: &RevisionRef,
) -> Result<(), String> {
    match &stage.source {
        StageSource::PromoteFrom { stage: upstream } => {
            let passed = state
                .stages
                .get(upstream)
                .is_some_and(|s| s.passed.contains(revision));
            if passed {
                Ok(())
            } else {
                Err(format!(
                    "revision {} has not passed stage `{upstream}` (its rollout there has not completed), and stage `{}` takes only what `{upstream}` passed; promote it to `{upstream}` first, or an admin may use --force",
                    short(&revision.commit),
                    stage.name
                ))
            }
        }
        StageSource::Track { branch } if revision.source != source => Err(format!(
            "revision {} is not from the source stage `{}` tracks (branch `{branch}`)",
            revision, stage.name
        )),
        StageSource::Track { .. } => Ok(()),
    }
}

/// What starting a rollout needs besides the state and the spec.
pub struct Start<'a> {
    /// The target.
    pub to: &'a RevisionRef,
    /// Tracking, promotion or forced promotion.
    pub change: StageChange,
    /// Whether it waits for approval.
    pub await_approval: bool,
    /// Whether it replaces an active rollout.
    pub supersede: bool,
    /// Who asks.
    pub by: &'a str,
    /// Why.
    pub reason: &'a str,
    /// When.
    pub at: Timestamp,
}

/// The `StartRollout` command moving `stage` to `start.to`: waves planned over the clusters the
/// stage selects today (empty waves dropped), the gate and the deletion guard's limits from the
/// stage's policy. Whether the guard holds it is judged when the command applies.
pub fn start_rollout(
    state: &State,
    spec: &FleetSpec,
    stage: &StageSpec,
    start: Start<'_>,
) -> Command {
    let clusters: Vec<flotilla_core::Cluster> = stage_clusters(state, spec, &stage.name)
        .into_iter()
        .filter_map(|name| {
            let labels = state.clusters.get(&name)?.labels.clone();
            Some(flotilla_core::Cluster {
                name,
                labels,
                capabilities: None,
            })
        })
        .collect();
    let policy = &stage.rollout;
    let planned = policy.plan(&clusters);
    // A stage with no cluster keeps one empty wave, which the gate holds (`judge`): with no
    // wave at all the rollout would complete as it starts. Only `allowEmpty` lets it pass.
    let keep_one = clusters.is_empty() && !stage.allow_empty;
    let waves = planned
        .into_iter()
        .enumerate()
        .filter(|(index, w)| !w.clusters.is_empty() || (keep_one && *index == 0))
        .map(|(_, w)| PlannedWave {
            name: w.name,
            clusters: w.clusters,
            soak_ms: crate::state::millis(w.soak.as_std()),
        })
        .collect();
    let gate = Gate {
        max_unavailable: u32::try_from(policy.max_unavailable.resolve(clusters.len()))
            .unwrap_or(u32::MAX),
        health_timeout_ms: crate::state::millis(policy.health_timeout.as_std()),
        on_failure: match policy.failure_action {
            FailureAction::Pause => OnFailure::Pause,
            FailureAction::Rollback => OnFailure::Rollback,
        },
    };
    Command::StartRollout {
        stage: stage.name.clone(),
        to: start.to.clone(),
        waves,
        gate,
        guard: DeletionLimits::of(&policy.deletion_guard),
        change: start.change,
        await_approval: start.await_approval,
        supersede: start.supersede,
        by: start.by.to_owned(),
        reason: start.reason.to_owned(),
        at: start.at,
    }
}
