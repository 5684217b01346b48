//! A rollout judged at one moment: which clusters of each wave are done, on their way, failed
//! or waiting; which clusters of the stage are unavailable; what may happen next and when to
//! look again. The rollout controller turns a judgement into commands and `flotilla rollout
//! status` shows the same judgement, so what people see is what the controller acts on.
//!
//! A judgement is a function of the replicated state, the stage's clusters (from the current
//! `flotilla.yaml`), the time and the settle period: no memory, so every leader judges alike.

use std::collections::{BTreeMap, BTreeSet};

use super::readiness::{Readiness, at_revision, available};
use crate::state::rollout::pipeline::short;
use crate::state::rollout::{Rollout, RolloutStatus};
use crate::state::{State, Timestamp};

/// The whole judgement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Judgement {
    /// Each wave, in order.
    pub waves: Vec<WaveState>,
    /// Clusters given the target and Healthy at it, not yet recorded as such.
    pub marks_healthy: Vec<String>,
    /// Clusters recorded healthy that are not any more.
    pub marks_unhealthy: Vec<String>,
    /// Why the rollout fails now, if it does.
    pub failure: Option<String>,
    /// Clusters of the stage counted unavailable, with why.
    pub unavailable: BTreeMap<String, String>,
    /// Clusters of the current wave waiting for the target that have bundles in it.
    pub assignable: Vec<String>,
    /// Clusters of the current wave to give the target now.
    pub next_batch: Vec<String>,
    /// Every cluster of the current wave is done (or skipped): its soak may begin or end.
    pub wave_settled: bool,
    /// Why the current wave cannot move, when nothing it waits for is on its way.
    pub blocked: Option<String>,
    /// When the judgement changes by time alone (a soak, a settle period or a timeout ends).
    pub wake_at: Option<Timestamp>,
}

/// One wave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveState {
    /// Its name.
    pub name: String,
    /// Where it is.
    pub phase: WavePhase,
    /// Its soak, in milliseconds.
    pub soak_ms: u64,
    /// When its first cluster was given the target.
    pub started_at: Option<Timestamp>,
    /// When it passed.
    pub done_at: Option<Timestamp>,
    /// Its clusters.
    pub clusters: Vec<ClusterState>,
}

/// Where a wave is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavePhase {
    /// Passed.
    Done,
    /// Healthy, soaking until the time given.
    Soaking(Timestamp),
    /// Clusters are being given the target.
    InProgress,
    /// Not begun.
    Waiting,
}

impl WavePhase {
    /// As outputs carry it, one camelCase word: `done`, `soaking`, `inProgress`, `waiting`.
    pub fn key(self) -> &'static str {
        match self {
            WavePhase::InProgress => "inProgress",
            other => other.name(),
        }
    }

    /// As people read it.
    pub fn name(self) -> &'static str {
        match self {
            WavePhase::Done => "done",
            WavePhase::Soaking(_) => "soaking",
            WavePhase::InProgress => "in progress",
            WavePhase::Waiting => "waiting",
        }
    }
}

/// One cluster of a wave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterState {
    /// Its name.
    pub name: String,
    /// Where it is.
    pub phase: ClusterPhase,
    /// Health detail, or why it is skipped.
    pub detail: String,
    /// When it was given the target.
    pub assigned_at: Option<Timestamp>,
    /// When its health timeout runs out, while it is on its way.
    pub deadline: Option<Timestamp>,
}

/// Where a cluster of a wave is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterPhase {
    /// Healthy at the target for the settle period.
    Done,
    /// Given the target, not (yet, or not for long enough) Healthy at it.
    InProgress,
    /// Degraded at the target, or out of time.
    Failed,
    /// Not given the target yet.
    Waiting,
    /// Not part of the rollout any more (left the stage, no render for it, rolled back).
    Skipped,
}

impl ClusterPhase {
    /// As outputs carry it, one camelCase word: `done`, `inProgress`, `failed`, `waiting`,
    /// `skipped`.
    pub fn key(self) -> &'static str {
        match self {
            ClusterPhase::InProgress => "inProgress",
            other => other.name(),
        }
    }

    /// As people read it.
    pub fn name(self) -> &'static str {
        match self {
            ClusterPhase::Done => "done",
            ClusterPhase::InProgress => "in progress",
            ClusterPhase::Failed => "failed",
            ClusterPhase::Waiting => "waiting",
            ClusterPhase::Skipped => "skipped",
        }
    }
}

/// Milliseconds as people read them: `5m`, `1m30s`, `250ms`.
pub fn duration(ms: u64) -> String {
    flotilla_core::spec::Duration(std::time::Duration::from_millis(ms)).to_string()
}

/// The clusters a stage selects today and whether it may be empty.
#[derive(Debug, Clone, Copy)]
pub struct StageScope<'a> {
    /// The clusters the stage's selector matches in the current `flotilla.yaml`.
    pub clusters: &'a BTreeSet<String>,
    /// `allowEmpty`: a rollout may pass with no cluster at all.
    pub allow_empty: bool,
}

/// Judges `rollout` at `now`. `stage` holds the clusters the stage selects today; a cluster
/// gone from it is skipped. A cluster counts as done once it has been Healthy at the target
/// for `settle_ms`, recorded in the state, so one report that flickers Healthy proves nothing.
/// A stage that selects no registered cluster never passes unless it allows being empty: a
/// selector typo must hold the pipeline, not promote through it in the same second.
pub fn judge(
    state: &State,
    rollout: &Rollout,
    scope: StageScope<'_>,
    now: Timestamp,
    settle_ms: u64,
) -> Judgement {
    let mut judge = Judging {
        state,
        rollout,
        stage: scope.clusters,
        allow_empty: scope.allow_empty,
        now,
        settle_ms,
        out: Judgement::default(),
        readiness: BTreeMap::new(),
    };
    judge.given();
    judge.unavailable();
    judge.waves();
    if rollout.status == RolloutStatus::Running {
        judge.current_wave();
    }
    judge.out
}

struct Judging<'a> {
    state: &'a State,
    rollout: &'a Rollout,
    stage: &'a BTreeSet<String>,
    allow_empty: bool,
    now: Timestamp,
    settle_ms: u64,
    out: Judgement,
    readiness: BTreeMap<&'a str, Readiness>,
}

impl<'a> Judging<'a> {
    fn member(&self, cluster: &str) -> bool {
        self.stage.contains(cluster) && self.state.clusters.contains_key(cluster)
    }

    fn wake(&mut self, at: Timestamp) {
        if at > self.now {
            self.out.wake_at = Some(self.out.wake_at.map_or(at, |w| w.min(at)));
        }
    }

    fn timeout(&self) -> u64 {
        self.rollout.gate.health_timeout_ms
    }

    fn target(&self) -> &str {
        short(&self.rollout.to.commit)
    }

    /// Healthy at the target for the settle period.
    fn settled(&self, cluster: &str) -> bool {
        let healthy = matches!(self.readiness.get(cluster), Some(Readiness::Healthy));
        let since = self
            .rollout
            .clusters
            .get(cluster)
            .and_then(|p| p.healthy_since);
        healthy && since.is_some_and(|s| s.0.saturating_add(self.settle_ms) <= self.now.0)
    }

    /// Readiness, marks, failures and deadlines of the clusters given the target.
    fn given(&mut self) {
        let rollout = self.rollout;
        for (cluster, progress) in &rollout.clusters {
            if !self.member(cluster) {
                continue;
            }
            let readiness = at_revision(self.state, cluster, &rollout.to);
            let healthy = readiness == Readiness::Healthy;
            match (healthy, progress.healthy_since) {
                (true, None) => self.out.marks_healthy.push(cluster.clone()),
                (false, Some(_)) => self.out.marks_unhealthy.push(cluster.clone()),
                (true, Some(since)) => self.wake(Timestamp(since.0.saturating_add(self.settle_ms))),
                (false, None) => {}
            }
            if let Readiness::Degraded(detail) = &readiness {
                let failure = format!(
                    "cluster {cluster} is Degraded at {}: {detail}",
                    self.target()
                );
                self.out.failure.get_or_insert(failure);
            } else if let Readiness::ApplyFailed(detail) = &readiness {
                let failure = format!(
                    "cluster {cluster} could not apply {} (the API server refused it, so \
                     waiting cannot fix it; fix the commit, or its cause outside Git): {detail}",
                    self.target()
                );
                self.out.failure.get_or_insert(failure);
            } else if progress.wave == rollout.current && !healthy {
                let deadline = Timestamp(progress.clock_from.0.saturating_add(self.timeout()));
                if self.now >= deadline {
                    let failure = format!(
                        "cluster {cluster} was not Healthy at {} within {}: {}",
                        self.target(),
                        duration(self.timeout()),
                        readiness.describe()
                    );
                    self.out.failure.get_or_insert(failure);
                } else {
                    self.wake(deadline);
                }
            }
            self.readiness.insert(cluster, readiness);
        }
    }

    /// Clusters of the stage that count against `maxUnavailable`: those given the target and
    /// not settled at it, and the others not Healthy at what they are assigned (or offline).
    fn unavailable(&mut self) {
        let mut out = BTreeMap::new();
        for cluster in self.stage {
            if !self.state.clusters.contains_key(cluster) {
                continue;
            }
            let why = if self.rollout.clusters.contains_key(cluster) {
                (!self.settled(cluster)).then(|| match self.readiness.get(cluster.as_str()) {
                    Some(Readiness::Healthy) => format!("settling at {}", self.target()),
                    Some(other) => format!("at {}: {}", self.target(), other.describe()),
                    None => "unknown".to_owned(),
                })
            } else {
                available(self.state, cluster).err()
            };
            if let Some(why) = why {
                out.insert(cluster.clone(), why);
            }
        }
        self.out.unavailable = out;
    }

    fn waves(&mut self) {
        let rollout = self.rollout;
        for (index, wave) in rollout.waves.iter().enumerate() {
            let clusters = wave
                .clusters
                .iter()
                .map(|cluster| self.cluster_state(index, cluster))
                .collect();
            let phase = match (index.cmp(&rollout.current), wave.healthy_at) {
                (std::cmp::Ordering::Less, _) => WavePhase::Done,
                (std::cmp::Ordering::Equal, Some(at)) => {
                    WavePhase::Soaking(Timestamp(at.0.saturating_add(wave.soak_ms)))
                }
                (std::cmp::Ordering::Equal, None) if wave.started_at.is_some() => {
                    WavePhase::InProgress
                }
                _ => WavePhase::Waiting,
            };
            self.out.waves.push(WaveState {
                name: wave.name.clone(),
                phase,
                soak_ms: wave.soak_ms,
                started_at: wave.started_at,
                done_at: wave.done_at,
                clusters,
            });
        }
    }

    fn cluster_state(&self, wave: usize, cluster: &str) -> ClusterState {
        let rollout = self.rollout;
        let progress = rollout.clusters.get(cluster);
        let skipped = |detail: String| ClusterState {
            name: cluster.to_owned(),
            phase: ClusterPhase::Skipped,
            detail,
            assigned_at: progress.map(|p| p.assigned_at),
            deadline: None,
        };
        if !self.member(cluster) {
            return skipped("no longer in the stage".to_owned());
        }
        let Some(progress) = progress else {
            if let Some(error) = self
                .state
                .revisions
                .get(&rollout.to)
                .and_then(|r| r.error_for(cluster))
            {
                return skipped(format!(
                    "{} did not render for it: {}",
                    self.target(),
                    error.describe()
                ));
            }
            if wave < rollout.current || !rollout.is_active() {
                return skipped(format!("not given {}", self.target()));
            }
            return ClusterState {
                name: cluster.to_owned(),
                phase: ClusterPhase::Waiting,
                detail: String::new(),
                assigned_at: None,
                deadline: None,
            };
        };
        let readiness = self
            .readiness
            .get(cluster)
            .cloned()
            .unwrap_or(Readiness::Progressing(String::new()));
        let deadline = Timestamp(progress.clock_from.0.saturating_add(self.timeout()));
        let (phase, detail, deadline) = match &rollout.status {
            RolloutStatus::RolledBack { .. }
            | RolloutStatus::Superseded { .. }
            | RolloutStatus::Abandoned { .. } => (
                ClusterPhase::Skipped,
                format!("{} ({})", readiness.describe(), rollout.status.name()),
                None,
            ),
            _ if self.settled(cluster) => (ClusterPhase::Done, readiness.describe(), None),
            _ if matches!(readiness, Readiness::Degraded(_)) => {
                (ClusterPhase::Failed, readiness.describe(), None)
            }
            _ if matches!(readiness, Readiness::ApplyFailed(_)) => (
                ClusterPhase::Failed,
                format!("apply failed: {}", readiness.describe()),
                None,
            ),
            _ if progress.wave == rollout.current
                && rollout.is_active()
                && self.now >= deadline =>
            {
                (ClusterPhase::Failed, readiness.describe(), Some(deadline))
            }
            _ if readiness == Readiness::Healthy => (
                ClusterPhase::InProgress,
                "Healthy, settling".to_owned(),
                Some(deadline),
            ),
            _ => (
                ClusterPhase::InProgress,
                readiness.describe(),
                Some(deadline),
            ),
        };
        ClusterState {
            name: cluster.to_owned(),
            phase,
            detail,
            assigned_at: Some(progress.assigned_at),
            deadline: deadline.filter(|_| progress.wave == rollout.current),
        }
    }

    /// What the current wave may do: the next batch within `maxUnavailable`, whether it is
    /// settled (its soak may begin or end), or why it is blocked.
    fn current_wave(&mut self) {
        let rollout = self.rollout;
        let Some(wave) = rollout.current_wave() else {
            return;
        };
        if !self.allow_empty && !self.stage.iter().any(|c| self.member(c)) {
            self.hold(
                wave.name.as_str(),
                "the stage selects no registered cluster: check its clusterSelector, or set \
                 `allowEmpty: true` on a stage that may have none"
                    .to_owned(),
            );
            return;
        }
        let members: Vec<&String> = wave.clusters.iter().filter(|c| self.member(c)).collect();
        let to = self.state.revisions.get(&rollout.to);
        let pending: Vec<&String> = members
            .iter()
            .copied()
            .filter(|c| !rollout.clusters.contains_key(*c))
            .filter(|c| to.and_then(|r| r.error_for(c)).is_none())
            .collect();
        let assignable: Vec<&String> = pending
            .iter()
            .copied()
            .filter(|c| to.and_then(|r| r.bundles_for(c)).is_some())
            .collect();
        let in_flight = members
            .iter()
            .filter(|c| rollout.clusters.contains_key(**c) && !self.settled(c))
            .count();
        // Giving the target to a cluster already unavailable makes nobody else unavailable.
        let (free, others): (Vec<&String>, Vec<&String>) = assignable
            .iter()
            .copied()
            .partition(|c| self.out.unavailable.contains_key(*c));
        let budget =
            (rollout.gate.max_unavailable as usize).saturating_sub(self.out.unavailable.len());
        let mut batch: Vec<String> = free
            .into_iter()
            .chain(others.into_iter().take(budget))
            .cloned()
            .collect();
        batch.sort();
        self.out.assignable = assignable.iter().map(|c| (*c).clone()).collect();
        self.out.wave_settled = pending.is_empty() && in_flight == 0;
        if self.out.wave_settled
            && let Some(healthy_at) = wave.healthy_at
        {
            self.wake(Timestamp(healthy_at.0.saturating_add(wave.soak_ms)));
        }
        if batch.is_empty() && !pending.is_empty() && in_flight == 0 {
            let blocked = if assignable.is_empty() {
                format!(
                    "waiting for {} to be rendered for {}",
                    self.target(),
                    names(&pending)
                )
            } else {
                format!(
                    "maxUnavailable {} reached: {}",
                    rollout.gate.max_unavailable,
                    self.out
                        .unavailable
                        .iter()
                        .map(|(c, why)| format!("{c} {why}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            self.hold(&wave.name, blocked);
        }
        self.out.next_batch = batch;
    }

    /// The current wave cannot move for `why`: blocked now, failed once the health timeout
    /// has passed without progress.
    fn hold(&mut self, wave: &str, why: String) {
        let deadline = Timestamp(self.rollout.progressed_at.0.saturating_add(self.timeout()));
        if self.now >= deadline {
            let failure = format!(
                "wave {wave} blocked for {}: {why}",
                duration(self.timeout())
            );
            self.out.failure.get_or_insert(failure);
        } else {
            self.wake(deadline);
        }
        self.out.blocked = Some(why);
    }
}

fn names(clusters: &[&String]) -> String {
    clusters
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
