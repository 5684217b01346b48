//! How a cluster stands at a revision, from what its agent reported: the health gate's input.

use flotilla_core::Health;

use crate::state::State;
use crate::state::health::HealthKey;
use crate::state::source::RevisionRef;

/// A cluster at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Online, and every bundle the revision has for it is applied and Healthy.
    Healthy,
    /// Online and not there yet: a bundle not applied, or applied and not Healthy (and not
    /// Degraded).
    Progressing(String),
    /// A bundle of the revision is applied and Degraded.
    Degraded(String),
    /// The agent could not apply a bundle of the revision: the API server refused it
    /// (invalid, forbidden), so waiting cannot help (the agent tries again only every few
    /// minutes, in case the cause lies outside Git).
    ApplyFailed(String),
    /// Its agent is not connected: nothing it reported can be trusted to be current.
    Offline,
    /// Its agent is connected but cannot reach the cluster's API server (the error): what it
    /// reported cannot be current either.
    Unreachable(String),
}

impl Readiness {
    /// What people read: `Healthy`, `Offline`, or the detail.
    pub fn describe(&self) -> String {
        match self {
            Readiness::Healthy => "Healthy".to_owned(),
            Readiness::Offline => "offline".to_owned(),
            Readiness::Unreachable(error) => format!("cluster API unreachable: {error}"),
            Readiness::Progressing(detail)
            | Readiness::Degraded(detail)
            | Readiness::ApplyFailed(detail) => detail.clone(),
        }
    }
}

/// How `cluster` stands at `revision`: every bundle the revision renders for it must be
/// reported applied (the content hash the revision holds) and Healthy. A revision with no
/// bundles for the cluster is never reached (it cannot be assigned there).
pub fn at_revision(state: &State, cluster: &str, revision: &RevisionRef) -> Readiness {
    let Some(registered) = state.clusters.get(cluster) else {
        return Readiness::Progressing("not registered".to_owned());
    };
    if !registered.online {
        return Readiness::Offline;
    }
    if let Some(api) = registered.api.as_ref().filter(|api| !api.reachable) {
        return Readiness::Unreachable(api.error.clone());
    }
    let Some(bundles) = state
        .revisions
        .get(revision)
        .and_then(|r| r.bundles_for(cluster))
    else {
        return Readiness::Progressing(format!("{} has no bundles for it", short(revision)));
    };
    let mut progressing = Vec::new();
    let mut degraded = Vec::new();
    let mut failed = Vec::new();
    for (bundle, hash) in bundles {
        let key = HealthKey {
            cluster: cluster.to_owned(),
            bundle: bundle.clone(),
        };
        match state.health.get(&key) {
            None => progressing.push(format!("{bundle}: not reported yet")),
            Some(record)
                if record
                    .failed
                    .as_ref()
                    .is_some_and(|f| f.permanent && f.content.as_ref() == Some(hash)) =>
            {
                let errors = record.failed.as_ref().map(|f| f.errors.join("; "));
                failed.push(format!("{bundle}: {}", errors.unwrap_or_default()));
            }
            Some(record) if record.applied.as_ref() != Some(hash) => {
                progressing.push(with_message(bundle, "not applied yet", &record.message));
            }
            Some(record) if record.health == Health::Degraded => {
                degraded.push(with_message(bundle, "Degraded", &record.message));
            }
            Some(record) if record.health != Health::Healthy => {
                progressing.push(with_message(
                    bundle,
                    record.health.as_str(),
                    &record.message,
                ));
            }
            Some(_) => {}
        }
    }
    if !failed.is_empty() {
        Readiness::ApplyFailed(failed.join("; "))
    } else if !degraded.is_empty() {
        Readiness::Degraded(degraded.join("; "))
    } else if !progressing.is_empty() {
        Readiness::Progressing(progressing.join("; "))
    } else {
        Readiness::Healthy
    }
}

/// Whether a cluster counts as available: online and Healthy at the revision it is assigned
/// (a cluster assigned nothing yet holds nothing that could be unhealthy).
pub fn available(state: &State, cluster: &str) -> Result<(), String> {
    let Some(registered) = state.clusters.get(cluster) else {
        return Err("not registered".to_owned());
    };
    if !registered.online {
        return Err("offline".to_owned());
    }
    if let Some(api) = registered.api.as_ref().filter(|api| !api.reachable) {
        return Err(format!("cluster API unreachable: {}", api.error));
    }
    match &registered.assigned {
        None => Ok(()),
        Some(revision) => match at_revision(state, cluster, revision) {
            Readiness::Healthy => Ok(()),
            other => Err(format!("at {}: {}", short(revision), other.describe())),
        },
    }
}

fn with_message(bundle: &str, what: &str, message: &str) -> String {
    if message.is_empty() {
        format!("{bundle}: {what}")
    } else {
        format!("{bundle}: {what}: {message}")
    }
}

fn short(revision: &RevisionRef) -> &str {
    crate::state::rollout::pipeline::short(&revision.commit)
}
