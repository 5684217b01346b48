//! Drift is visible: a ConfigMap edited in the cluster by another field manager (as `kubectl
//! edit` does) is corrected by the agent, and the correction is an event naming the object, the
//! field and who changed it, and a count in `/metrics`; on the simulator and on real clusters.

use anyhow::{Context, Result};
use flotilla_tests::fleet::{Fleet, FleetOptions};
use flotilla_tests::real::RealClusters;
use flotilla_tests::small_fleet;
use flotilla_tests::wait::{self, PATIENCE, Probe};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::json;

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
