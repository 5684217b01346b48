//! Planning a stage's rollout: which clusters each wave takes.
//!
//! Pure and deterministic, so the hub's rollout controller, `flotilla lint` and tests agree
//! on the plan for a given set of clusters.

use serde::{Deserialize, Serialize};

use crate::inventory::Cluster;
use crate::spec::{Duration, RolloutPolicy, WaveTarget};

/// Name of the wave that takes the clusters no declared wave took.
pub const REMAINING_WAVE: &str = "remaining";
/// Name of the single wave of a stage that declares none.
pub const ALL_WAVE: &str = "all";

/// A wave with its clusters decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedWave {
    /// The wave's name (`remaining` for the implicit last wave).
    pub name: String,
    /// Cluster names, sorted. May be empty: an empty wave completes at once.
    pub clusters: Vec<String>,
    /// How long the wave soaks once healthy.
    pub soak: Duration,
}

impl RolloutPolicy {
    /// Splits a stage's clusters into waves. Clusters are taken in name order; a selector
    /// wave takes the matching clusters no earlier wave took; a percentage wave takes
    /// clusters until that share of the stage (rounded up) has been reached. Clusters left
    /// over form a last wave, `remaining` (`all` when the policy declares no wave).
    pub fn plan(&self, stage_clusters: &[Cluster]) -> Vec<PlannedWave> {
        let mut pending: Vec<&Cluster> = stage_clusters.iter().collect();
        pending.sort_by(|a, b| a.name.cmp(&b.name));
        let total = pending.len();
        let mut planned = Vec::with_capacity(self.waves.len() + 1);
        for wave in &self.waves {
            let taken: Vec<&Cluster> = match &wave.target {
                WaveTarget::Selector(selector) => {
                    let (taken, rest) = pending
                        .into_iter()
                        .partition(|cluster| selector.matches(&cluster.labels));
                    pending = rest;
                    taken
                }
                WaveTarget::Percent(percent) => {
                    let reached = total - pending.len();
                    let target = (total * *percent as usize).div_ceil(100);
                    let count = target.saturating_sub(reached).min(pending.len());
                    pending.drain(..count).collect()
                }
            };
            planned.push(PlannedWave {
                name: wave.name.clone(),
                clusters: names(taken),
                soak: wave.soak.unwrap_or(self.soak),
            });
        }
        if !pending.is_empty() || planned.is_empty() {
            let name = if self.waves.is_empty() {
                ALL_WAVE
            } else {
                REMAINING_WAVE
            };
            planned.push(PlannedWave {
                name: name.to_owned(),
                clusters: names(pending),
                soak: self.soak,
            });
        }
        planned
    }
}

fn names(clusters: Vec<&Cluster>) -> Vec<String> {
    let mut names: Vec<String> = clusters.into_iter().map(|c| c.name.clone()).collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::LabelSelector;
    use crate::spec::Wave;

    fn clusters() -> Vec<Cluster> {
        ["prod-us-1", "prod-eu-1", "prod-ap-1", "prod-eu-2"]
            .iter()
            .map(|name| Cluster::new(name, [("region", &name[5..7])]))
            .collect()
    }

    fn wave(name: &str, target: WaveTarget) -> Wave {
        Wave {
            name: name.to_owned(),
            target,
            soak: None,
        }
    }

    #[test]
    fn no_waves_means_one_wave_of_everything() {
        let plan = RolloutPolicy::default().plan(&clusters());
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].name, ALL_WAVE);
        assert_eq!(
            plan[0].clusters,
            ["prod-ap-1", "prod-eu-1", "prod-eu-2", "prod-us-1"]
        );
    }

    #[test]
    fn selector_wave_then_cumulative_percentages_then_remaining() {
        let policy = RolloutPolicy {
            waves: vec![
                wave(
                    "canary",
                    WaveTarget::Selector(LabelSelector::parse("region=eu").unwrap()),
                ),
                wave("half", WaveTarget::Percent(50)),
                wave("three-quarters", WaveTarget::Percent(75)),
            ],
            soak: Duration::from_secs(60),
            ..RolloutPolicy::default()
        };
        let plan = policy.plan(&clusters());
        let waves: Vec<(&str, Vec<&str>)> = plan
            .iter()
            .map(|w| {
                (
                    w.name.as_str(),
                    w.clusters.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            waves,
            vec![
                ("canary", vec!["prod-eu-1", "prod-eu-2"]),
                ("half", vec![]),
                ("three-quarters", vec!["prod-ap-1"]),
                ("remaining", vec!["prod-us-1"]),
            ]
        );
        assert_eq!(plan[0].soak, Duration::from_secs(60));
    }

    #[test]
    fn wave_soak_overrides_stage_soak() {
        let mut canary = wave("canary", WaveTarget::Percent(100));
        canary.soak = Some(Duration::from_secs(5));
        let policy = RolloutPolicy {
            waves: vec![canary],
            ..RolloutPolicy::default()
        };
        let plan = policy.plan(&clusters());
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].soak, Duration::from_secs(5));
    }
}
