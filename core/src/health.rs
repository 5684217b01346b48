//! The health of an object, a bundle or a cluster, shared by the agent (which computes it),
//! the hub (which gates rollouts on it) and the CLI (which shows it).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Health with Argo CD's names and severity order. Variants are declared from best to worst,
/// so `Ord` (and [`Health::worst_of`]) rolls a set up to its most severe member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Health {
    /// Everything is as desired and ready.
    Healthy,
    /// Paused or suspended on purpose (a suspended CronJob, a paused Deployment).
    Suspended,
    /// Not yet healthy but still moving towards it (a rollout in progress).
    Progressing,
    /// The object is desired but absent from the cluster.
    Missing,
    /// Failed or stuck: it will not become healthy without a change.
    Degraded,
    /// Health cannot be assessed (no report yet, or an unknown state).
    Unknown,
}

impl Health {
    /// Every variant, best first.
    pub const ALL: [Health; 6] = [
        Health::Healthy,
        Health::Suspended,
        Health::Progressing,
        Health::Missing,
        Health::Degraded,
        Health::Unknown,
    ];

    /// The more severe of two health values.
    pub fn worse(self, other: Health) -> Health {
        self.max(other)
    }

    /// The most severe health of a set; `Healthy` for an empty set (nothing is wrong).
    pub fn worst_of(healths: impl IntoIterator<Item = Health>) -> Health {
        healths.into_iter().fold(Health::Healthy, Health::worse)
    }

    /// The name as shown to users and written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Suspended => "Suspended",
            Health::Progressing => "Progressing",
            Health::Missing => "Missing",
            Health::Degraded => "Degraded",
            Health::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no health value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown health `{0}`: expected one of Healthy, Suspended, Progressing, Missing, Degraded, Unknown"
)]
pub struct UnknownHealth(pub String);

impl FromStr for Health {
    type Err = UnknownHealth;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Health::ALL
            .into_iter()
            .find(|health| health.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| UnknownHealth(text.to_owned()))
    }
}

/// Whether a cluster holds what it should of a bundle: a dimension beside [`Health`] (which
/// judges the workload), as Argo CD's sync status is. Declared from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SyncState {
    /// The desired content is applied and nothing has drifted from it.
    Synced,
    /// The desired content is not applied yet: being delivered, dry-run or applied (or, for a
    /// bundle no longer desired, being removed).
    Applying,
    /// Applied content was changed or deleted by someone else and is not (yet) corrected.
    OutOfSync,
    /// The last apply of the desired content failed; the message says which objects and why.
    ApplyFailed,
    /// Not known: the agent is offline, cannot reach its cluster's API, or has not reported.
    Unknown,
}

impl SyncState {
    /// Every variant, best first.
    pub const ALL: [SyncState; 5] = [
        SyncState::Synced,
        SyncState::Applying,
        SyncState::OutOfSync,
        SyncState::ApplyFailed,
        SyncState::Unknown,
    ];

    /// The name as shown to users and written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Synced => "Synced",
            SyncState::Applying => "Applying",
            SyncState::OutOfSync => "OutOfSync",
            SyncState::ApplyFailed => "ApplyFailed",
            SyncState::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for SyncState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_of_picks_the_most_severe() {
        assert_eq!(Health::worst_of([]), Health::Healthy);
        assert_eq!(
            Health::worst_of([Health::Healthy, Health::Progressing, Health::Suspended]),
            Health::Progressing
        );
        assert_eq!(
            Health::worst_of([Health::Degraded, Health::Missing]),
            Health::Degraded
        );
        assert_eq!(Health::Healthy.worse(Health::Unknown), Health::Unknown);
    }

    #[test]
    fn serde_and_parsing_use_the_display_names() {
        for health in Health::ALL {
            let json = serde_json::to_string(&health).unwrap();
            assert_eq!(json, format!("\"{health}\""));
            assert_eq!(health.to_string().parse::<Health>().unwrap(), health);
        }
        assert!("sick".parse::<Health>().is_err());
    }

    #[test]
    fn sync_states_serialize_as_their_names() {
        for state in SyncState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
        }
    }
}
