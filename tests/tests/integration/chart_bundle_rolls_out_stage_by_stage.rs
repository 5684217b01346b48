//! A Helm chart bundle end to end, with real processes (hub, agents, the `flotilla` CLI, the
//! pinned helm) on the simulator and on real Kubernetes clusters: each cluster gets its own
//! values (its name and region from values, more replicas in prod from an overlay) and nothing
//! else's; each is rendered against the Kubernetes version and APIs its agent read from it;
//! `flotilla render` prints exactly what the agent applied (offline, so against the default
//! version: compared before the agents report theirs); a chart version bump rolls
//! out to dev and waits at prod's manual approval until promoted; a commit whose template
//! fails is a failed revision naming the template and line, and no cluster changes.
//!
//! Without the built helm (scripts/k8s-build helm) this test fails under `CI=true` and is
//! skipped loudly otherwise; the real-cluster variant also needs the Kubernetes binaries.

use anyhow::{Context, Result};
use flotilla_testkit::fleet::{Fleet, FleetOptions};
use flotilla_testkit::git::GitRepo;
use flotilla_testkit::helm::helm_or_skip;
use flotilla_testkit::real::RealClusters;
use flotilla_testkit::wait::{self, PATIENCE, Probe};
use serde_json::Value;

const INVENTORY: &str = "\
apiVersion: flotilla.dev/v1
kind: ClusterInventory
clusters:
  - name: dev-1
    labels: {env: dev, region: eu}
  - name: prod-1
    labels: {env: prod, region: eu}
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
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    promoteFrom: dev
    rollout: {approval: manual}
bundles:
  - name: shop
    namespace: shop
    helm:
      chart: charts/shop
      version: 1.0.0
      valuesFiles: [values/shop.yaml]
      values:
        cluster: ${cluster.name}
    overlays:
      - name: prod
        clusterSelector: {matchLabels: {env: prod}}
        helm:
          values: {replicas: 2}
";

const CHART: &str = "apiVersion: v2\nname: shop\nversion: 1.0.0\n";

const VALUES: &str = "cluster: none\nregion: none\nreplicas: 1\n";

const SHARED_VALUES: &str = "region: ${cluster.labels.region}\n";

const CONFIG: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
data:
  cluster: {{ .Values.cluster | quote }}
  region: {{ .Values.region | quote }}
  chart: {{ .Chart.Version | quote }}
  kube: {{ .Capabilities.KubeVersion.Version | quote }}
  networking: {{ .Capabilities.APIVersions.Has "networking.k8s.io/v1" | quote }}
"#;

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: shop}
  template:
    metadata:
      labels: {app: shop}
      annotations: {chart: {{ .Chart.Version | quote }}}
    spec:
      containers:
        - name: shop
          image: example/shop:1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_bundle_rolls_out_stage_by_stage_on_the_simulator() -> Result<()> {
    const TEST: &str = "a_chart_bundle_rolls_out_stage_by_stage_on_the_simulator";
    if helm_or_skip(TEST).is_none() {
        return Ok(());
    }
    rolls_out_stage_by_stage(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_bundle_rolls_out_stage_by_stage_on_real_clusters() -> Result<()> {
    const TEST: &str = "a_chart_bundle_rolls_out_stage_by_stage_on_real_clusters";
    if helm_or_skip(TEST).is_none() {
        return Ok(());
    }
    let Some(real) = RealClusters::start_for(TEST, 3).await? else {
        return Ok(());
    };
    rolls_out_stage_by_stage(Some(real)).await
}

async fn rolls_out_stage_by_stage(real: Option<RealClusters>) -> Result<()> {
    let repo = GitRepo::new()?;
    repo.write("flotilla.yaml", SPEC)?;
    repo.write("charts/shop/Chart.yaml", CHART)?;
    repo.write("charts/shop/values.yaml", VALUES)?;
    repo.write("charts/shop/templates/config.yaml", CONFIG)?;
    repo.write("charts/shop/templates/deployment.yaml", DEPLOYMENT)?;
    repo.write("values/shop.yaml", SHARED_VALUES)?;
    repo.write("clusters.yaml", INVENTORY)?;
    let first = repo.commit("shop chart 1.0.0")?;
    let fleet = Fleet::start_on(&repo, INVENTORY, FleetOptions::default(), real).await?;

    // 1. Every cluster gets its own values, and prod its overlay's replicas.
    fleet.wait_rolled_out_on(&first, &["dev-1"]).await?;
    promote(&fleet, &first).await?;
    fleet.wait_rolled_out(&first).await?;
    for cluster in fleet.clusters() {
        let name = cluster.name.as_str();
        let config = settings(&fleet, name).await?;
        assert_eq!(config["data"]["cluster"], name);
        assert_eq!(config["data"]["region"], cluster.labels["region"].as_str());
        assert_eq!(config["data"]["chart"], "1.0.0");
        let deployment = deployment(&fleet, name).await?;
        let replicas = if name.starts_with("prod") { 2 } else { 1 };
        assert_eq!(deployment["spec"]["replicas"], replicas, "{name}");
    }

    // 2. Each cluster is rendered again against the version and APIs its agent read.
    let mut versions = std::collections::BTreeMap::new();
    for cluster in fleet.names() {
        let name = cluster.as_str();
        let (kube, networking) = wait::until(
            &format!("{name} rendered against its own Kubernetes version"),
            PATIENCE,
            || async {
                let status = fleet.cli.status().await?;
                let reported = status["clusters"]
                    .as_array()
                    .and_then(|all| all.iter().find(|c| c["name"] == name))
                    .and_then(|c| c["kubeVersion"].as_str())
                    .map(str::to_owned);
                let live = settings(&fleet, name).await?;
                let kube = live["data"]["kube"].as_str().unwrap_or_default().to_owned();
                Ok(match reported {
                    Some(reported) if reported == kube => {
                        Probe::Done((kube, live["data"]["networking"].clone()))
                    }
                    other => Probe::NotYet(format!("reported {other:?}, rendered {kube}")),
                })
            },
        )
        .await?;
        assert!(kube.starts_with("v1."), "{name}: {kube}");
        assert_eq!(networking, "true", "{name} serves networking.k8s.io/v1");
        versions.insert(cluster.clone(), kube);
    }

    // 3. `flotilla render` (told the cluster's Kubernetes version) prints exactly what each
    // cluster holds: every object, every field.
    for cluster in fleet.names() {
        let rendered = fleet
            .cli
            .json(&[
                "render",
                &repo.path().display().to_string(),
                "--cluster",
                &cluster,
                "--kube-version",
                &versions[&cluster],
            ])
            .await?;
        let objects = rendered["bundles"][0]["objects"]
            .as_array()
            .context("render lists the bundle's objects")?;
        assert_eq!(objects.len(), 2, "settings and deployment: {rendered}");
        for object in objects {
            let (api_version, kind) = (
                object["apiVersion"].as_str().unwrap_or_default(),
                object["kind"].as_str().unwrap_or_default(),
            );
            let namespace = object["metadata"]["namespace"].as_str();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let live = fleet
                .get(&cluster, api_version, kind, namespace, name)
                .await?
                .with_context(|| format!("{kind} {name} rendered for {cluster} but not there"))?;
            if let Some(path) = missing_from(object, &live, "") {
                panic!("{cluster}: {kind} {name}: {path} rendered but not live:\n{live}");
            }
        }
    }

    // 4. A chart version bump reaches dev, waits at prod's approval, then reaches prod.
    repo.edit("charts/shop/Chart.yaml", "version: 1.0.0", "version: 1.1.0")?;
    repo.edit("flotilla.yaml", "version: 1.0.0", "version: 1.1.0")?;
    let bump = repo.commit("shop chart 1.1.0")?;
    fleet.wait_rolled_out_on(&bump, &["dev-1"]).await?;
    assert_eq!(settings(&fleet, "dev-1").await?["data"]["chart"], "1.1.0");
    for prod in ["prod-1", "prod-2"] {
        assert_eq!(
            settings(&fleet, prod).await?["data"]["chart"],
            "1.0.0",
            "{prod} waits for the approval"
        );
    }
    promote(&fleet, &bump).await?;
    fleet.wait_rolled_out(&bump).await?;
    for cluster in fleet.names() {
        assert_eq!(settings(&fleet, &cluster).await?["data"]["chart"], "1.1.0");
        let deployment = deployment(&fleet, &cluster).await?;
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["annotations"]["chart"],
            "1.1.0"
        );
    }

    // 5. A template error fails the revision at the template's line; nothing changes.
    repo.write(
        "charts/shop/templates/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\ndata:\n  a: {{ .Values.missing.field }}\n",
    )?;
    let broken = repo.commit("a broken template")?;
    let revision = fleet.wait_revision(&broken, "failed").await?;
    let error = &revision["error"];
    assert_eq!(
        error["file"], "charts/shop/templates/broken.yaml",
        "{revision}"
    );
    assert_eq!(error["line"], 6, "{revision}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("nil pointer")),
        "{revision}"
    );
    let names = fleet.names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let status = wait::until("the fleet still on the bump", PATIENCE, || async {
        let status = fleet.cli.status().await?;
        let problems = flotilla_testkit::fleet::rollout_problems(&status, &bump, &names);
        Ok(if problems.is_empty() {
            Probe::Done(status)
        } else {
            Probe::NotYet(problems.join("\n"))
        })
    })
    .await?;
    for cluster in fleet.names() {
        assert_eq!(
            settings(&fleet, &cluster).await?["data"]["chart"],
            "1.1.0",
            "{status}"
        );
        assert!(
            fleet
                .get(&cluster, "v1", "ConfigMap", Some("shop"), "broken")
                .await?
                .is_none(),
            "{cluster} got an object of the failed revision"
        );
    }
    Ok(())
}

/// Approves prod's rollout of `commit` once dev has passed it (its rollout there completed)
/// and prod's waits for the approval; a stage without any revision yet takes its first one by
/// itself.
async fn promote(fleet: &Fleet, commit: &str) -> Result<()> {
    let already = format!("is already at {}", &commit[..12]);
    wait::until("prod's rollout approved", PATIENCE, || async {
        let status = fleet.cli.status().await?;
        let at = status["stages"]
            .as_array()
            .and_then(|stages| stages.iter().find(|s| s["name"] == "prod"))
            .map(|prod| prod["pinnedRevision"].clone());
        if at.as_ref().and_then(Value::as_str) == Some(commit) {
            return Ok(Probe::Done(()));
        }
        let output = fleet.cli.run(&["approve", "prod"]).await?;
        let error = String::from_utf8_lossy(&output.stderr).into_owned();
        Ok(if output.status.success() || error.contains(&already) {
            Probe::Done(())
        } else {
            Probe::NotYet(error)
        })
    })
    .await
}

async fn settings(fleet: &Fleet, cluster: &str) -> Result<Value> {
    fleet
        .get(cluster, "v1", "ConfigMap", Some("shop"), "shop-settings")
        .await?
        .with_context(|| format!("no ConfigMap shop/shop-settings in {cluster}"))
}

async fn deployment(fleet: &Fleet, cluster: &str) -> Result<Value> {
    fleet
        .get(cluster, "apps/v1", "Deployment", Some("shop"), "shop")
        .await?
        .with_context(|| format!("no Deployment shop/shop in {cluster}"))
}

/// The first path of `rendered` whose value `live` does not have (lists compared item by
/// item), or `None` when every rendered field is live with its value.
fn missing_from(rendered: &Value, live: &Value, path: &str) -> Option<String> {
    match (rendered, live) {
        (Value::Object(want), Value::Object(have)) => want.iter().find_map(|(key, value)| {
            let at = format!("{path}.{key}");
            match have.get(key) {
                Some(live) => missing_from(value, live, &at),
                None => Some(at),
            }
        }),
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => want
            .iter()
            .zip(have)
            .enumerate()
            .find_map(|(i, (w, h))| missing_from(w, h, &format!("{path}[{i}]"))),
        (want, have) if want == have => None,
        _ => Some(path.to_owned()),
    }
}
