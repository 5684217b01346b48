//! The rollout rules as invariants over the replicated log: given the state before an entry,
//! the entry and the state after it, which rules it broke. Written apart from the judgement
//! apply uses (`gate.rs`, `check.rs`) so tests can hold apply to the rules: the race test of
//! decisions against health and liveness (`check/tests.rs`) and the nemesis over real processes
//! check every entry of the log with it.
//!
//! - an assignment never takes a stage past `maxUnavailable` (offline, unreachable, unsettled
//!   and unhealthy clusters counted as the entry applies);
//! - a wave's soak begins, and a wave passes, only with every cluster given the target in it
//!   Healthy at the target for the settle period, and none of the rollout Degraded;
//! - marks say what is true: healthy only when Healthy, unhealthy only when not;
//! - waves go in order, and nothing is assigned by a rollout that is not running;
//! - a rollout by promotion starts only at a revision its upstream stage passed;
//! - no cluster planned in a paused rollout changes revision but by a rollback.

use std::collections::BTreeSet;

use flotilla_core::spec::StageSource;

use super::RolloutStatus;
use super::decide::SETTLE;
use super::pipeline;
use super::promotion::stage_clusters;
use super::readiness::{Readiness, at_revision, available};
use crate::state::stage::StageChange;
use crate::state::{Command, RolloutStep, State, millis};

/// The stage's clusters as the current `flotilla.yaml` of `source` gives them.
fn members(state: &State, stage: &str, source: &str) -> BTreeSet<String> {
    pipeline::current(state, source)
        .map(|(_, spec)| stage_clusters(state, &spec, stage))
        .unwrap_or_default()
}

/// The stage `stage` promotes from, in the current `flotilla.yaml` of `source`.
fn upstream(state: &State, stage: &str, source: &str) -> Option<String> {
    let (_, spec) = pipeline::current(state, source)?;
    match &spec.stages.iter().find(|s| s.name == stage)?.source {
        StageSource::PromoteFrom { stage } => Some(stage.clone()),
        StageSource::Track { .. } => None,
    }
}

/// What the invariants say about one applied entry, from the states around it: a description
/// of each rule it broke (none when it kept them all). `command` applied to `before` gave
/// `after`; call it only for entries that applied (a refused entry changes nothing).
pub fn violations(before: &State, after: &State, command: &Command) -> Vec<String> {
    let mut out = Vec::new();
    let settle = millis(SETTLE);
    match command {
        Command::RolloutStep { rollout, step, at } => {
            let r = &before.rollouts[rollout];
            if r.status != RolloutStatus::Running {
                out.push(format!("a step of rollout {rollout}, {}", r.status.name()));
            }
            let settled = |cluster: &str| {
                at_revision(before, cluster, &r.to) == Readiness::Healthy
                    && r.clusters
                        .get(cluster)
                        .and_then(|p| p.healthy_since)
                        .is_some_and(|s| s.0 + settle <= at.0)
            };
            match step {
                RolloutStep::Assign { wave, clusters } => {
                    if *wave != r.current {
                        out.push(format!("assigned in wave {wave}, current {}", r.current));
                    }
                    let stage = members(before, &r.stage, &r.to.source);
                    let unavailable: BTreeSet<&String> = stage
                        .iter()
                        .filter(|c| {
                            if r.clusters.contains_key(*c) {
                                !settled(c)
                            } else {
                                available(before, c).is_err()
                            }
                        })
                        .collect();
                    let newly = clusters.iter().filter(|c| !unavailable.contains(c)).count();
                    let max = r.gate.max_unavailable as usize;
                    if unavailable.len() + newly > max.max(unavailable.len()) {
                        out.push(format!(
                            "maxUnavailable {max} overrun: {} unavailable {unavailable:?}, {newly} \
                             more given {}",
                            unavailable.len(),
                            r.to.commit
                        ));
                    }
                }
                RolloutStep::Healthy { clusters } => {
                    for c in clusters {
                        if at_revision(before, c, &r.to) != Readiness::Healthy {
                            out.push(format!("{c} marked healthy while not Healthy"));
                        }
                    }
                }
                RolloutStep::Unhealthy { clusters } => {
                    for c in clusters {
                        if at_revision(before, c, &r.to) == Readiness::Healthy {
                            out.push(format!("{c} marked unhealthy while Healthy"));
                        }
                    }
                }
                RolloutStep::WaveHealthy { wave } | RolloutStep::WaveDone { wave } => {
                    let stage = members(before, &r.stage, &r.to.source);
                    for c in r.waves[*wave]
                        .clusters
                        .iter()
                        .filter(|c| stage.contains(*c))
                    {
                        if r.clusters.contains_key(c) && !settled(c) {
                            out.push(format!(
                                "wave {wave} soaked or passed with {c} not settled Healthy: {:?}",
                                at_revision(before, c, &r.to)
                            ));
                        }
                    }
                    for c in r.clusters.keys().filter(|c| stage.contains(*c)) {
                        if let Readiness::Degraded(_) | Readiness::ApplyFailed(_) =
                            at_revision(before, c, &r.to)
                        {
                            out.push(format!("wave {wave} soaked or passed with {c} failing"));
                        }
                    }
                }
            }
        }
        Command::StartRollout {
            stage, to, change, ..
        } if *change == StageChange::Promote => {
            if let Some(upstream) = upstream(before, stage, &to.source) {
                let passed = before
                    .stages
                    .get(&upstream)
                    .is_some_and(|s| s.passed.contains(to));
                if !passed {
                    out.push(format!(
                        "{stage} started at {}, which {upstream} never passed",
                        to.commit
                    ));
                }
            }
        }
        _ => {}
    }
    // A paused rollout's clusters move only by a rollback.
    let moving_back = matches!(
        command,
        Command::RollBack { .. } | Command::FailRollout { .. }
    );
    for r in before.rollouts.values() {
        if !matches!(r.status, RolloutStatus::Paused { .. }) || moving_back {
            continue;
        }
        for c in r.waves.iter().flat_map(|w| &w.clusters) {
            let was = before.clusters.get(c).and_then(|c| c.assigned.as_ref());
            let is = after.clusters.get(c).and_then(|c| c.assigned.as_ref());
            if was != is {
                out.push(format!(
                    "{c} of paused rollout moved from {was:?} to {is:?}"
                ));
            }
        }
    }
    // Waves in order.
    for (id, r) in &after.rollouts {
        if let Some((c, p)) = r.clusters.iter().find(|(_, p)| p.wave > r.current) {
            out.push(format!(
                "rollout {id}: {c} given the target in wave {} before wave {}",
                p.wave, r.current
            ));
        }
        if r.waves[..r.current.min(r.waves.len())]
            .iter()
            .any(|w| w.done_at.is_none())
        {
            out.push(format!("rollout {id} passed a wave without finishing it"));
        }
    }
    out
}
