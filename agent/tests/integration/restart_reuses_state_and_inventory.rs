//! Restarts: an agent restarted with its state directory goes on enforcing what it held without
//! being told again; an agent that lost its state (or replaced another) still prunes from the
//! inventory recorded in the cluster.

use crate::support::sim as support;

use std::time::Duration;

use anyhow::Result;
use flotilla_agent::{Event, HeldBundle};
use serde_json::json;
use support::*;

#[tokio::test]
async fn a_restarted_agent_enforces_its_persisted_state_and_prunes_from_its_inventory() -> Result<()>
{
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let state = tempfile::tempdir()?;

    let (first, mut reports) = engine(&sim, Some(state.path()))?;
    let objects = vec![
        config_map("a", "1"),
        config_map("b", "1"),
        deployment("web", 1, json!({})),
    ];
    first.apply(revision("shop", "r1", objects))?;
    applied(&mut reports, "shop", "r1").await?;
    first.shutdown().await;

    // While no agent runs, someone deletes an object.
    let configs: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), "app");
    configs.delete("a", &Default::default()).await?;

    let (second, mut reports) = engine(&sim, Some(state.path()))?;
    assert_eq!(
        second.held(),
        [HeldBundle {
            name: "shop".into(),
            content_hash: "hash-r1".into()
        }],
        "held bundles are known before anything is applied"
    );
    applied(&mut reports, "shop", "r1").await?;
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "a")
            .await?
            .is_some(),
        "a was restored"
    );

    second.apply(revision("shop", "r2", vec![config_map("a", "1")]))?;
    assert_eq!(applied(&mut reports, "shop", "r2").await?, (1, 2));
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "b")
            .await?
            .is_none()
    );
    assert!(
        get(&client, "apps/v1", "Deployment", Some("app"), "web")
            .await?
            .is_none()
    );
    second.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_agent_without_local_state_prunes_what_the_cluster_inventory_records() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let old_disk = tempfile::tempdir()?;
    let (old, mut reports) = engine(&sim, Some(old_disk.path()))?;
    old.apply(revision(
        "shop",
        "r1",
        vec![config_map("a", "1"), config_map("b", "1")],
    ))?;
    applied(&mut reports, "shop", "r1").await?;
    old.shutdown().await;

    // A replacement agent on a fresh disk.
    let new_disk = tempfile::tempdir()?;
    let (replacement, mut reports) = engine(&sim, Some(new_disk.path()))?;
    assert!(replacement.held().is_empty());
    assert_eq!(replacement.inventoried().await?, ["shop"]);
    replacement.apply(revision("shop", "r2", vec![config_map("c", "1")]))?;
    assert_eq!(applied(&mut reports, "shop", "r2").await?, (1, 2));
    for name in ["a", "b"] {
        assert!(
            get(&client, "v1", "ConfigMap", Some("app"), name)
                .await?
                .is_none(),
            "{name} leaked"
        );
    }
    replacement.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn after_a_restart_a_failing_revision_leaves_the_last_applied_one_enforced() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let state = tempfile::tempdir()?;
    let (first, mut reports) = engine(&sim, Some(state.path()))?;
    first.apply(revision("shop", "r1", vec![config_map("a", "1")]))?;
    applied(&mut reports, "shop", "r1").await?;
    let mut broken = config_map("a", "2");
    broken["dataa"] = json!({});
    first.apply(revision("shop", "r2", vec![broken]))?;
    wait_for(&mut reports, "shop", |r| {
        matches!(r.event, Event::ApplyFailed { .. }).then_some(())
    })
    .await?;
    first.shutdown().await;

    let (second, mut reports) = engine(&sim, Some(state.path()))?;
    assert_eq!(
        second.held()[0].content_hash,
        "hash-r2",
        "the desired revision is still r2"
    );
    applied(&mut reports, "shop", "r1").await?;
    let configs: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), "app");
    configs.delete("a", &Default::default()).await?;
    wait_for(&mut reports, "shop", |r| match &r.event {
        Event::DriftCorrected { objects } if r.revision == "r1" => Some(objects.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(
        get(&client, "v1", "ConfigMap", Some("app"), "a")
            .await?
            .map(|a| a["data"]["key"].clone()),
        Some(json!("1"))
    );
    second.shutdown().await;
    Ok(())
}
