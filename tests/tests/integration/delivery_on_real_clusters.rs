//! The whole chain on four real Kubernetes clusters (scripts/k8s-up): a `flotilla-hub` process
//! following a Git repository, a `flotilla-agent run` per cluster, stages dev → staging → prod
//! with a canary wave in prod. A commit reaches every cluster with its own values and comes
//! back Healthy from the real Deployment controller; a commit whose Pods never become Ready in
//! prod stalls the canary's Deployment past its real progress deadline, the rollout rolls back
//! by itself and prod's other cluster never receives it; a bundle removed from the repository
//! is pruned, its namespace deleted by the real namespace controller.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use flotilla_testkit::fleet::{Fleet, FleetOptions, short};
use flotilla_testkit::git::GitRepo;
use flotilla_testkit::real::RealClusters;
use flotilla_testkit::wait::{self, PATIENCE, Probe};
use serde_json::Value;

/// One cluster in dev and staging, two in prod: `prod-1` is the canary.
const INVENTORY: &str = "\
apiVersion: flotilla.dev/v1
kind: ClusterInventory
clusters:
  - name: dev-1
    labels: {env: dev, region: eu}
  - name: staging-1
    labels: {env: staging, region: us}
  - name: prod-1
    labels: {env: prod, region: eu, canary: 'yes'}
  - name: prod-2
    labels: {env: prod, region: us}
";

const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: dev
    clusterSelector: {matchLabels: {env: dev}}
    track: {branch: main}
    rollout: {soak: 1s}
  - name: staging
    clusterSelector: {matchLabels: {env: staging}}
    promoteFrom: dev
    rollout: {soak: 1s}
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    promoteFrom: staging
    rollout:
      waves:
        - {name: canary, clusterSelector: {matchLabels: {canary: 'yes'}}, soak: 2s}
      maxUnavailable: 1
      healthTimeout: 2m
      failureAction: rollback
      deletionGuard: {maxBundleRemovals: 100%}
bundles:
  - name: app
    path: bundles/app
    namespace: app
    variables: {release: '1', replicas: 1, pods: run}
    overlays:
      - name: prod
        clusterSelector: {matchLabels: {env: prod}}
        variables: {replicas: 2}
";

/// Added to the app bundle's prod overlay: its Pods never become Ready there (the kwok
/// convention of k8s/kwok-stages.yaml), so its Deployment exceeds its progress deadline.
const STALLS_IN_PROD: &str = "        variables: {replicas: 2, pods: never-ready}\n";

const EXTRA_BUNDLE: &str = "  - name: extra\n    path: bundles/extra\n    namespace: extra\n";

const APP: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: app
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app
data:
  cluster: ${cluster.name}
  region: ${cluster.labels.region}
  release: '${release}'
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: ${replicas}
  progressDeadlineSeconds: 10
  selector:
    matchLabels: {app: app}
  template:
    metadata:
      labels: {app: app, flotilla.dev/kwok: ${pods}}
      annotations: {release: '${release}'}
    spec:
      containers:
        - name: app
          image: example/app:1
";

const EXTRA: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: extra
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: extra
data:
  cluster: ${cluster.name}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_roll_out_roll_back_and_prune_on_real_clusters() -> Result<()> {
    const TEST: &str = "commits_roll_out_roll_back_and_prune_on_real_clusters";
    let Some(real) = RealClusters::start_for(TEST, 4).await? else {
        return Ok(());
    };
    let repo = GitRepo::new()?;
    repo.write("flotilla.yaml", &format!("{SPEC}{EXTRA_BUNDLE}"))?;
    repo.write("bundles/app/objects.yaml", APP)?;
    repo.write("bundles/extra/objects.yaml", EXTRA)?;
    let first = repo.commit("release 1 with an extra bundle")?;
    let fleet = Fleet::start_on(&repo, INVENTORY, FleetOptions::default(), Some(real)).await?;

    // 1. The first commit everywhere, with each cluster's values, Healthy.
    fleet.wait_rolled_out(&first).await?;
    for cluster in fleet.clusters() {
        let name = cluster.name.as_str();
        let config = fleet
            .get(name, "v1", "ConfigMap", Some("app"), "app")
            .await?
            .with_context(|| format!("no ConfigMap app/app in {name}"))?;
        assert_eq!(config["data"]["cluster"], name);
        assert_eq!(config["data"]["region"], cluster.labels["region"].as_str());
        assert_eq!(config["data"]["release"], "1");
        let deployment = fleet
            .get(name, "apps/v1", "Deployment", Some("app"), "app")
            .await?
            .with_context(|| format!("no Deployment app/app in {name}"))?;
        let replicas = if name.starts_with("prod") { 2 } else { 1 };
        assert_eq!(deployment["spec"]["replicas"], replicas, "{name}");
        // Counted by the real Deployment controller from Pods kwok made Ready.
        assert_eq!(deployment["status"]["readyReplicas"], replicas, "{name}");
        let extra = fleet
            .get(name, "v1", "ConfigMap", Some("extra"), "extra")
            .await?;
        assert!(extra.is_some(), "no ConfigMap extra/extra in {name}");
    }
    let prod_2_before = fleet
        .get("prod-2", "apps/v1", "Deployment", Some("app"), "app")
        .await?
        .context("prod-2's Deployment")?;

    // 2. Release 2 stalls in prod: the canary's rollout fails on the real progress deadline
    // and rolls back; prod-2 never receives it.
    repo.edit("flotilla.yaml", "release: '1'", "release: '2'")?;
    repo.edit(
        "flotilla.yaml",
        "        variables: {replicas: 2}\n",
        STALLS_IN_PROD,
    )?;
    let bad = repo.commit("release 2, whose Pods never become Ready in prod")?;
    let prod_2_got_it = AtomicBool::new(false);
    let rollout = wait::until(
        &format!("prod's rollout of {} rolled back", short(&bad)),
        PATIENCE,
        || async {
            let status = fleet.cli.status().await?;
            if desired_on(&status, "prod-2").as_deref() == Some(bad.as_str()) {
                prod_2_got_it.store(true, Ordering::SeqCst);
            }
            let rollouts = status["rollouts"].as_array().cloned().unwrap_or_default();
            let found = rollouts
                .into_iter()
                .find(|r| r["stage"] == "prod" && r["toRevision"] == bad.as_str());
            Ok(match found {
                Some(r) if r["status"] == "rolledBack" => Probe::Done(r),
                Some(r) => Probe::NotYet(r.to_string()),
                None => Probe::NotYet(format!("no prod rollout yet: {}", status["rollouts"])),
            })
        },
    )
    .await
    .map_err(|e| {
        e.context(format!(
            "the hub's log ends with:\n{}",
            fleet.hub.log_tail()
        ))
    })?;
    let id = rollout["id"].to_string();
    let progress = fleet
        .cli
        .json(&["rollout", "status", "prod", "--rollout", &id])
        .await?;
    let reason = progress.to_string();
    assert!(
        reason.contains("prod-1") && reason.contains("progress deadline"),
        "the rollback names the canary and the real controller's reason: {progress}"
    );
    // The stage says where it stands and what would move it on.
    let status = fleet.cli.status().await?;
    let prod = status["stages"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == "prod"))
        .context("no prod stage")?;
    assert_eq!(prod["phase"], "RolledBack", "{prod}");
    assert!(
        prod["phaseReason"]
            .as_str()
            .is_some_and(|r| r.contains("progress deadline")),
        "{prod}"
    );
    assert!(
        prod["next"]
            .as_str()
            .is_some_and(|n| n.contains("push a fix")),
        "{prod}"
    );
    // Back to release 1 on the canary, by a new ReplicaSet of Ready Pods.
    fleet
        .wait_rolled_out_on(&first, &["prod-1", "prod-2"])
        .await?;
    fleet
        .wait_rolled_out_on(&bad, &["dev-1", "staging-1"])
        .await?;
    let canary = fleet
        .get("prod-1", "v1", "ConfigMap", Some("app"), "app")
        .await?
        .context("prod-1's ConfigMap")?;
    assert_eq!(canary["data"]["release"], "1");
    assert!(
        !prod_2_got_it.load(Ordering::SeqCst),
        "prod-2 was given {bad}"
    );
    let prod_2_after = fleet
        .get("prod-2", "apps/v1", "Deployment", Some("app"), "app")
        .await?
        .context("prod-2's Deployment")?;
    assert_eq!(
        prod_2_after["metadata"]["generation"], prod_2_before["metadata"]["generation"],
        "prod-2's Deployment was changed: {prod_2_after}"
    );
    assert_eq!(
        prod_2_after["metadata"]["resourceVersion"], prod_2_before["metadata"]["resourceVersion"],
        "prod-2's Deployment was written to"
    );

    // 3. Release 3 fixes prod and drops the extra bundle: it goes everywhere and the extra
    // bundle's objects and namespace are gone from every cluster.
    repo.edit(
        "flotilla.yaml",
        STALLS_IN_PROD,
        "        variables: {replicas: 2}\n",
    )?;
    repo.edit("flotilla.yaml", "release: '2'", "release: '3'")?;
    repo.edit("flotilla.yaml", EXTRA_BUNDLE, "")?;
    repo.remove("bundles/extra")?;
    let fixed = repo.commit("release 3, without the extra bundle")?;
    fleet.wait_rolled_out(&fixed).await?;
    for name in fleet.names() {
        wait::until(
            &format!("namespace extra gone from {name}"),
            PATIENCE,
            || async {
                Ok(
                    match fleet.get(&name, "v1", "Namespace", None, "extra").await? {
                        None => Probe::Done(()),
                        Some(ns) => Probe::NotYet(ns["status"].to_string()),
                    },
                )
            },
        )
        .await?;
        let config = fleet
            .get(&name, "v1", "ConfigMap", Some("app"), "app")
            .await?
            .with_context(|| format!("no ConfigMap app/app in {name}"))?;
        assert_eq!(config["data"]["release"], "3", "{name}");
    }
    Ok(())
}

/// The revision `flotilla status` shows desired for `cluster`'s app bundle.
fn desired_on(status: &Value, cluster: &str) -> Option<String> {
    status["clusters"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == cluster)?["bundles"]
        .as_array()?
        .iter()
        .find(|b| b["name"] == "app")?["desiredRevision"]
        .as_str()
        .map(str::to_owned)
}
