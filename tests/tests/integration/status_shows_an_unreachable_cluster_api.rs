//! A cluster whose API server stops answering while its agent stays connected is shown as
//! such: `apiReachable: false` (with since when and why) in `flotilla status -o json`, API
//! UNREACHABLE in the table, its bundles' sync state Unknown (what the agent last saw is not
//! current), `flotilla_clusters_api_unreachable` 1, and back to reachable and Synced once the API answers again. On the simulator every
//! request answers 500; on a real cluster the kube-apiserver process is frozen with SIGSTOP.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flotilla_testkit::fleet::{Clusters, Fleet, FleetOptions};
use flotilla_testkit::real::RealClusters;
use flotilla_testkit::small_fleet;
use flotilla_testkit::wait::{self, Probe};
use serde_json::{Value, json};

/// The agent probes every 2 s and calls the API unreachable after two failures; a real probe
/// waits up to 3 s for an answer. Most it may take, with room for a loaded machine.
const NOTICE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_api_is_shown_on_the_simulator() -> Result<()> {
    an_unreachable_cluster_api_is_shown(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_api_is_shown_on_real_clusters() -> Result<()> {
    let Some(real) =
        RealClusters::start_for("an_unreachable_cluster_api_is_shown_on_real_clusters", 3).await?
    else {
        return Ok(());
    };
    an_unreachable_cluster_api_is_shown(Some(real)).await
}

async fn an_unreachable_cluster_api_is_shown(real: Option<RealClusters>) -> Result<()> {
    let (repo, first) = small_fleet::repository()?;
    let fleet =
        Fleet::start_on(&repo, small_fleet::INVENTORY, FleetOptions::default(), real).await?;
    let status = fleet.wait_rolled_out(&first).await?;
    assert_eq!(cluster(&status, "dev-1")?["apiReachable"], true);

    // dev-1 is the inventory's first cluster: context k8s-0 on real clusters.
    let failing = Instant::now();
    let mut thaw = None;
    match fleet.kube() {
        Clusters::Sim(sim) => {
            sim.set_fault("dev-1", Some(json!({"type": "ServerErrors"})))
                .await?
        }
        Clusters::Real(real) => {
            real.freeze_apiserver(0, true)?;
            thaw = Some(Thaw(real));
        }
    }
    let status = wait::until("dev-1's API shown unreachable", NOTICE, || async {
        let status = fleet.cli.status().await?;
        let shown = cluster(&status, "dev-1")?;
        Ok(if shown["apiReachable"] == false {
            Probe::Done(status)
        } else {
            Probe::NotYet(shown.to_string())
        })
    })
    .await;
    let noticed = failing.elapsed();
    let status = status?;
    eprintln!("dev-1's API shown unreachable after {noticed:?}");
    let shown = cluster(&status, "dev-1")?;
    assert_eq!(
        shown["online"], true,
        "the agent itself is connected: {shown}"
    );
    assert!(
        shown["apiError"]
            .as_str()
            .is_some_and(|e| e.contains("/readyz")),
        "{shown}"
    );
    assert!(shown["apiSince"].is_string(), "{shown}");
    assert_eq!(shown["bundles"][0]["syncState"], "Unknown", "{shown}");
    assert_eq!(cluster(&status, "prod-eu-1")?["apiReachable"], true);
    let table = fleet.cli.text(&["status"]).await?;
    assert!(
        table.contains("UNREACHABLE") && table.contains("CLUSTER API UNREACHABLE"),
        "{table}"
    );

    let metrics = fleet.metrics().await?;
    assert!(
        metrics
            .lines()
            .any(|l| l == "flotilla_clusters_api_unreachable 1"),
        "{}",
        metrics
    );

    if let Clusters::Sim(sim) = fleet.kube() {
        sim.set_fault("dev-1", None).await?;
    }
    drop(thaw);
    wait::until("dev-1's API reachable and Synced again", NOTICE, || async {
        let status = fleet.cli.status().await?;
        let shown = cluster(&status, "dev-1")?;
        Ok(
            if shown["apiReachable"] == true && shown["bundles"][0]["syncState"] == "Synced" {
                Probe::Done(())
            } else {
                Probe::NotYet(shown.to_string())
            },
        )
    })
    .await?;
    Ok(())
}

/// Thaws k8s-0's API server when dropped, also when the test fails, so the clusters stop
/// cleanly.
struct Thaw<'a>(&'a RealClusters);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.freeze_apiserver(0, false) {
            eprintln!("thawing k8s-0's API server: {e:#}");
        }
    }
}

/// A cluster of a status document.
fn cluster<'a>(status: &'a Value, name: &str) -> Result<&'a Value> {
    status["clusters"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .with_context(|| format!("no cluster {name} in {status}"))
}
