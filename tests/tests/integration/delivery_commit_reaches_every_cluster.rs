//! A commit reaches every targeted cluster with that cluster's own values, and its health comes
//! back to `flotilla status`: real `flotilla-sim`, `flotilla-hub` and `flotilla-agent`
//! processes, a Git repository made with git2, the real CLI, and the objects read back from the
//! simulator with kube-rs.

use anyhow::{Context, Result};
use flotilla_testkit::fleet::{Fleet, FleetOptions};
use flotilla_testkit::sim::SimProcess;
use flotilla_testkit::small_fleet;
use serde_json::Value;

/// The app ConfigMap and Deployment in `cluster`.
async fn app_objects(sim: &SimProcess, cluster: &str) -> Result<(Value, Value)> {
    let config = sim
        .get(cluster, "v1", "ConfigMap", Some("app"), "app")
        .await?
        .with_context(|| format!("no ConfigMap app/app in {cluster}"))?;
    let deployment = sim
        .get(cluster, "apps/v1", "Deployment", Some("app"), "app")
        .await?
        .with_context(|| format!("no Deployment app/app in {cluster}"))?;
    Ok((config, deployment))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_reaches_every_cluster_with_its_own_values_and_health_comes_back() -> Result<()> {
    let (repo, first) = small_fleet::repository()?;
    let fleet = Fleet::start(&repo, small_fleet::INVENTORY, FleetOptions::default()).await?;

    let status = fleet.wait_rolled_out(&first).await?;
    for cluster in fleet.clusters() {
        let name = cluster.name.as_str();
        let shown = status["clusters"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["name"] == name))
            .context("cluster missing from status")?;
        assert_eq!(
            shown["stage"],
            cluster.labels.get("env").map(String::as_str).unwrap_or("")
        );
        assert_eq!(
            shown["labels"]["region"],
            cluster
                .labels
                .get("region")
                .map(String::as_str)
                .unwrap_or("")
        );
        assert_eq!(shown["online"], true);
        let bundle = &shown["bundles"][0];
        assert_eq!(bundle["name"], "app");
        assert_eq!(bundle["health"], "Healthy");
        assert_eq!(bundle["appliedRevision"], bundle["desiredRevision"]);
        assert_eq!(bundle["appliedHash"], bundle["desiredHash"]);

        let (config, deployment) = app_objects(fleet.sim(), name).await?;
        assert_eq!(config["data"]["cluster"], name);
        assert_eq!(
            config["data"]["region"],
            cluster
                .labels
                .get("region")
                .map(String::as_str)
                .unwrap_or("")
        );
        assert_eq!(config["data"]["greeting"], "hello");
        assert_eq!(config["metadata"]["labels"]["flotilla.dev/bundle"], "app");
        let replicas = if name.starts_with("prod") { 2 } else { 1 };
        assert_eq!(deployment["spec"]["replicas"], replicas, "{name}");
        assert_eq!(
            deployment["status"]["availableReplicas"], replicas,
            "{name}"
        );
    }

    // The next commit changes a variable everywhere and the prod overlay's replicas.
    repo.edit("flotilla.yaml", "greeting: hello", "greeting: hi")?;
    repo.edit(
        "flotilla.yaml",
        "variables: {replicas: 2}",
        "variables: {replicas: 3}",
    )?;
    let second = repo.commit("greeting hi, prod on three replicas")?;
    fleet.wait_rolled_out(&second).await?;
    for name in fleet.names() {
        let (config, deployment) = app_objects(fleet.sim(), &name).await?;
        assert_eq!(config["data"]["greeting"], "hi", "{name}");
        assert_eq!(config["data"]["cluster"], name.as_str());
        let replicas = if name.starts_with("prod") { 3 } else { 1 };
        assert_eq!(deployment["spec"]["replicas"], replicas, "{name}");
    }
    Ok(())
}
