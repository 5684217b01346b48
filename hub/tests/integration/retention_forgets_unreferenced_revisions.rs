//! Old revisions beyond the retention count are forgotten and their blobs collected, but never a
//! revision a stage is pinned to, a cluster is assigned, or a cluster still reports applied.

use crate::support::fleet as support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_hub::state::health::{Health, HealthKey, HealthReport};
use flotilla_hub::state::source::{BlobHash, RevisionStatus};
use flotilla_hub::state::{Command, State, Timestamp};
use support::{FLEET_SPEC, TestHub, assigned, revision};

const WAIT: Duration = Duration::from_secs(15);

fn kept(state: &State) -> BTreeSet<String> {
    state.revisions.keys().map(|r| r.commit.clone()).collect()
}

/// Every stored blob is referenced by a kept revision, and every referenced blob is stored.
fn blobs_exactly_referenced(state: &State) -> bool {
    let referenced: BTreeSet<&BlobHash> = state
        .revisions
        .values()
        .filter_map(|r| match &r.status {
            RevisionStatus::Rendered { bundles, .. } => Some(bundles),
            _ => None,
        })
        .flat_map(|b| b.values().flat_map(|m| m.values()))
        .collect();
    let stored: BTreeSet<&BlobHash> = state.blobs.keys().collect();
    referenced == stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_forgets_old_revisions_but_keeps_pinned_assigned_and_applied_ones() -> Result<()>
{
    support::init_tracing();
    let (repo, first) = support::with_fleet()?;
    let hub = TestHub::start(&repo.url(), |config| config.revision_retention = 1).await?;
    let node = hub.hub.node().clone();
    // Each commit must be seen before the next, or the hub would rightly skip it.
    hub.wait_for("the first commit", WAIT, |s| {
        assigned(s, "prod-1").as_deref() == Some(first.as_str())
    })
    .await?;
    let mut commits = vec![first.clone()];
    for greeting in ["two", "three"] {
        repo.write("flotilla.yaml", &FLEET_SPEC.replace("hello", greeting))?;
        let commit = repo.commit(greeting)?;
        hub.wait_for(greeting, WAIT, |s| {
            assigned(s, "dev-1").as_deref() == Some(commit.as_str())
        })
        .await?;
        commits.push(commit);
    }
    let (second, third) = (commits[1].clone(), commits[2].clone());

    // dev-1 reports it still runs the third commit's bundle.
    let applied = node
        .state()
        .revisions
        .get(&revision(&third))
        .and_then(|r| r.bundles_for("dev-1"))
        .and_then(|b| b.get("app"))
        .cloned()
        .context("third commit not rendered for dev-1")?;
    node.propose(&Command::RecordHealth {
        reports: vec![HealthReport {
            failed: None,
            last_drift: None,
            drift_corrections: 0,
            added: Vec::new(),
            key: HealthKey {
                cluster: "dev-1".into(),
                bundle: "app".into(),
            },
            applied: Some(applied),
            health: Health::Healthy,
            message: String::new(),
            drifted: Vec::new(),
            at: Timestamp(1),
        }],
    })
    .await?;

    repo.write("flotilla.yaml", &FLEET_SPEC.replace("hello", "four"))?;
    let fourth = repo.commit("four")?;
    hub.wait_for("the second commit forgotten", WAIT, |s| {
        assigned(s, "dev-1").as_deref() == Some(fourth.as_str())
            && !s.revisions.contains_key(&revision(&second))
    })
    .await?;
    {
        let state = node.state();
        // first: prod is pinned to it; third: dev-1 still reports it applied; fourth: the head.
        let expected: BTreeSet<String> = [&first, &third, &fourth].into_iter().cloned().collect();
        assert_eq!(kept(&state), expected);
        assert!(
            blobs_exactly_referenced(&state),
            "unreferenced blobs were kept"
        );
        assert_eq!(state.stages["prod"].pinned, Some(revision(&first)));
    }

    // Once dev-1 reports the fourth commit applied, nothing holds the third any more.
    let applied = node
        .state()
        .desired_bundles("dev-1")
        .get("app")
        .cloned()
        .context("no desired app")?;
    node.propose(&Command::RecordHealth {
        reports: vec![HealthReport {
            failed: None,
            last_drift: None,
            drift_corrections: 0,
            added: Vec::new(),
            key: HealthKey {
                cluster: "dev-1".into(),
                bundle: "app".into(),
            },
            applied: Some(applied),
            health: Health::Healthy,
            message: String::new(),
            drifted: Vec::new(),
            at: Timestamp(2),
        }],
    })
    .await?;
    hub.wait_for("the third commit forgotten", WAIT, |s| {
        !s.revisions.contains_key(&revision(&third))
    })
    .await?;
    let state = node.state();
    let expected: BTreeSet<String> = [&first, &fourth].into_iter().cloned().collect();
    assert_eq!(kept(&state), expected);
    assert!(blobs_exactly_referenced(&state));
    drop(state);
    hub.hub.shutdown().await;
    Ok(())
}
