//! Real Git repositories (made with git2 in temp dirs) holding a small fleet, and hubs following
//! them over `file://`, for the source, render and controller tests.
#![allow(unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_hub::config::NodeConfig;
use flotilla_hub::controller::source::SourceConfig;
use flotilla_hub::server::{Hub, HubConfig};
use flotilla_hub::state::State;
use flotilla_hub::state::source::{RevisionRef, RevisionStatus};
use tempfile::TempDir;

/// Two stages (dev tracks main, prod promotes from dev) and one plain bundle whose ConfigMap
/// carries the cluster's name, a label and a variable. These tests run no agents, so no rollout
/// ever passes its health gate: dev lets each new head replace its running rollout.
pub const FLEET_SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: dev
    clusterSelector: {matchLabels: {env: dev}}
    track: {branch: main}
    rollout: {supersede: immediate}
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    promoteFrom: dev
bundles:
  - name: app
    path: bundles/app
    namespace: app
    variables: {greeting: hello}
";

/// The bundle's ConfigMap, with the cluster's name, a label and a variable (the end-to-end
/// tests' small fleet has the same one).
pub use flotilla_testkit::small_fleet::CONFIG as APP_CONFIG;

pub const INVENTORY: &str = "\
apiVersion: flotilla.dev/v1
kind: ClusterInventory
clusters:
  - name: dev-1
    labels: {env: dev, region: eu}
  - name: prod-1
    labels: {env: prod, region: us}
";

pub use flotilla_testkit::git::GitRepo;

/// A repository whose first commit holds the small fleet.
pub fn with_fleet() -> Result<(GitRepo, String)> {
    let repo = GitRepo::new()?;
    repo.write("flotilla.yaml", FLEET_SPEC)?;
    repo.write("bundles/app/config.yaml", APP_CONFIG)?;
    let commit = repo.commit("fleet")?;
    Ok((repo, commit))
}

/// Writes the two-cluster inventory to a temp file.
pub fn inventory_file() -> Result<(TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("clusters.yaml");
    std::fs::write(&path, INVENTORY)?;
    Ok((dir, path))
}

/// A single-node hub on loopback, following `url`.
pub struct TestHub {
    pub hub: Hub,
    pub data: TempDir,
    /// Holds the inventory file while the hub runs.
    _inventory: TempDir,
}

impl TestHub {
    /// Starts a hub following `url` with the two-cluster inventory.
    pub async fn start(url: &str, configure: impl FnOnce(&mut HubConfig)) -> Result<Self> {
        let data = tempfile::tempdir()?;
        let (inventory, clusters) = inventory_file()?;
        let mut config = HubConfig::new(NodeConfig::new(1, data.path(), "127.0.0.1:0"));
        config.api_listen = "127.0.0.1:0".into();
        config.http_listen = "127.0.0.1:0".into();
        config.clusters_file = Some(clusters);
        let mut source = SourceConfig::new(url, "main");
        source.poll_interval = Duration::from_millis(200);
        config.source = Some(source);
        configure(&mut config);
        let hub = Hub::start(config).await?;
        Ok(TestHub {
            hub,
            data,
            _inventory: inventory,
        })
    }

    /// Waits until `check` holds on the hub's state, up to `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&State) -> bool,
    ) -> Result<()> {
        wait_for(&self.hub, what, timeout, check).await
    }
}

/// Waits until `check` holds on the hub's state, up to `timeout`.
pub async fn wait_for(
    hub: &Hub,
    what: &str,
    timeout: Duration,
    check: impl Fn(&State) -> bool,
) -> Result<()> {
    let mut applied = hub.node().watch_applied();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check(&hub.node().state()) {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, applied.changed())
            .await
            .is_err()
        {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
    }
}

pub fn revision(commit: &str) -> RevisionRef {
    RevisionRef {
        source: "origin".into(),
        commit: commit.into(),
    }
}

/// Whether `commit` rendered.
pub fn rendered(state: &State, commit: &str) -> bool {
    matches!(
        state.revisions.get(&revision(commit)).map(|r| &r.status),
        Some(RevisionStatus::Rendered { .. })
    )
}

/// Whether `commit` failed to render.
pub fn failed(state: &State, commit: &str) -> bool {
    matches!(
        state.revisions.get(&revision(commit)).map(|r| &r.status),
        Some(RevisionStatus::Failed { .. })
    )
}

/// The revision each cluster is assigned, by cluster.
pub fn assignments(state: &State) -> Vec<(String, Option<String>)> {
    state
        .clusters
        .iter()
        .map(|(name, c)| (name.clone(), c.assigned.as_ref().map(|r| r.commit.clone())))
        .collect()
}

/// The content of the `app` bundle the cluster must hold, as JSON, from the hub node's content
/// store.
pub fn desired_app(hub: &Hub, state: &State, cluster: &str) -> Result<serde_json::Value> {
    let hash = state
        .desired_bundles(cluster)
        .get("app")
        .cloned()
        .context("no app bundle desired")?;
    let blob = hub
        .node()
        .content()
        .store()
        .get(&hash)?
        .context("blob not in the node's content store")?;
    Ok(serde_json::from_slice(&blob.content()?)?)
}

/// Tracing output for a failing test, when `RUST_LOG` asks for it.
pub use flotilla_testkit::protocol::init_tracing;

/// One plain HTTP request to `address`; returns the status code and body.
pub async fn http(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String)> {
    let url = format!("http://{address}{path}");
    let answer = flotilla_testkit::http::request(method, &url, headers, body.to_vec()).await?;
    Ok((answer.status, answer.body))
}

/// The commit a cluster is assigned, if it is registered and assigned.
pub fn assigned(state: &State, cluster: &str) -> Option<String> {
    state
        .clusters
        .get(cluster)?
        .assigned
        .as_ref()
        .map(|r| r.commit.clone())
}
