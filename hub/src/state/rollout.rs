//! Rollouts: moving a stage from one revision to another in waves, and their status machine.
//!
//! The rollout controller decides *when* (health gates, soak, timeouts, approvals); this module
//! records its decisions and refuses impossible ones (a wave out of order, a cluster given the
//! revision twice, a soak cut short, resuming a completed rollout). Everything a decision needs
//! — which clusters got the target and when, since when each is healthy, when each wave's soak
//! began — is here, so a new leader resumes exactly where the old one stopped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::audit::AuditEvent;
use super::command::{PlannedWave, RolloutAction, RolloutStep};
use super::notice::{About, NoticeKind};
use super::source::RevisionRef;
use super::stage::{PinRecord, StageChange, set_pin};
use super::{CommandError, State, Timestamp};

/// A stage moving from one revision to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// The stage.
    pub stage: String,
    /// Where the stage's clusters return to on rollback: the stage's pin when the rollout was
    /// created (or the start of the rollout it superseded).
    pub from: Option<RevisionRef>,
    /// The target.
    pub to: RevisionRef,
    /// Waves in order, frozen when the rollout was created.
    pub waves: Vec<Wave>,
    /// The health gate, frozen when the rollout was created.
    pub gate: Gate,
    /// How the target came to the stage (tracking, promotion, forced promotion).
    pub change: StageChange,
    /// Who asked for it.
    pub by: String,
    /// Why.
    pub reason: String,
    /// The wave in progress; equal to the number of waves once every wave passed.
    pub current: usize,
    /// Clusters given the target, by name.
    pub clusters: BTreeMap<String, ClusterProgress>,
    /// Status.
    pub status: RolloutStatus,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it began to run (at once, or when approved).
    pub started_at: Option<Timestamp>,
    /// When it last changed in any way.
    pub updated_at: Timestamp,
    /// When it last made progress (a cluster given the target or healthy, a wave passed, a
    /// resume): a rollout that can make none fails once the health timeout passes after it.
    pub progressed_at: Timestamp,
    /// Why the deletion guard held it for an approval, if it did; kept once approved, as the
    /// record of what was approved.
    pub deletion_hold: Option<DeletionHold>,
}

/// One wave of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wave {
    /// Name, from `flotilla.yaml` (`remaining` or `all` for the implicit last wave).
    pub name: String,
    /// Its clusters, sorted.
    pub clusters: Vec<String>,
    /// How long it soaks once healthy, in milliseconds.
    pub soak_ms: u64,
    /// When its first cluster was given the target.
    pub started_at: Option<Timestamp>,
    /// When every cluster of it was last seen healthy at the target: its soak began.
    pub healthy_at: Option<Timestamp>,
    /// When it passed.
    pub done_at: Option<Timestamp>,
}

/// The health gate of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    /// Most clusters of the stage not healthy at once (at least 1).
    pub max_unavailable: u32,
    /// How long a cluster given the target may take to report it Healthy, in milliseconds.
    pub health_timeout_ms: u64,
    /// What a failure does.
    pub on_failure: OnFailure,
}

/// What a failed health gate does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnFailure {
    /// Stop where it is and wait for an operator.
    Pause,
    /// Return every cluster that got the target to the start, pin the stage back and mark
    /// the target failed for the stage.
    Rollback,
}

/// A cluster given the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterProgress {
    /// The wave it belongs to.
    pub wave: usize,
    /// When it was given the target.
    pub assigned_at: Timestamp,
    /// Since when the controller has seen it Applied and Healthy at the target; `None` while
    /// it is not.
    pub healthy_since: Option<Timestamp>,
    /// Its health timeout counts from here: when it was given the target, when it last left
    /// Healthy, or when the rollout was resumed.
    pub clock_from: Timestamp,
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutStatus {
    /// Created for a stage with `approval: manual`, or held by the deletion guard; nothing
    /// happens until it is approved.
    AwaitingApproval,
    /// Waves are being started as their predecessors pass.
    Running,
    /// Waiting for an operator.
    Paused {
        /// Who paused it (an operator, or the controller on a failure).
        by: String,
        /// Why.
        reason: String,
    },
    /// Every wave passed; the target counts as passed by the stage.
    Completed,
    /// Clusters returned to a previous revision.
    RolledBack {
        /// Why.
        reason: String,
    },
    /// Replaced by a newer rollout of the same stage.
    Superseded {
        /// The newer rollout.
        by: u64,
    },
    /// Its stage left `flotilla.yaml`; the stage was pinned back to the start.
    Abandoned {
        /// Why.
        reason: String,
    },
}

impl RolloutStatus {
    /// The status as outputs carry it, one camelCase word (a stable contract of the JSON and
    /// YAML the API and CLI print): `awaitingApproval`, `running`, `paused`, `completed`,
    /// `rolledBack`, `superseded`, `abandoned`.
    pub fn key(&self) -> &'static str {
        match self {
            RolloutStatus::AwaitingApproval => "awaitingApproval",
            RolloutStatus::Running => "running",
            RolloutStatus::Paused { .. } => "paused",
            RolloutStatus::Completed => "completed",
            RolloutStatus::RolledBack { .. } => "rolledBack",
            RolloutStatus::Superseded { .. } => "superseded",
            RolloutStatus::Abandoned { .. } => "abandoned",
        }
    }

    /// The status as people read it: `running`, `paused`, `rolled back`, ...
    pub fn name(&self) -> &'static str {
        match self {
            RolloutStatus::AwaitingApproval => "awaiting approval",
            RolloutStatus::Running => "running",
            RolloutStatus::Paused { .. } => "paused",
            RolloutStatus::Completed => "completed",
            RolloutStatus::RolledBack { .. } => "rolled back",
            RolloutStatus::Superseded { .. } => "superseded",
            RolloutStatus::Abandoned { .. } => "abandoned",
        }
    }
}

impl Rollout {
    /// Awaiting approval, running or paused: it still owns its stage.
    pub fn is_active(&self) -> bool {
        matches!(
            self.status,
            RolloutStatus::AwaitingApproval | RolloutStatus::Running | RolloutStatus::Paused { .. }
        )
    }

    /// The wave in progress, if any is.
    pub fn current_wave(&self) -> Option<&Wave> {
        self.waves.get(self.current)
    }

    fn refuse(&self, id: u64, action: &str) -> CommandError {
        CommandError::InvalidRolloutTransition {
            rollout: id,
            status: self.status.name().to_owned(),
            action: action.to_owned(),
        }
    }
}

impl RolloutStatus {
    /// Paused by the controller because the health gate failed, not by an operator.
    pub fn paused_by_failure(&self) -> bool {
        matches!(self, RolloutStatus::Paused { by, .. } if by.starts_with("controller:"))
    }
}

impl State {
    /// The newest rollout of a stage, whatever its status, with its id.
    pub fn newest_rollout(&self, stage: &str) -> Option<(u64, &Rollout)> {
        self.rollouts
            .iter()
            .rev()
            .find(|(_, r)| r.stage == stage)
            .map(|(id, r)| (*id, r))
    }

    /// The stage's active rollout (awaiting approval, running or paused), if any.
    pub fn active_rollout(&self, stage: &str) -> Option<(u64, &Rollout)> {
        self.rollouts
            .iter()
            .rev()
            .find(|(_, r)| r.stage == stage && r.is_active())
            .map(|(id, r)| (*id, r))
    }
}

/// Everything `StartRollout` carries.
pub(super) struct NewRollout<'a> {
    pub(super) stage: &'a str,
    pub(super) to: &'a RevisionRef,
    pub(super) waves: &'a [PlannedWave],
    pub(super) gate: Gate,
    pub(super) guard: DeletionLimits,
    pub(super) change: StageChange,
    pub(super) await_approval: bool,
    pub(super) supersede: bool,
    pub(super) by: &'a str,
    pub(super) reason: &'a str,
    pub(super) at: Timestamp,
}

pub(super) fn start(state: &mut State, new: NewRollout<'_>) -> Result<(), CommandError> {
    let stage = state
        .stages
        .get(new.stage)
        .ok_or_else(|| CommandError::UnknownStage(new.stage.to_owned()))?;
    let pinned = stage.pinned.clone();
    super::source::require_rendered(state, new.to)?;
    super::signature::require(state, new.stage, new.to)?;
    check::start(state, &new)?;
    if new.gate.max_unavailable == 0 {
        return Err(CommandError::Invalid(
            "a rollout's maxUnavailable must be at least 1".into(),
        ));
    }
    if !matches!(
        new.change,
        StageChange::Track | StageChange::Promote | StageChange::ForcePromote
    ) {
        return Err(CommandError::Invalid(format!(
            "a rollout starts by tracking or promotion, not by {:?}",
            new.change
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for cluster in new.waves.iter().flat_map(|w| &w.clusters) {
        if !state.clusters.contains_key(cluster) {
            return Err(CommandError::UnknownCluster(cluster.clone()));
        }
        if !seen.insert(cluster) {
            return Err(CommandError::Invalid(format!(
                "cluster '{cluster}' is in two waves"
            )));
        }
    }
    let active = state
        .active_rollout(new.stage)
        .map(|(id, r)| (id, r.from.clone()));
    if active.is_none() && pinned.as_ref() == Some(new.to) {
        return Err(CommandError::Invalid(format!(
            "stage '{}' is already pinned to {}",
            new.stage, new.to
        )));
    }
    let id = state.next_rollout_id.max(1);
    let mut superseded = None;
    let from = match active {
        Some((active, _)) if !new.supersede => {
            return Err(CommandError::RolloutActive {
                stage: new.stage.to_owned(),
                rollout: active,
            });
        }
        Some((active, from)) => {
            if let Some(old) = state.rollouts.get_mut(&active) {
                old.status = RolloutStatus::Superseded { by: id };
                old.updated_at = new.at;
                superseded = Some((active, old.to.commit.clone()));
            }
            from
        }
        None => pinned,
    };
    // Judged here, as the command applies, so that no proposal can start a rollout the guard
    // would hold: not one decided on an older state, nor one whose proposer did not look.
    let deletion_hold = guard::verdict(
        state,
        new.stage,
        new.waves.iter().flat_map(|w| &w.clusters),
        new.to,
        new.guard,
    );
    let await_approval = new.await_approval || deletion_hold.is_some();
    state.next_rollout_id = id + 1;
    let status = if await_approval {
        RolloutStatus::AwaitingApproval
    } else {
        set_pin(
            state,
            new.stage,
            PinRecord {
                revision: new.to.clone(),
                change: new.change,
                by: new.by.to_owned(),
                reason: new.reason.to_owned(),
                at: new.at,
                rollout: Some(id),
            },
        );
        RolloutStatus::Running
    };
    let (action, held) = match &deletion_hold {
        Some(hold) => (
            "rollout.hold",
            format!("; held by the deletion guard: {}", hold.summary()),
        ),
        None if new.await_approval => ("await-approval", String::new()),
        None => (new.change.name(), String::new()),
    };
    audit(
        state,
        new.by,
        action,
        new.stage,
        format!("{} (rollout {id}): {}{held}", new.to, new.reason),
        new.at,
    );
    state.rollouts.insert(
        id,
        Rollout {
            stage: new.stage.to_owned(),
            from,
            to: new.to.clone(),
            waves: new
                .waves
                .iter()
                .map(|w| Wave {
                    name: w.name.clone(),
                    clusters: w.clusters.clone(),
                    soak_ms: w.soak_ms,
                    started_at: None,
                    healthy_at: None,
                    done_at: None,
                })
                .collect(),
            gate: new.gate,
            change: new.change,
            by: new.by.to_owned(),
            reason: new.reason.to_owned(),
            current: 0,
            clusters: BTreeMap::new(),
            started_at: (status == RolloutStatus::Running).then_some(new.at),
            status,
            created_at: new.at,
            updated_at: new.at,
            progressed_at: new.at,
            deletion_hold,
        },
    );
    if let Some((old, commit)) = superseded {
        let message = format!(
            "rollout {old} to {} superseded by rollout {id} to {}",
            pipeline::short(&commit),
            pipeline::short(&new.to.commit)
        );
        notice(
            state,
            NoticeKind::RolloutSuperseded,
            (new.stage, Some(old)),
            &commit,
            new.at,
            &message,
        );
    }
    let rollout = &state.rollouts[&id];
    let (kind, message) = match (&rollout.deletion_hold, &rollout.status) {
        (Some(hold), _) => (
            NoticeKind::DeletionGuardHolding,
            format!(
                "rollout {id} to {} held until approved: {}",
                pipeline::short(&new.to.commit),
                hold.summary()
            ),
        ),
        (None, RolloutStatus::AwaitingApproval) => (
            NoticeKind::RolloutAwaitingApproval,
            format!(
                "rollout {id} to {} awaits approval: `flotilla approve {}`",
                pipeline::short(&new.to.commit),
                new.stage
            ),
        ),
        _ => (
            NoticeKind::RolloutStarted,
            format!(
                "rollout {id} to {} started by {}: {}",
                pipeline::short(&new.to.commit),
                new.by,
                new.reason
            ),
        ),
    };
    notice(
        state,
        kind,
        (new.stage, Some(id)),
        &new.to.commit,
        new.at,
        &message,
    );
    complete_if_done(state, id, new.at);
    Ok(())
}

/// A running rollout with no wave left (a stage without clusters) completes at once.
fn complete_if_done(state: &mut State, id: u64, at: Timestamp) {
    let Some(rollout) = state.rollouts.get_mut(&id) else {
        return;
    };
    if rollout.status != RolloutStatus::Running || rollout.current < rollout.waves.len() {
        return;
    }
    rollout.status = RolloutStatus::Completed;
    let (stage_name, to) = (rollout.stage.clone(), rollout.to.clone());
    let message = format!(
        "rollout {id} to {} completed: every wave passed",
        pipeline::short(&to.commit)
    );
    let stage = state.stages.entry(stage_name.clone()).or_default();
    stage.failed.remove(&to);
    stage.passed.insert(to.clone());
    notice(
        state,
        NoticeKind::RolloutCompleted,
        (&stage_name, Some(id)),
        &to.commit,
        at,
        &message,
    );
}

/// Records a notice about rollout `rollout` of `stage`, concerning `commit`.
pub(super) fn notice(
    state: &mut State,
    kind: NoticeKind,
    (stage, rollout): (&str, Option<u64>),
    commit: &str,
    at: Timestamp,
    message: &str,
) {
    let about = About {
        stage: Some(stage.to_owned()),
        commit: Some(commit.to_owned()),
        rollout,
        cluster: None,
    };
    state.notices.push(kind, at, about, message);
}

/// Records an audit event about a stage; rollout decisions are audited as they apply, so the
/// record can never miss one.
fn audit(state: &mut State, actor: &str, action: &str, stage: &str, detail: String, at: Timestamp) {
    state.audit.push(AuditEvent {
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: format!("stage/{stage}"),
        detail,
        at,
        outcome: super::audit::Outcome::Succeeded,
        class: super::audit::AuditClass::Privileged,
        count: 1,
    });
}

pub(super) fn step(
    state: &mut State,
    id: u64,
    step: &RolloutStep,
    at: Timestamp,
) -> Result<(), CommandError> {
    let rollout = state
        .rollouts
        .get(&id)
        .ok_or(CommandError::UnknownRollout(id))?;
    if rollout.status != RolloutStatus::Running {
        return Err(rollout.refuse(id, step.name()));
    }
    check::step(state, id, rollout, step, at)?;
    match step {
        RolloutStep::Assign { wave, clusters } => assign(state, id, *wave, clusters, at),
        RolloutStep::Healthy { clusters } => mark_health(state, id, clusters, true, at),
        RolloutStep::Unhealthy { clusters } => mark_health(state, id, clusters, false, at),
        RolloutStep::WaveHealthy { wave } => wave_healthy(state, id, *wave, at),
        RolloutStep::WaveDone { wave } => wave_done(state, id, *wave, at),
    }
}

fn rollout_mut(state: &mut State, id: u64) -> Result<&mut Rollout, CommandError> {
    state
        .rollouts
        .get_mut(&id)
        .ok_or(CommandError::UnknownRollout(id))
}

fn require_current(rollout: &Rollout, id: u64, wave: usize) -> Result<(), CommandError> {
    if wave != rollout.current || wave >= rollout.waves.len() {
        return Err(CommandError::Invalid(format!(
            "rollout {id} is at wave {} of {}, not wave {wave}",
            rollout.current,
            rollout.waves.len()
        )));
    }
    Ok(())
}

/// Gives the target to clusters of the current wave, each once, only where it has bundles.
fn assign(
    state: &mut State,
    id: u64,
    wave: usize,
    clusters: &[String],
    at: Timestamp,
) -> Result<(), CommandError> {
    let rollout = &state.rollouts[&id];
    require_current(rollout, id, wave)?;
    if clusters.is_empty() {
        return Err(CommandError::Invalid("no cluster to assign".into()));
    }
    let to = rollout.to.clone();
    for cluster in clusters {
        if !rollout.waves[wave].clusters.contains(cluster) {
            return Err(CommandError::Invalid(format!(
                "cluster '{cluster}' is not in wave {wave} of rollout {id}"
            )));
        }
        if rollout.clusters.contains_key(cluster) {
            return Err(CommandError::Invalid(format!(
                "cluster '{cluster}' already got {to} in rollout {id}"
            )));
        }
        require_bundles(state, cluster, &to)?;
    }
    super::fleet::set_assigned(state, clusters, &to, at);
    let rollout = rollout_mut(state, id)?;
    for cluster in clusters {
        rollout.clusters.insert(
            cluster.clone(),
            ClusterProgress {
                wave,
                assigned_at: at,
                healthy_since: None,
                clock_from: at,
            },
        );
    }
    let wave = &mut rollout.waves[wave];
    wave.started_at.get_or_insert(at);
    // A newly updated cluster is not healthy yet, so the wave's soak (if it began) is over.
    wave.healthy_at = None;
    rollout.updated_at = at;
    rollout.progressed_at = at;
    Ok(())
}

/// Checks that a cluster is registered and that `revision` has bundles for it.
pub(super) fn require_bundles(
    state: &State,
    cluster: &str,
    revision: &RevisionRef,
) -> Result<(), CommandError> {
    if !state.clusters.contains_key(cluster) {
        return Err(CommandError::UnknownCluster(cluster.to_owned()));
    }
    let rendered = state
        .revisions
        .get(revision)
        .is_some_and(|r| r.bundles_for(cluster).is_some());
    if !rendered {
        return Err(CommandError::Invalid(format!(
            "revision {revision} has no bundles for cluster '{cluster}'"
        )));
    }
    Ok(())
}

/// Records that clusters given the target became healthy at it, or left Healthy.
fn mark_health(
    state: &mut State,
    id: u64,
    clusters: &[String],
    healthy: bool,
    at: Timestamp,
) -> Result<(), CommandError> {
    let rollout = rollout_mut(state, id)?;
    if clusters.is_empty() {
        return Err(CommandError::Invalid("no cluster named".into()));
    }
    for cluster in clusters {
        match rollout.clusters.get(cluster) {
            None => {
                return Err(CommandError::Invalid(format!(
                    "cluster '{cluster}' has not been given the target of rollout {id}"
                )));
            }
            Some(progress) if progress.healthy_since.is_some() == healthy => {
                return Err(CommandError::Invalid(format!(
                    "cluster '{cluster}' is already marked {} in rollout {id}",
                    if healthy { "healthy" } else { "unhealthy" }
                )));
            }
            Some(_) => {}
        }
    }
    let current = rollout.current;
    for cluster in clusters {
        if let Some(progress) = rollout.clusters.get_mut(cluster) {
            if healthy {
                progress.healthy_since = Some(at);
            } else {
                progress.healthy_since = None;
                progress.clock_from = at;
                if progress.wave == current
                    && let Some(wave) = rollout.waves.get_mut(current)
                {
                    // Its soak must begin again once the wave is healthy again.
                    wave.healthy_at = None;
                }
            }
        }
    }
    rollout.updated_at = at;
    if healthy {
        rollout.progressed_at = at;
    }
    Ok(())
}

fn wave_healthy(
    state: &mut State,
    id: u64,
    wave: usize,
    at: Timestamp,
) -> Result<(), CommandError> {
    let rollout = rollout_mut(state, id)?;
    require_current(rollout, id, wave)?;
    if rollout.waves[wave].healthy_at.is_some() {
        return Err(CommandError::Invalid(format!(
            "wave {wave} of rollout {id} is already soaking"
        )));
    }
    rollout.waves[wave].healthy_at = Some(at);
    rollout.updated_at = at;
    rollout.progressed_at = at;
    Ok(())
}

fn wave_done(state: &mut State, id: u64, wave: usize, at: Timestamp) -> Result<(), CommandError> {
    let rollout = rollout_mut(state, id)?;
    require_current(rollout, id, wave)?;
    let soak = &rollout.waves[wave];
    let Some(healthy_at) = soak.healthy_at else {
        return Err(CommandError::Invalid(format!(
            "wave {wave} of rollout {id} has not been healthy yet"
        )));
    };
    if at.0 < healthy_at.0.saturating_add(soak.soak_ms) {
        return Err(CommandError::Invalid(format!(
            "wave {wave} of rollout {id} soaks until {} ms",
            healthy_at.0.saturating_add(soak.soak_ms)
        )));
    }
    rollout.waves[wave].done_at = Some(at);
    rollout.current += 1;
    rollout.updated_at = at;
    rollout.progressed_at = at;
    complete_if_done(state, id, at);
    Ok(())
}

pub(super) fn transition(
    state: &mut State,
    id: u64,
    action: RolloutAction,
    by: &str,
    reason: &str,
    at: Timestamp,
) -> Result<(), CommandError> {
    let rollout = state
        .rollouts
        .get(&id)
        .ok_or(CommandError::UnknownRollout(id))?;
    let stage = rollout.stage.clone();
    match (action, &rollout.status) {
        (RolloutAction::Pause, RolloutStatus::Running) => {
            let rollout = rollout_mut(state, id)?;
            rollout.status = RolloutStatus::Paused {
                by: by.to_owned(),
                reason: reason.to_owned(),
            };
            rollout.updated_at = at;
        }
        (RolloutAction::Resume, RolloutStatus::Paused { .. }) => {
            let rollout = rollout_mut(state, id)?;
            rollout.status = RolloutStatus::Running;
            // The time spent paused does not count against anyone: every cluster still on its
            // way gets a full health timeout, and the wave in progress soaks again.
            for progress in rollout.clusters.values_mut() {
                if progress.healthy_since.is_none() {
                    progress.clock_from = at;
                }
            }
            if let Some(wave) = rollout.waves.get_mut(rollout.current) {
                wave.healthy_at = None;
            }
            rollout.updated_at = at;
            rollout.progressed_at = at;
        }
        (RolloutAction::ApproveByPolicy, RolloutStatus::AwaitingApproval)
            if rollout.deletion_hold.is_some() =>
        {
            return Err(CommandError::HeldByDeletionGuard {
                rollout: id,
                stage: stage.clone(),
            });
        }
        (
            RolloutAction::Approve | RolloutAction::ApproveByPolicy,
            RolloutStatus::AwaitingApproval,
        ) => {
            if action == RolloutAction::ApproveByPolicy {
                check::approve_by_policy(state, rollout)?;
            }
            let (to, change) = (rollout.to.clone(), rollout.change);
            super::source::require_rendered(state, &to)?;
            set_pin(
                state,
                &stage,
                PinRecord {
                    revision: to,
                    change,
                    by: by.to_owned(),
                    reason: reason.to_owned(),
                    at,
                    rollout: Some(id),
                },
            );
            let rollout = rollout_mut(state, id)?;
            rollout.status = RolloutStatus::Running;
            rollout.started_at = Some(at);
            rollout.updated_at = at;
            rollout.progressed_at = at;
            let commit = rollout.to.commit.clone();
            let message = format!(
                "rollout {id} to {} started: approved by {by}",
                pipeline::short(&commit)
            );
            notice(
                state,
                NoticeKind::RolloutStarted,
                (&stage, Some(id)),
                &commit,
                at,
                &message,
            );
            complete_if_done(state, id, at);
        }
        (action, _) => return Err(rollout.refuse(id, action.verb())),
    }
    let released = match (&state.rollouts[&id].deletion_hold, action) {
        (Some(hold), RolloutAction::Approve) => {
            format!("; released the deletion guard's hold: {}", hold.summary())
        }
        _ => String::new(),
    };
    audit(
        state,
        by,
        action.verb(),
        &stage,
        format!("rollout {id}: {reason}{released}"),
        at,
    );
    Ok(())
}

mod check;
pub mod decide;
pub mod gate;
pub mod guard;
pub mod invariants;
pub mod pipeline;
pub mod promotion;
pub mod readiness;
pub mod rollback;

pub(in crate::state) use check::assignment as check_assignment;
pub use guard::{DeletionHold, DeletionLimits};
pub(super) use rollback::{RollBack, abandon, fail, roll_back};

#[cfg(test)]
mod tests;
