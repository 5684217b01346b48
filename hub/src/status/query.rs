//! Which clusters a status shows: filters (stage, name, labels, problems only) and a page, so a
//! fleet of 10,000 clusters is read a screen at a time while stages and counts stay whole.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ClusterStatus, FleetStatus};
use crate::state::health::SyncState;

/// Which clusters to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterQuery {
    /// Only clusters of this stage (`-` for clusters no stage selects).
    pub stage: Option<String>,
    /// Only this cluster, or with a trailing `*` clusters whose name starts with the rest.
    pub cluster: Option<String>,
    /// Only clusters carrying every one of these labels with these values.
    pub labels: BTreeMap<String, String>,
    /// Only clusters that need attention ([`ClusterStatus::problem`]).
    pub problems: bool,
    /// Matching clusters skipped, in name order.
    pub offset: usize,
    /// At most this many shown; none: all.
    pub limit: Option<usize>,
}

/// How many clusters a query matched and which of them are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPage {
    /// Registered clusters.
    pub total: usize,
    /// Clusters the filters matched.
    pub matched: usize,
    /// Matching clusters skipped before those shown.
    pub offset: usize,
    /// The offset of the next page; none on the last.
    pub next_offset: Option<usize>,
}

impl ClusterQuery {
    /// Whether it selects every cluster (no filter, no page).
    pub fn is_everything(&self) -> bool {
        *self == ClusterQuery::default()
    }

    fn matches(&self, cluster: &ClusterStatus) -> bool {
        let stage_matches = match self.stage.as_deref() {
            None => true,
            Some("-") => cluster.stage.is_none(),
            Some(stage) => cluster.stage.as_deref() == Some(stage),
        };
        let name_matches = match self.cluster.as_deref() {
            None => true,
            Some(pattern) => match pattern.strip_suffix('*') {
                Some(prefix) => cluster.name.starts_with(prefix),
                None => cluster.name == pattern,
            },
        };
        stage_matches
            && name_matches
            && self
                .labels
                .iter()
                .all(|(k, v)| cluster.labels.get(k) == Some(v))
            && (!self.problems || cluster.problem().is_some())
    }
}

impl ClusterStatus {
    /// Why the cluster needs attention, if it does: its agent is offline, its API unreachable,
    /// its revision did not render for it, agents of another cluster use its name, or a bundle
    /// is not Synced and Healthy (applying, out of sync, failed, unknown; degraded, missing,
    /// progressing, unknown). Suspended counts as healthy: it is paused on purpose.
    pub fn problem(&self) -> Option<String> {
        if !self.online {
            return Some("agent offline".to_owned());
        }
        if self.api_reachable == Some(false) {
            return Some("cluster API unreachable".to_owned());
        }
        if self.render_error.is_some() {
            return Some("its revision did not render for it".to_owned());
        }
        if self.identity_conflict.is_some() {
            return Some("agents of another cluster use its name".to_owned());
        }
        self.bundles.iter().find_map(|b| {
            let healthy = matches!(b.health.as_str(), "Healthy" | "Suspended");
            (b.sync_state != SyncState::Synced || !healthy).then(|| {
                format!(
                    "bundle {}: {} / {}",
                    b.name,
                    b.sync_state.as_str(),
                    b.health
                )
            })
        })
    }
}

impl FleetStatus {
    /// Keeps the clusters `query` selects (in name order, one page) and records which.
    pub fn select(&mut self, query: &ClusterQuery) {
        let total = self.clusters.len();
        let mut matched: Vec<ClusterStatus> = std::mem::take(&mut self.clusters)
            .into_iter()
            .filter(|c| query.matches(c))
            .collect();
        let count = matched.len();
        let offset = query.offset.min(count);
        let end = query
            .limit
            .map_or(count, |limit| offset.saturating_add(limit).min(count));
        matched.truncate(end);
        self.clusters = matched.split_off(offset);
        self.cluster_page = Some(ClusterPage {
            total,
            matched: count,
            offset,
            next_offset: (end < count).then_some(end),
        });
    }
}

#[cfg(test)]
mod tests;
