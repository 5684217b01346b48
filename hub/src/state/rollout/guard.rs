//! The deletion guard: what a revision would delete from a stage's clusters, and whether that
//! holds its rollout for an approval by a person whatever the stage's `approval`.
//!
//! Judged by apply itself when `StartRollout` applies, from the state alone, so every replica
//! reaches the same verdict and no proposal — a stale one, or one from a controller that did not
//! look — can start a deleting rollout without it. What is compared, per cluster the rollout
//! plans: the bundles the stage's pin renders for it against those the target renders for it.
//!
//! 1. **Objects pruned**: the object ids (group, kind, namespace, name) of all its bundles at
//!    the pin that none of its bundles at the target has. An object moving between bundles is
//!    not pruned. Held when more than `max_pruned_objects` of one cluster's objects would go.
//! 2. **Bundles removed**: a bundle the cluster has at the pin and not at the target. Held when
//!    one bundle would leave more than `max_bundle_removals` of the stage's clusters.
//! 3. **No bundles left**: every cluster would have no bundle while one had some before.
//!
//! Reading a bundle's objects needs its blob; one that cannot be read holds the rollout too
//! (what cannot be counted cannot be called small).

use std::collections::{BTreeMap, BTreeSet};

use flotilla_core::spec::{DeletionGuard, IntOrPercent};
use serde::{Deserialize, Serialize};

use crate::state::State;
use crate::state::source::{BlobHash, ObjectKey, RevisionRef};

/// Clusters (or bundles) a hold names; the counts say how many there are in all.
const NAMED: usize = 10;

/// A limit as the stage wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Limit {
    /// An absolute number.
    Count(u32),
    /// A percentage (0 to 100) of the whole it limits.
    Percent(u32),
}

impl Limit {
    fn of(value: IntOrPercent) -> Self {
        match value {
            IntOrPercent::Count(count) => Limit::Count(count),
            IntOrPercent::Percent(percent) => Limit::Percent(percent.min(100)),
        }
    }

    /// The limit as the spec writes it.
    fn spec(self) -> IntOrPercent {
        match self {
            Limit::Count(count) => IntOrPercent::Count(count),
            Limit::Percent(percent) => IntOrPercent::Percent(percent),
        }
    }

    /// Whether `part` of `whole` is more than the limit allows ([`IntOrPercent::exceeded_by`]).
    fn exceeded(self, part: u64, whole: u64) -> bool {
        self.spec().exceeded_by(part, whole)
    }

    /// The largest allowed count out of `whole` ([`IntOrPercent::allowance`]).
    fn clusters(self, whole: u64) -> u64 {
        self.spec().allowance(whole)
    }

    fn describe(self) -> String {
        match self {
            Limit::Count(count) => count.to_string(),
            Limit::Percent(percent) => format!("{percent}%"),
        }
    }
}

/// The guard's limits, as the stage's `rollout.deletionGuard` said when the rollout started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionLimits {
    /// Most objects one cluster may lose; `None`: not checked.
    pub max_pruned_objects: Option<Limit>,
    /// Most clusters of the stage one bundle may be removed from; `None`: not checked.
    pub max_bundle_removals: Option<Limit>,
    /// Whether leaving every cluster of the stage with no bundle holds the rollout.
    pub hold_no_bundles: bool,
}

impl DeletionLimits {
    /// No check at all (`deletionGuard: {enabled: false}`).
    pub const OFF: DeletionLimits = DeletionLimits {
        max_pruned_objects: None,
        max_bundle_removals: None,
        hold_no_bundles: false,
    };

    /// The limits of a stage's policy.
    pub fn of(guard: &DeletionGuard) -> Self {
        if !guard.enabled {
            return Self::OFF;
        }
        DeletionLimits {
            max_pruned_objects: Some(Limit::of(guard.max_pruned_objects)),
            max_bundle_removals: Some(Limit::of(guard.max_bundle_removals)),
            hold_no_bundles: !guard.allow_no_bundles,
        }
    }

    fn is_off(&self) -> bool {
        *self == Self::OFF
    }
}

/// Why the guard held a rollout: every limit it would exceed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionHold {
    /// The limits it was judged by.
    pub limits: DeletionLimits,
    /// Clusters compared: those the rollout plans that the target renders for.
    pub clusters: u32,
    /// Clusters that would lose more objects than allowed, most first (the first few).
    pub pruning: Vec<Pruning>,
    /// How many clusters would lose more objects than allowed.
    pub pruning_clusters: u32,
    /// Bundles that would leave more clusters than allowed.
    pub removals: Vec<Removal>,
    /// Every cluster would be left with no bundle.
    pub no_bundles: bool,
    /// Bundles whose objects could not be counted (the first few), with why.
    pub unreadable: Vec<String>,
}

/// A cluster that would lose more objects than allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruning {
    /// The cluster.
    pub cluster: String,
    /// Objects it would lose.
    pub pruned: u32,
    /// Objects it holds at the pin.
    pub of: u32,
}

/// A bundle removed from more clusters than allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// The bundle.
    pub bundle: String,
    /// How many clusters it would leave.
    pub clusters: u32,
    /// The first few of them, by name.
    pub named: Vec<String>,
}

impl DeletionHold {
    /// What the revision would do, as one sentence per limit exceeded, e.g. `would prune more
    /// than 50% of the objects of 1 cluster: dev-1 3 of 3`.
    pub fn findings(&self) -> Vec<String> {
        let mut findings = Vec::new();
        if self.no_bundles {
            findings.push(format!(
                "would leave {} with no bundle at all",
                if self.clusters == 1 {
                    "the stage's only cluster".to_owned()
                } else {
                    format!("all {} clusters of the stage", self.clusters)
                }
            ));
        }
        if let (Some(limit), false) = (self.limits.max_pruned_objects, self.pruning.is_empty()) {
            let named: Vec<String> = self
                .pruning
                .iter()
                .map(|p| format!("{} {} of {}", p.cluster, p.pruned, p.of))
                .collect();
            findings.push(format!(
                "would prune more than {} of the objects of {} cluster{}: {}{}",
                limit.describe(),
                self.pruning_clusters,
                plural(self.pruning_clusters),
                named.join(", "),
                more(self.pruning_clusters, named.len())
            ));
        }
        if let Some(limit) = self.limits.max_bundle_removals {
            for removal in &self.removals {
                findings.push(format!(
                    "would remove bundle `{}` from {} of {} clusters (more than {}): {}{}",
                    removal.bundle,
                    removal.clusters,
                    self.clusters,
                    limit.clusters(u64::from(self.clusters)),
                    removal.named.join(", "),
                    more(removal.clusters, removal.named.len())
                ));
            }
        }
        for why in &self.unreadable {
            findings.push(format!("cannot count the objects of {why}"));
        }
        findings
    }

    /// The findings in one line.
    pub fn summary(&self) -> String {
        self.findings().join("; ")
    }
}

fn plural(count: u32) -> &'static str {
    if count == 1 { "" } else { "s" }
}

fn more(total: u32, named: usize) -> String {
    let left = (total as usize).saturating_sub(named);
    if left == 0 {
        String::new()
    } else {
        format!(" and {left} more")
    }
}

/// What the guard says of a rollout of `stage` to `to` over `clusters` (those its waves plan),
/// judged against the stage's pin: `None` when nothing exceeds a limit.
pub fn verdict<'a>(
    state: &State,
    stage: &str,
    clusters: impl IntoIterator<Item = &'a String>,
    to: &RevisionRef,
    limits: DeletionLimits,
) -> Option<DeletionHold> {
    if limits.is_off() {
        return None;
    }
    let pin = state.stages.get(stage)?.pinned.as_ref()?;
    if pin == to {
        return None;
    }
    let from = state.revisions.get(pin)?;
    let target = state.revisions.get(to)?;
    let clusters: BTreeSet<&String> = clusters.into_iter().collect();
    let empty = BTreeMap::new();
    let mut objects = ObjectCounter::new(state);
    let mut judged = 0u32;
    let (mut before, mut after) = (false, false);
    let mut pruning: Vec<Pruning> = Vec::new();
    let mut removed: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
    for cluster in clusters {
        // A cluster the target did not render for is not given it: nothing changes there.
        let Some(next) = target.bundles_for(cluster) else {
            continue;
        };
        judged += 1;
        let now = from.bundles_for(cluster).unwrap_or(&empty);
        before |= !now.is_empty();
        after |= !next.is_empty();
        for bundle in now.keys().filter(|b| !next.contains_key(*b)) {
            removed.entry(bundle).or_default().push(cluster);
        }
        if let Some(limit) = limits.max_pruned_objects
            && now != next
            && let Some((pruned, of)) = objects.pruned(cluster, now, next)
            && limit.exceeded(pruned, of)
        {
            pruning.push(Pruning {
                cluster: cluster.clone(),
                pruned: u32::try_from(pruned).unwrap_or(u32::MAX),
                of: u32::try_from(of).unwrap_or(u32::MAX),
            });
        }
    }
    let removals: Vec<Removal> = match limits.max_bundle_removals {
        Some(limit) => removed
            .into_iter()
            .filter(|(_, from)| from.len() as u64 > limit.clusters(u64::from(judged)))
            .map(|(bundle, from)| Removal {
                bundle: bundle.clone(),
                clusters: u32::try_from(from.len()).unwrap_or(u32::MAX),
                named: from.iter().take(NAMED).map(|c| (*c).clone()).collect(),
            })
            .collect(),
        None => Vec::new(),
    };
    let pruning_clusters = u32::try_from(pruning.len()).unwrap_or(u32::MAX);
    pruning.sort_by(|a, b| {
        b.pruned
            .cmp(&a.pruned)
            .then_with(|| a.cluster.cmp(&b.cluster))
    });
    pruning.truncate(NAMED);
    let hold = DeletionHold {
        limits,
        clusters: judged,
        pruning,
        pruning_clusters,
        removals,
        no_bundles: limits.hold_no_bundles && before && !after,
        unreadable: objects.unreadable,
    };
    let held = hold.no_bundles
        || hold.pruning_clusters > 0
        || !hold.removals.is_empty()
        || !hold.unreadable.is_empty();
    held.then_some(hold)
}

/// Reads the object ids of blobs, each blob once per verdict (clusters with equal render
/// inputs share blobs).
struct ObjectCounter<'a> {
    state: &'a State,
    read: BTreeMap<BlobHash, Result<BTreeSet<ObjectKey>, String>>,
    unreadable: Vec<String>,
}

impl<'a> ObjectCounter<'a> {
    fn new(state: &'a State) -> Self {
        ObjectCounter {
            state,
            read: BTreeMap::new(),
            unreadable: Vec::new(),
        }
    }

    /// How many of the objects `cluster` holds in bundles `now` none of `next` holds, and how
    /// many it holds; `None` when a blob cannot be read (recorded as unreadable). A bundle whose
    /// blob is the same in both holds the same objects in both, so only changed bundles are
    /// read — every revision changes some content, few remove anything — and the unchanged
    /// ones only when something would be pruned (to subtract an object that moved into one, and
    /// for the total).
    fn pruned(
        &mut self,
        cluster: &str,
        now: &BTreeMap<String, BlobHash>,
        next: &BTreeMap<String, BlobHash>,
    ) -> Option<(u64, u64)> {
        let same = |(bundle, hash): &(&String, &BlobHash), other: &BTreeMap<String, BlobHash>| {
            other.get(*bundle) == Some(*hash)
        };
        let gone = self.union(cluster, now.iter().filter(|b| !same(b, next)));
        let came = self.union(cluster, next.iter().filter(|b| !same(b, now)));
        let (gone, came) = (gone?, came?);
        if gone.is_subset(&came) {
            return Some((0, 0));
        }
        let kept = self.union(cluster, now.iter().filter(|b| same(b, next)))?;
        let pruned = gone
            .iter()
            .filter(|o| !came.contains(*o) && !kept.contains(*o))
            .count() as u64;
        Some((pruned, gone.union(&kept).count() as u64))
    }

    fn union<'b>(
        &mut self,
        cluster: &str,
        bundles: impl Iterator<Item = (&'b String, &'b BlobHash)>,
    ) -> Option<BTreeSet<ObjectKey>> {
        let mut all = BTreeSet::new();
        let mut readable = true;
        for (bundle, hash) in bundles {
            let state = self.state;
            match self
                .read
                .entry(*hash)
                .or_insert_with(|| read_objects(state, hash))
            {
                Ok(objects) => all.extend(objects.iter().cloned()),
                Err(why) => {
                    readable = false;
                    if self.unreadable.len() < NAMED {
                        let why = format!("bundle `{bundle}` of {cluster}: {why}");
                        self.unreadable.push(why);
                    }
                }
            }
        }
        readable.then_some(all)
    }
}

fn read_objects(state: &State, hash: &BlobHash) -> Result<BTreeSet<ObjectKey>, String> {
    let info = state
        .blobs
        .get(hash)
        .ok_or_else(|| format!("blob {hash} is not indexed"))?;
    let keys = state
        .object_sets
        .get(&info.objects)
        .ok_or_else(|| format!("the object set of blob {hash} is not recorded"))?;
    Ok(keys.iter().cloned().collect())
}
