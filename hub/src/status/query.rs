//! Which clusters a status shows: filters (stage, name, labels, bundle, sync state, health,
//! problems only), an order and a page, so a fleet of 10,000 clusters is read a screen at a time
//! while stages and counts stay whole.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{BundleStatus, ClusterStatus, Counts, FleetStatus};
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
    /// Only clusters with this bundle, each shown with that bundle alone.
    pub bundle: Option<String>,
    /// Only clusters with a bundle (the one `bundle` names, if it does) in this sync state.
    pub sync: Option<SyncState>,
    /// Only clusters with a bundle (the one `bundle` names, if it does) of this health.
    pub health: Option<String>,
    /// In which order the matching clusters are paged.
    pub sort: Sort,
    /// Matching clusters skipped, in `sort` order.
    pub offset: usize,
    /// At most this many shown; none: all.
    pub limit: Option<usize>,
}

/// The order of the clusters a query matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Sort {
    /// By name.
    #[default]
    Name,
    /// Clusters needing attention first, then by name.
    Problems,
    /// By stage (pipeline order, clusters of no stage last), then by name.
    Stage,
    /// Heard of longest ago first, never heard of before all, then by name.
    LastSeen,
}

/// How many clusters a query matched and which of them are shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// The bundles of every matching cluster (only the one `bundle` names, if it does),
    /// counted by sync state and by health.
    pub counts: Counts,
}

impl ClusterQuery {
    /// Whether it selects every cluster (no filter, no page).
    pub fn is_everything(&self) -> bool {
        *self == ClusterQuery::default()
    }

    /// The bundles of `cluster` the query looks at and shows: the one `bundle` names, or all.
    fn bundles<'a>(&'a self, cluster: &'a ClusterStatus) -> impl Iterator<Item = &'a BundleStatus> {
        cluster
            .bundles
            .iter()
            .filter(|b| self.bundle.as_ref().is_none_or(|name| &b.name == name))
    }

    fn matches(&self, cluster: &ClusterStatus) -> bool {
        if self.bundle.is_some() && self.bundles(cluster).next().is_none() {
            return false;
        }
        // A state filter needs a bundle in that state; without one, a cluster with no bundle
        // matches too.
        let in_state = (self.sync.is_none() && self.health.is_none())
            || self.bundles(cluster).any(|b| {
                self.sync.is_none_or(|sync| b.sync_state == sync)
                    && self
                        .health
                        .as_ref()
                        .is_none_or(|health| &b.health == health)
            });
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
        in_state
            && stage_matches
            && name_matches
            && self
                .labels
                .iter()
                .all(|(k, v)| cluster.labels.get(k) == Some(v))
            && (!self.problems || cluster.problem_of(self.bundles(cluster)).is_some())
    }

    /// The cluster as the query shows it: with the bundle it names alone, if it names one.
    fn shown(&self, cluster: &ClusterStatus) -> ClusterStatus {
        let mut shown = cluster.clone();
        if let Some(bundle) = &self.bundle {
            shown.bundles.retain(|b| &b.name == bundle);
        }
        shown
    }
}

impl ClusterStatus {
    /// Why the cluster needs attention, if it does: its agent is offline, its API unreachable,
    /// its revision did not render for it, agents of another cluster use its name, or a bundle
    /// is not Synced and Healthy (applying, out of sync, failed, unknown; degraded, missing,
    /// progressing, unknown). Suspended counts as healthy: it is paused on purpose.
    pub fn problem(&self) -> Option<String> {
        self.problem_of(self.bundles.iter())
    }

    /// As [`ClusterStatus::problem`], looking at `bundles` of it only.
    fn problem_of<'a>(
        &self,
        mut bundles: impl Iterator<Item = &'a BundleStatus>,
    ) -> Option<String> {
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
        bundles.find_map(|b| {
            super::bundle_problem(b).then(|| {
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

/// What of a fleet status a caller may view.
pub enum Scope<'a> {
    /// Everything: a viewer of every stage.
    Everything,
    /// The stages this says yes to, their clusters, counts and rollouts; no fleet-wide events.
    Stages(&'a dyn Fn(&str) -> bool),
}

impl Scope<'_> {
    fn stage(&self, stage: &str) -> bool {
        match self {
            Scope::Everything => true,
            Scope::Stages(can) => can(stage),
        }
    }

    fn cluster(&self, cluster: &ClusterStatus) -> bool {
        match self {
            Scope::Everything => true,
            Scope::Stages(can) => cluster.stage.as_deref().is_some_and(can),
        }
    }
}

impl FleetStatus {
    /// What `scope` may view of the status, with the clusters `query` selects (one page, in
    /// its order) and which those are; only what is shown is copied, so one status computed
    /// for a change serves every watcher.
    pub fn view(&self, scope: &Scope, query: &ClusterQuery) -> FleetStatus {
        let visible: Vec<&ClusterStatus> =
            self.clusters.iter().filter(|c| scope.cluster(c)).collect();
        let everything = matches!(scope, Scope::Everything);
        let (clusters, cluster_page) = if query.is_everything() {
            (visible.iter().map(|c| (*c).clone()).collect(), None)
        } else {
            let (shown, page) = self.page(&visible, query);
            (shown, Some(page))
        };
        FleetStatus {
            node: self.node,
            leader: self.leader,
            applied_index: self.applied_index,
            source: self.source.clone(),
            latest_revision: self.latest_revision.clone(),
            stages: self
                .stages
                .iter()
                .filter(|s| scope.stage(&s.name))
                .cloned()
                .collect(),
            counts: if everything {
                self.counts.clone()
            } else {
                Counts::of(visible.iter().copied())
            },
            clusters,
            rollouts: self
                .rollouts
                .iter()
                .filter(|r| scope.stage(&r.stage))
                .cloned()
                .collect(),
            events: if everything {
                self.events.clone()
            } else {
                Vec::new()
            },
            cluster_page,
        }
    }

    /// The page of `visible` clusters `query` selects, and which it is.
    fn page(
        &self,
        visible: &[&ClusterStatus],
        query: &ClusterQuery,
    ) -> (Vec<ClusterStatus>, ClusterPage) {
        let mut matched: Vec<&ClusterStatus> = visible
            .iter()
            .copied()
            .filter(|c| query.matches(c))
            .collect();
        match query.sort {
            // Clusters are listed by name already.
            Sort::Name => {}
            Sort::Problems => {
                matched.sort_by_cached_key(|c| c.problem_of(query.bundles(c)).is_none())
            }
            Sort::Stage => {
                let order: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
                let position = |c: &&ClusterStatus| {
                    c.stage
                        .as_deref()
                        .and_then(|s| order.iter().position(|o| *o == s))
                        .unwrap_or(order.len())
                };
                matched.sort_by_cached_key(position);
            }
            Sort::LastSeen => matched.sort_by_key(|c| c.last_seen),
        }
        let counts = Counts::of_bundles(matched.iter().flat_map(|c| query.bundles(c)));
        let count = matched.len();
        let offset = query.offset.min(count);
        let end = query
            .limit
            .map_or(count, |limit| offset.saturating_add(limit).min(count));
        let shown = matched[offset..end]
            .iter()
            .map(|c| query.shown(c))
            .collect();
        let page = ClusterPage {
            total: visible.len(),
            matched: count,
            offset,
            next_offset: (end < count).then_some(end),
            counts,
        };
        (shown, page)
    }
}

#[cfg(test)]
mod tests;
