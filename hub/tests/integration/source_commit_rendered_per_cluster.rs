//! A commit pushed to the followed branch is fetched, rendered for every cluster with its own
//! values, recorded, and assigned; a force-push is followed by resetting, never merging; a
//! cluster registered or relabelled later gets its stage's revision rendered for it.

use crate::support::fleet as support;

use std::time::Duration;

use anyhow::Result;
use flotilla_hub::state::Command;
use flotilla_hub::state::Timestamp;
use support::{TestHub, assigned, assignments, desired_app, rendered, revision};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_rendered_per_cluster_and_assigned_to_every_stage() -> Result<()> {
    support::init_tracing();
    let (repo, first) = support::with_fleet()?;
    let hub = TestHub::start(&repo.url(), |_| {}).await?;
    hub.wait_for("the first commit assigned everywhere", WAIT, |s| {
        assignments(s)
            .iter()
            .all(|(_, a)| a.as_deref() == Some(first.as_str()))
            && s.clusters.len() == 2
    })
    .await?;
    {
        let state = hub.hub.node().state();
        let source = &state.sources["origin"];
        assert_eq!(source.head.as_deref(), Some(first.as_str()));
        assert_eq!(source.url, repo.url());
        for stage in ["dev", "prod"] {
            assert_eq!(
                state.stages[stage].pinned,
                Some(revision(&first)),
                "{stage}"
            );
        }
        let dev = desired_app(&hub.hub, &state, "dev-1")?;
        let data = &dev["objects"][0]["data"];
        assert_eq!(data["cluster"], "dev-1");
        assert_eq!(data["region"], "eu");
        assert_eq!(data["greeting"], "hello");
        assert_eq!(dev["objects"][0]["metadata"]["namespace"], "app");
        let prod = desired_app(&hub.hub, &state, "prod-1")?;
        assert_eq!(prod["objects"][0]["data"]["cluster"], "prod-1");
        assert_eq!(prod["objects"][0]["data"]["region"], "us");
    }

    // The next commit reaches the tracking stage only; the promoting stage keeps its pin.
    repo.write(
        "flotilla.yaml",
        &support::FLEET_SPEC.replace("hello", "bonjour"),
    )?;
    let second = repo.commit("bonjour")?;
    hub.wait_for("the second commit assigned to dev", WAIT, |s| {
        assigned(s, "dev-1").as_deref() == Some(second.as_str())
    })
    .await?;
    let state = hub.hub.node().state();
    assert!(rendered(&state, &second));
    assert_eq!(
        desired_app(&hub.hub, &state, "dev-1")?["objects"][0]["data"]["greeting"],
        "bonjour"
    );
    assert_eq!(state.clusters["prod-1"].assigned, Some(revision(&first)));
    assert_eq!(state.stages["prod"].pinned, Some(revision(&first)));
    assert_eq!(
        desired_app(&hub.hub, &state, "prod-1")?["objects"][0]["data"]["greeting"],
        "hello"
    );
    drop(state);
    hub.hub.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_push_moves_the_head_back_and_sideways() -> Result<()> {
    support::init_tracing();
    let (repo, first) = support::with_fleet()?;
    let hub = TestHub::start(&repo.url(), |_| {}).await?;
    hub.wait_for("the first commit", WAIT, |s| rendered(s, &first))
        .await?;
    repo.write(
        "flotilla.yaml",
        &support::FLEET_SPEC.replace("hello", "second"),
    )?;
    let second = repo.commit("second")?;
    hub.wait_for("dev at the second commit", WAIT, |s| {
        assigned(s, "dev-1").as_deref() == Some(second.as_str())
    })
    .await?;

    // Rewrite history: main goes back to the first commit and gets a different child, so the
    // second commit is no longer an ancestor of the branch. A merge would fail or mix them.
    repo.reset_hard(&first)?;
    repo.write(
        "flotilla.yaml",
        &support::FLEET_SPEC.replace("hello", "rewritten"),
    )?;
    let rewritten = repo.commit("rewritten")?;
    hub.wait_for("dev at the rewritten commit", WAIT, |s| {
        assigned(s, "dev-1").as_deref() == Some(rewritten.as_str())
    })
    .await?;
    let state = hub.hub.node().state();
    assert_eq!(
        state.sources["origin"].head.as_deref(),
        Some(rewritten.as_str())
    );
    assert_eq!(
        desired_app(&hub.hub, &state, "dev-1")?["objects"][0]["data"]["greeting"],
        "rewritten"
    );
    drop(state);

    // Force-pushing back to an older commit the hub already rendered moves the stage back to it.
    repo.reset_hard(&second)?;
    hub.wait_for("dev back at the second commit", WAIT, |s| {
        assigned(s, "dev-1").as_deref() == Some(second.as_str())
    })
    .await?;
    assert_eq!(
        hub.hub.node().state().stages["dev"].pinned,
        Some(revision(&second))
    );
    hub.hub.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_registered_or_relabelled_later_get_their_stage_revision() -> Result<()> {
    support::init_tracing();
    let (repo, first) = support::with_fleet()?;
    let hub = TestHub::start(&repo.url(), |_| {}).await?;
    hub.wait_for("the fleet assigned", WAIT, |s| {
        assigned(s, "prod-1").as_deref() == Some(first.as_str())
    })
    .await?;
    repo.write(
        "flotilla.yaml",
        &support::FLEET_SPEC.replace("hello", "newer"),
    )?;
    let second = repo.commit("newer")?;
    hub.wait_for("dev at the second commit", WAIT, |s| {
        assigned(s, "dev-1").as_deref() == Some(second.as_str())
    })
    .await?;

    let node = hub.hub.node();
    node.propose(&Command::RegisterCluster {
        name: "prod-2".into(),
        labels: [("env", "prod"), ("region", "ap")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        at: Timestamp(1),
    })
    .await?;
    // prod promotes from dev and is pinned to the first commit: the newcomer gets that one.
    hub.wait_for("prod-2 assigned prod's revision", WAIT, |s| {
        assigned(s, "prod-2").as_deref() == Some(first.as_str())
    })
    .await?;
    {
        let state = node.state();
        let app = desired_app(&hub.hub, &state, "prod-2")?;
        assert_eq!(app["objects"][0]["data"]["cluster"], "prod-2");
        assert_eq!(app["objects"][0]["data"]["region"], "ap");
        assert_eq!(app["objects"][0]["data"]["greeting"], "hello");
    }

    node.propose(&Command::RelabelCluster {
        name: "dev-1".into(),
        labels: [("env", "dev"), ("region", "sa")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        at: Timestamp(2),
    })
    .await?;
    hub.wait_for("dev-1 rendered again with its new label", WAIT, |s| {
        desired_app(&hub.hub, s, "dev-1")
            .map(|app| app["objects"][0]["data"]["region"] == "sa")
            .unwrap_or(false)
    })
    .await?;
    assert_eq!(
        node.state().clusters["dev-1"].assigned,
        Some(revision(&second))
    );
    hub.hub.shutdown().await;
    Ok(())
}
