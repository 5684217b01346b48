//! Drift is visible: a ConfigMap edited in the cluster by another field manager (as `kubectl
//! edit` does) is corrected by the agent, and the correction is an event naming the object, the
//! field and who changed it, and a count in `/metrics`; a label added by another manager (as
//! `kubectl label` does) is reported, never corrected, and the bundle is OutOfSync until it is
//! removed; on the simulator and on real clusters.

use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_testkit::fleet::{Fleet, FleetOptions};
use flotilla_testkit::real::RealClusters;
use flotilla_testkit::small_fleet;
use flotilla_testkit::wait::{self, PATIENCE, Probe};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrected_edit_is_an_event_and_a_count_on_the_simulator() -> Result<()> {
    a_corrected_edit_is_an_event_and_a_count(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrected_edit_is_an_event_and_a_count_on_real_clusters() -> Result<()> {
    let Some(real) = RealClusters::start_for(
        "a_corrected_edit_is_an_event_and_a_count_on_real_clusters",
        3,
    )
    .await?
    else {
        return Ok(());
    };
    a_corrected_edit_is_an_event_and_a_count(Some(real)).await
}

async fn a_corrected_edit_is_an_event_and_a_count(real: Option<RealClusters>) -> Result<()> {
    let (repo, first) = small_fleet::repository()?;
    let fleet =
        Fleet::start_on(&repo, small_fleet::INVENTORY, FleetOptions::default(), real).await?;
    fleet.wait_rolled_out(&first).await?;

    // Another field manager changes a field the bundle sets, as `kubectl edit` would.
    let resource = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
    let config_maps: Api<DynamicObject> =
        Api::namespaced_with(fleet.client("dev-1").await?, "app", &resource);
    let params = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    config_maps
        .patch(
            "app",
            &params,
            &Patch::Merge(json!({"data": {"greeting": "edited by hand"}})),
        )
        .await?;

    let event = wait::until("the correction in the event log", PATIENCE, || async {
        let status = fleet.cli.status().await?;
        let events = status["events"].as_array().cloned().unwrap_or_default();
        Ok(
            match events
                .into_iter()
                .find(|e| e["kind"] == "drift" && e["subject"] == "cluster/dev-1")
            {
                Some(e)
                    if e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("drift corrected")) =>
                {
                    Probe::Done(e)
                }
                other => Probe::NotYet(format!("{other:?}")),
            },
        )
    })
    .await?;
    let message = event["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("bundle app")
            && message.contains("ConfigMap app/app")
            && message.contains("data.greeting")
            && message.contains("by kubectl-edit"),
        "{event}"
    );
    let restored = fleet
        .get("dev-1", "v1", "ConfigMap", Some("app"), "app")
        .await?
        .context("the ConfigMap is gone")?;
    assert_eq!(restored["data"]["greeting"], "hello");

    let metrics = fleet.metrics().await?;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("flotilla_drift_corrections "))
        .with_context(|| format!("no drift gauge in:\n{metrics}"))?;
    let count: u64 = line.rsplit(' ').next().unwrap_or_default().parse()?;
    assert!(count >= 1, "{line}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_added_by_hand_is_out_of_sync_until_removed_on_the_simulator() -> Result<()> {
    a_label_added_by_hand_is_out_of_sync_until_removed(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_added_by_hand_is_out_of_sync_until_removed_on_real_clusters() -> Result<()> {
    let Some(real) = RealClusters::start_for(
        "a_label_added_by_hand_is_out_of_sync_until_removed_on_real_clusters",
        3,
    )
    .await?
    else {
        return Ok(());
    };
    a_label_added_by_hand_is_out_of_sync_until_removed(Some(real)).await
}

/// Additive drift: a label the bundle does not set, added as `kubectl label` does, makes the
/// bundle OutOfSync with a message naming object, field and manager, in the JSON, the table
/// and the event log; it is never removed by Flotilla, health is untouched, and the bundle is
/// Synced again once the label is gone.
async fn a_label_added_by_hand_is_out_of_sync_until_removed(
    real: Option<RealClusters>,
) -> Result<()> {
    let (repo, first) = small_fleet::repository()?;
    let fleet =
        Fleet::start_on(&repo, small_fleet::INVENTORY, FleetOptions::default(), real).await?;
    fleet.wait_rolled_out(&first).await?;

    let resource = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
    let config_maps: Api<DynamicObject> =
        Api::namespaced_with(fleet.client("dev-1").await?, "app", &resource);
    let as_kubectl_label = PatchParams {
        field_manager: Some("kubectl-label".into()),
        ..PatchParams::default()
    };
    let labelled = std::time::Instant::now();
    config_maps
        .patch(
            "app",
            &as_kubectl_label,
            &Patch::Merge(json!({"metadata": {"labels": {"team": "payments"}}})),
        )
        .await?;

    let bundle = wait::until("the bundle out of sync", PATIENCE, || async {
        let bundle = dev_bundle(&fleet).await?;
        Ok(if bundle["syncState"] == "OutOfSync" {
            Probe::Done(bundle)
        } else {
            Probe::NotYet(bundle.to_string())
        })
    })
    .await?;
    eprintln!(
        "OutOfSync {:.1} s after the label was added",
        labelled.elapsed().as_secs_f64()
    );
    let message = bundle["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(
            "ConfigMap app/app: metadata.labels.team added by kubectl-label; not in Git and \
             not removed by Flotilla — remove it or add it to the bundle"
        ),
        "{bundle}"
    );
    assert_eq!(
        bundle["health"], "Healthy",
        "additive drift is not a health matter"
    );

    let status = fleet.cli.status().await?;
    let events: Vec<&Value> = status["events"]
        .as_array()
        .map(|e| e.iter().collect())
        .unwrap_or_default();
    let drift_events: Vec<&&Value> = events
        .iter()
        .filter(|e| e["kind"] == "drift" && e["subject"] == "cluster/dev-1")
        .collect();
    assert_eq!(drift_events.len(), 1, "{drift_events:?}");
    let event = drift_events[0]["message"].as_str().unwrap_or_default();
    assert!(
        event.contains("bundle app: fields added in the cluster (reported, not removed)")
            && event.contains("metadata.labels.team added by kubectl-label"),
        "{event}"
    );
    let table = fleet.cli.text(&["status"]).await?;
    assert!(
        table.contains("NOT IN SYNC")
            && table.contains("dev-1/app OutOfSync: added in the cluster: ConfigMap app/app: metadata.labels.team added by kubectl-label"),
        "{table}"
    );

    let metrics = fleet.metrics().await?;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("flotilla_bundles_sync{sync_state=\"OutOfSync\"}"))
        .with_context(|| format!("no OutOfSync gauge in:\n{metrics}"))?;
    assert!(line.ends_with(" 1"), "{line}");

    // Reported, never corrected: the label stays until someone removes it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = fleet
        .get("dev-1", "v1", "ConfigMap", Some("app"), "app")
        .await?
        .context("the ConfigMap is gone")?;
    assert_eq!(live["metadata"]["labels"]["team"], "payments");

    let removed = std::time::Instant::now();
    config_maps
        .patch(
            "app",
            &as_kubectl_label,
            &Patch::Merge(json!({"metadata": {"labels": {"team": null}}})),
        )
        .await?;
    wait::until("the bundle in sync again", PATIENCE, || async {
        let bundle = dev_bundle(&fleet).await?;
        Ok(if bundle["syncState"] == "Synced" {
            Probe::Done(())
        } else {
            Probe::NotYet(bundle.to_string())
        })
    })
    .await?;
    eprintln!(
        "Synced {:.1} s after the label was removed",
        removed.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Bundle `app` on cluster `dev-1`, as `flotilla status -o json` shows it.
async fn dev_bundle(fleet: &Fleet) -> Result<Value> {
    let status = fleet.cli.status().await?;
    status["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == "dev-1")
        .flat_map(|c| c["bundles"].as_array().cloned().unwrap_or_default())
        .find(|b| b["name"] == "app")
        .context("no bundle app on dev-1")
}
