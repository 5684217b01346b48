//! A whole small fleet for the rollout tests: a Git repository (`fleet.rs`), a hub following it
//! over `file://`, a simulator whose clusters are the hub's inventory, and a real agent for
//! each cluster (`sync.rs`). Include next to `support/fleet.rs` as module `fleet`,
//! `support/sync.rs` as module `support` and `support/log.rs` as module `log`.
#![allow(unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_hub::server::Hub;
use flotilla_hub::state::State;
use flotilla_hub::state::rollout::Rollout;
use flotilla_proto::v1::admin_client::AdminClient;
use flotilla_sim::Sim;
use tempfile::TempDir;
use tonic::transport::Channel;

use super::fleet::{GitRepo, TestHub};
use super::sync::{Agent, agent, fast_sync, fast_timing, sim, test_link};

/// How long a rollout test waits for one step before it fails: generous, since the whole suite
/// runs in parallel on two cores (a step takes a few seconds alone).
pub const STEP: Duration = Duration::from_secs(60);

/// The app bundle (namespace `app`, which the spec must name): its Namespace, a ConfigMap carrying the release and the cluster's name, and a
/// Deployment the simulator rolls out (or stalls, when `fail` is `"true"`).
pub const APP: &str = "\
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
  release: \"${release}\"
  cluster: ${cluster.name}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    sim.flotilla.dev/fail: \"${fail}\"
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - {name: web, image: \"example/web:${release}\"}
";

/// A repository, a hub following it, simulated clusters and their agents.
pub struct RolloutFleet {
    pub repo: GitRepo,
    pub hub: TestHub,
    pub sim: Sim,
    pub agents: Vec<Agent>,
    _inventory: TempDir,
}

/// `clusters.yaml` for the given clusters (named `sim-N`, as the simulator names them).
pub fn inventory(clusters: &[&[(&str, &str)]]) -> String {
    let mut text = String::from("apiVersion: flotilla.dev/v1\nkind: ClusterInventory\nclusters:\n");
    for (index, labels) in clusters.iter().enumerate() {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        text.push_str(&format!(
            "  - name: sim-{index}\n    labels: {{{}}}\n",
            labels.join(", ")
        ));
    }
    text
}

impl RolloutFleet {
    /// Commits `spec` and the app bundle at release 1, starts everything and waits until every
    /// cluster runs that first commit Healthy.
    pub async fn start(spec: &str, clusters: &[&[(&str, &str)]]) -> Result<(Self, String)> {
        Self::start_configured(spec, clusters, |_| {}).await
    }

    /// As [`RolloutFleet::start`], with the hub's config adjusted by `configure` first.
    pub async fn start_configured(
        spec: &str,
        clusters: &[&[(&str, &str)]],
        configure: impl FnOnce(&mut flotilla_hub::server::HubConfig),
    ) -> Result<(Self, String)> {
        let repo = GitRepo::new()?;
        repo.write("flotilla.yaml", spec)?;
        repo.write("bundles/app/app.yaml", APP)?;
        let first = repo.commit("release 1")?;
        let inventory = tempfile::tempdir()?;
        let clusters_file = inventory.path().join("clusters.yaml");
        std::fs::write(&clusters_file, self::inventory(clusters))?;
        let hub = TestHub::start(&repo.url(), |config| {
            config.clusters_file = Some(clusters_file.clone());
            config.sync = fast_sync();
            config.node.timing = fast_timing();
            config.node.compact_after = 1_000_000;
            configure(config);
        })
        .await?;
        let sim = sim(clusters.len(), Duration::from_millis(200)).await?;
        let api = hub.hub.api_address().to_string();
        let agents = (0..clusters.len())
            .map(|i| {
                let name = format!("sim-{i}");
                agent(&sim, &name, test_link(vec![api.clone()], &name))
            })
            .collect::<Result<Vec<_>>>()?;
        let fleet = RolloutFleet {
            repo,
            hub,
            sim,
            agents,
            _inventory: inventory,
        };
        fleet.wait_healthy_at(&first).await?;
        Ok((fleet, first))
    }

    pub fn hub(&self) -> &Hub {
        &self.hub.hub
    }

    /// Commits a new release of the app (the spec may change too).
    pub fn release(&self, release: &str, spec: Option<&str>) -> Result<String> {
        if let Some(spec) = spec {
            self.repo.write("flotilla.yaml", spec)?;
        }
        let spec = std::fs::read_to_string(self.repo.path().join("flotilla.yaml"))?;
        let marker = "release: \"";
        let updated = match spec.find(marker) {
            Some(at) => {
                let rest = &spec[at + marker.len()..];
                let end = rest.find('"').context("unterminated release")?;
                format!("{}{release}{}", &spec[..at + marker.len()], &rest[end..])
            }
            None => anyhow::bail!("the spec declares no `release` variable"),
        };
        self.repo.write("flotilla.yaml", &updated)?;
        self.repo.commit(&format!("release {release}"))
    }

    /// Waits until `check` holds on the hub's state; on failure says where every cluster is.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&State) -> bool) -> Result<()> {
        let waited = self.hub.wait_for(what, STEP, check).await;
        waited.with_context(|| describe(&self.hub.hub.node().state()))
    }

    /// Waits until every cluster of the fleet is registered, assigned `commit` and reports it
    /// applied and Healthy (not vacuously: before the inventory registered them, no cluster is).
    pub async fn wait_healthy_at(&self, commit: &str) -> Result<()> {
        let expected = self.agents.len();
        self.wait_for(&format!("every cluster Healthy at {commit}"), |state| {
            state.clusters.len() == expected
                && state.clusters.keys().all(|c| healthy_at(state, c, commit))
        })
        .await
    }

    /// An Admin API client on the hub.
    pub async fn admin(&self) -> Result<AdminClient<Channel>> {
        Ok(AdminClient::connect(format!("http://{}", self.hub().api_address())).await?)
    }

    /// The ConfigMap `app` a cluster holds: its `release`, if any.
    pub async fn release_on(&self, cluster: usize) -> Result<Option<String>> {
        let found = super::sync::config_map_at(&self.agents[cluster].client, "app", "app").await?;
        Ok(found.and_then(|cm| cm.data?.get("release").cloned()))
    }

    /// Stops agents, hub and simulator; returns the hub's data dir, whose log can be replayed.
    pub async fn shutdown(self) -> TempDir {
        for agent in self.agents {
            stop_agent(agent).await;
        }
        self.hub.hub.shutdown().await;
        self.sim.shutdown().await;
        self.hub.data
    }
}

/// Stops an agent as its process dying would: its hub link and its engine.
pub async fn stop_agent(agent: Agent) {
    agent.link.shutdown().await;
    // The link held the only other reference to the engine.
    if let Ok(engine) = std::sync::Arc::try_unwrap(agent.engine) {
        engine.shutdown().await;
    }
}

/// Where every cluster and rollout is, for a failing test's message.
pub fn describe(state: &State) -> String {
    let mut out = String::from("clusters:\n");
    for (name, cluster) in &state.clusters {
        let readiness = cluster.assigned.as_ref().map(|r| {
            flotilla_hub::state::rollout::readiness::at_revision(state, name, r).describe()
        });
        out.push_str(&format!(
            "  {name}: online {}, assigned {:?}: {:?}\n",
            cluster.online,
            cluster.assigned.as_ref().map(|r| &r.commit[..8]),
            readiness
        ));
    }
    for (id, rollout) in &state.rollouts {
        out.push_str(&format!(
            "rollout {id} {} -> {}: {:?}, wave {}/{}\n",
            rollout.stage,
            &rollout.to.commit[..8],
            rollout.status,
            rollout.current,
            rollout.waves.len()
        ));
    }
    out
}

/// Whether `cluster` is assigned `commit` and reports every bundle of it applied and Healthy.
pub fn healthy_at(state: &State, cluster: &str, commit: &str) -> bool {
    let Some(assigned) = state
        .clusters
        .get(cluster)
        .and_then(|c| c.assigned.as_ref())
    else {
        return false;
    };
    assigned.commit == commit
        && flotilla_hub::state::rollout::readiness::at_revision(state, cluster, assigned)
            == flotilla_hub::state::rollout::readiness::Readiness::Healthy
}

/// The newest rollout of a stage.
pub fn newest_rollout<'a>(state: &'a State, stage: &str) -> Option<(u64, &'a Rollout)> {
    state
        .rollouts
        .iter()
        .rev()
        .find(|(_, r)| r.stage == stage)
        .map(|(id, r)| (*id, r))
}

/// The commit a cluster is assigned.
pub fn assigned(state: &State, cluster: &str) -> Option<String> {
    state
        .clusters
        .get(cluster)?
        .assigned
        .as_ref()
        .map(|r| r.commit.clone())
}

/// One applied command of a replayed log, as a rollout test looks at it.
#[derive(Debug, Clone)]
pub struct Instant {
    /// The log index.
    pub index: u64,
    /// The command's kind.
    pub kind: &'static str,
    /// Clusters of the stage counted unavailable right after it (offline, or not Healthy at
    /// what they are assigned).
    pub unavailable: Vec<String>,
    /// What each cluster is assigned right after it.
    pub assigned: BTreeMap<String, Option<String>>,
    /// Whether a rollout of the stage has started by then.
    pub rolling: bool,
}

/// Replays node 1's log from `data_dir` (the hub must have stopped) and returns, for every
/// command, the stage's unavailable clusters and every cluster's assignment right after it.
pub fn timeline(data_dir: &std::path::Path, stage: &str) -> Result<Vec<Instant>> {
    let mut out = Vec::new();
    super::log::replay(data_dir, 1, |index, command, state| {
        let clusters = flotilla_hub::state::rollout::pipeline::current(state, "origin")
            .map(|(_, spec)| {
                flotilla_hub::state::rollout::promotion::stage_clusters(state, &spec, stage)
            })
            .unwrap_or_default();
        out.push(Instant {
            index,
            kind: command.kind(),
            unavailable: clusters
                .into_iter()
                .filter(|c| flotilla_hub::state::rollout::readiness::available(state, c).is_err())
                .collect(),
            assigned: state
                .clusters
                .keys()
                .map(|c| (c.clone(), assigned(state, c)))
                .collect(),
            rolling: state.rollouts.values().any(|r| r.stage == stage),
        });
    })?;
    Ok(out)
}
