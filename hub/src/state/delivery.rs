//! How far each revision got on each cluster: when the hub gave it, when the agent had applied
//! every bundle of it, when all of them were first Healthy, and the last problem before that
//! (an apply the API server refused, a Degraded bundle). The per-commit timeline is read from
//! here; it outlives the health records, which hold only each bundle's latest report.
//!
//! Recorded as commands apply (an assignment, a batch of health reports), so every replica
//! holds the same record and a new leader shows what the old one did.

use serde::{Deserialize, Serialize};

use super::health::{Health, HealthRecord, records_of};
use super::source::RevisionRef;
use super::{State, Timestamp};

/// How many revisions each cluster's record keeps, newest last: older ones are dropped.
pub const DELIVERIES_KEPT: usize = 8;

/// Most characters of a problem kept: enough for the object and the API server's reason, and
/// bounded because every cluster keeps several in the replicated state.
const PROBLEM_CHARS: usize = 300;

/// One revision given to one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The commit.
    pub commit: String,
    /// When the hub gave it to the cluster (the agent receives it as it streams).
    pub given_at: Timestamp,
    /// When the agent reported every bundle of it applied (the agent's clock).
    pub applied_at: Option<Timestamp>,
    /// When every bundle of it was first reported applied and Healthy (the agent's clock).
    pub healthy_at: Option<Timestamp>,
    /// The last problem seen before it was Healthy; none when there was none.
    pub problem: Option<Problem>,
}

/// Something that kept a revision from becoming Healthy on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// When it was reported (the agent's clock).
    pub at: Timestamp,
    /// `bundle NAME: apply failed: …` or `bundle NAME: Degraded: …`.
    pub message: String,
}

/// Records that `clusters` were given `revision`. Giving a cluster the revision it already has
/// records nothing new.
pub(super) fn given(state: &mut State, clusters: &[String], revision: &RevisionRef, at: Timestamp) {
    let mut judge_now = Vec::new();
    for name in clusters {
        let holds_nothing = records_of(&state.health, name).all(|(_, r)| r.applied.is_none());
        let Some(cluster) = state.clusters.get_mut(name) else {
            continue;
        };
        if cluster
            .deliveries
            .last()
            .is_some_and(|last| last.commit == revision.commit)
        {
            continue;
        }
        // Dropped before the push, so the list never holds (nor allocates for) more.
        let excess = (cluster.deliveries.len() + 1).saturating_sub(DELIVERIES_KEPT);
        cluster.deliveries.drain(..excess);
        cluster.deliveries.push(Delivery {
            commit: revision.commit.clone(),
            given_at: at,
            applied_at: None,
            healthy_at: None,
            problem: None,
        });
        if cluster.reporting() || holds_nothing {
            judge_now.push(name);
        }
    }
    // A revision that changes nothing the cluster holds brings no new report (the agent has
    // nothing to do): it is judged now, from the reports recorded while they are current, or
    // at once when the cluster holds nothing and the revision gives it nothing.
    for name in judge_now {
        observe(state, name, at);
    }
}

/// Updates the newest delivery of `cluster` from its bundles' health records, after a report
/// recorded at `at`; nothing once that delivery is Healthy.
pub(super) fn observe(state: &mut State, cluster: &str, at: Timestamp) {
    let State {
        clusters,
        revisions,
        health,
        ..
    } = state;
    let Some(registered) = clusters.get_mut(cluster) else {
        return;
    };
    let Some(assigned) = &registered.assigned else {
        return;
    };
    let Some(delivery) = registered.deliveries.last_mut() else {
        return;
    };
    if delivery.healthy_at.is_some() || delivery.commit != assigned.commit {
        return;
    }
    let Some(desired) = revisions.get(assigned).and_then(|r| r.bundles_for(cluster)) else {
        return;
    };
    let reported: Vec<(&str, &HealthRecord)> = records_of(health, cluster).collect();
    let mut applied = true;
    let mut healthy = true;
    let mut problem = None;
    for (bundle, hash) in desired {
        let record = reported
            .binary_search_by(|(name, _)| (*name).cmp(bundle.as_str()))
            .ok()
            .map(|i| reported[i].1);
        let Some(record) = record else {
            applied = false;
            continue;
        };
        let at_target = record.applied.as_ref() == Some(hash);
        applied &= at_target;
        healthy &= at_target && record.health == Health::Healthy;
        if let Some(failed) = record
            .failed
            .as_ref()
            .filter(|f| f.content.as_ref() == Some(hash))
        {
            problem.get_or_insert_with(|| {
                format!(
                    "bundle {bundle}: apply failed: {}",
                    failed.errors.join("; ")
                )
            });
        } else if at_target && record.health == Health::Degraded {
            problem.get_or_insert_with(|| format!("bundle {bundle}: Degraded: {}", record.message));
        }
    }
    // A bundle the revision no longer has is applied once its objects are gone (the agent
    // reports it holding nothing).
    applied &= reported
        .iter()
        .all(|(bundle, record)| desired.contains_key(*bundle) || record.applied.is_none());
    if applied && delivery.applied_at.is_none() {
        delivery.applied_at = Some(at);
    }
    if applied && healthy {
        delivery.healthy_at = Some(at);
    }
    if let Some(message) = problem {
        let message: String = message.chars().take(PROBLEM_CHARS).collect();
        if delivery
            .problem
            .as_ref()
            .is_none_or(|p| p.message != message)
        {
            delivery.problem = Some(Problem { at, message });
        }
    }
}

#[cfg(test)]
mod tests;
