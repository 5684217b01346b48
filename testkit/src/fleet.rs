//! The whole chain in real processes: the inventory's clusters (a `flotilla-sim` serving them,
//! or real clusters from `scripts/k8s-up`), a `flotilla-hub` following a Git repository and
//! registering the inventory, a `flotilla-agent run` per cluster, and the `flotilla` CLI
//! pointed at the hub.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use flotilla_core::inventory::{Cluster, parse_inventory};
use kube::api::{Api, DynamicObject};
use serde_json::Value;
use tempfile::TempDir;

use crate::agent::{AgentProcess, AgentSetup};
use crate::cli::Flotilla;
use crate::git::GitRepo;
use crate::hub::{HubOptions, HubProcess};
use crate::real::RealClusters;
use crate::sim::SimProcess;
use crate::wait::{self, PATIENCE, Probe};

/// How the chain is set up.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// The hub's poll interval (`200ms` by default; `1h` to rely on webhooks only).
    pub poll_interval: String,
    /// The hub's webhook secret.
    pub webhook_secret: Option<String>,
    /// How long simulated workloads take to roll out.
    pub rollout_delay: Duration,
    /// The hub's config file (YAML), if it needs one.
    pub hub_config: Option<String>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            poll_interval: "200ms".into(),
            webhook_secret: None,
            rollout_delay: Duration::from_millis(200),
            hub_config: None,
        }
    }
}

/// Where a fleet's clusters run.
pub enum Clusters {
    /// A `flotilla-sim` process, a cluster per inventory entry, each context named after it.
    Sim(SimProcess),
    /// Real clusters, as many as the inventory has: its i-th cluster is context `k8s-i`.
    Real(RealClusters),
}

impl Clusters {
    /// The kubeconfig the agents use.
    pub fn kubeconfig(&self) -> &Path {
        match self {
            Clusters::Sim(sim) => sim.kubeconfig(),
            Clusters::Real(real) => real.kubeconfig(),
        }
    }
}

/// Clusters, hub, agents and CLI; every process is killed (and clusters started for the fleet
/// stopped) when dropped.
pub struct Fleet {
    /// The hub.
    pub hub: HubProcess,
    /// One agent per cluster.
    pub agents: Vec<AgentProcess>,
    /// `flotilla` pointed at the hub.
    pub cli: Flotilla,
    clusters: Vec<Cluster>,
    _inventory: TempDir,
    // Last: the clusters outlive the agents applying to them.
    kube: Clusters,
}

impl Fleet {
    /// Starts the chain for `repo` and the clusters of `inventory` (a `ClusterInventory`),
    /// simulated.
    pub async fn start(
        repo: &GitRepo,
        inventory: &str,
        options: FleetOptions,
    ) -> anyhow::Result<Fleet> {
        Self::start_on(repo, inventory, options, None).await
    }

    /// Starts the chain on `real` clusters when given (one per inventory entry in order; they
    /// stop when the fleet is dropped), else on simulated ones.
    pub async fn start_on(
        repo: &GitRepo,
        inventory: &str,
        options: FleetOptions,
        real: Option<RealClusters>,
    ) -> anyhow::Result<Fleet> {
        let clusters = parse_inventory(inventory, "clusters.yaml", &Default::default())
            .map_err(|e| anyhow::anyhow!("the test's inventory: {e}"))?;
        let dir = tempfile::tempdir()?;
        let clusters_file = dir.path().join("clusters.yaml");
        std::fs::write(&clusters_file, inventory)?;
        let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
        let kube = match real {
            Some(real) if real.contexts().len() == names.len() => Clusters::Real(real),
            Some(real) => anyhow::bail!(
                "{} real clusters for an inventory of {}",
                real.contexts().len(),
                names.len()
            ),
            None => Clusters::Sim(SimProcess::start(&names, options.rollout_delay).await?),
        };
        let hub = HubProcess::start_with_config(
            &HubOptions {
                repo_url: repo.url(),
                clusters_file,
                poll_interval: options.poll_interval.clone(),
                webhook_secret: options.webhook_secret.clone(),
                insecure: false,
            },
            options.hub_config.as_deref(),
        )?;
        // The hub's leader registers the inventory's clusters; their tokens need them.
        wait_registered(&hub, &names).await?;
        let agents = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut setup = AgentSetup::new(name);
                if let Clusters::Real(real) = &kube {
                    setup.context = real.contexts()[i].clone();
                }
                setup.metrics_listen = Some(crate::ports::free_address()?);
                AgentProcess::start(&hub, kube.kubeconfig(), setup)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let cli = hub.cli();
        Ok(Fleet {
            hub,
            agents,
            cli,
            clusters,
            _inventory: dir,
            kube,
        })
    }

    /// The hub's `/metrics` text, read over TLS with its CA.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let credentials = self.hub.credentials().context("the hub runs without TLS")?;
        let answer = crate::http::request_tls(
            &credentials.ca_file,
            "GET",
            &format!("https://{}/metrics", self.hub.http()),
            &[],
            Vec::new(),
        )
        .await?;
        anyhow::ensure!(
            answer.status == 200,
            "/metrics: {}: {}",
            answer.status,
            answer.body
        );
        Ok(answer.body)
    }

    /// The simulator. Tests that use it run on simulated clusters only.
    pub fn sim(&self) -> &SimProcess {
        match &self.kube {
            Clusters::Sim(sim) => sim,
            Clusters::Real(_) => panic!("this fleet runs on real clusters, not the simulator"),
        }
    }

    /// The simulator, to change its clusters.
    pub fn sim_mut(&mut self) -> &mut SimProcess {
        match &mut self.kube {
            Clusters::Sim(sim) => sim,
            Clusters::Real(_) => panic!("this fleet runs on real clusters, not the simulator"),
        }
    }

    /// Where the clusters run.
    pub fn kube(&self) -> &Clusters {
        &self.kube
    }

    /// A client for the inventory's cluster `cluster`.
    pub async fn client(&self, cluster: &str) -> anyhow::Result<kube::Client> {
        match &self.kube {
            Clusters::Sim(sim) => sim.client(cluster),
            Clusters::Real(real) => {
                let i = self
                    .clusters
                    .iter()
                    .position(|c| c.name == cluster)
                    .with_context(|| format!("no cluster {cluster} in the inventory"))?;
                real.client(&real.contexts()[i]).await
            }
        }
    }

    /// An object of `cluster` (`None` when absent): `api_version`, `kind` as in a manifest.
    pub async fn get(
        &self,
        cluster: &str,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> anyhow::Result<Option<Value>> {
        if let Clusters::Sim(sim) = &self.kube {
            return sim.get(cluster, api_version, kind, namespace, name).await;
        }
        let client = self.client(cluster).await?;
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let (resource, _) = kube::discovery::pinned_kind(&client, &gvk)
            .await
            .with_context(|| format!("discovering {api_version} {kind} in {cluster}"))?;
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client, ns, &resource),
            None => Api::all_with(client, &resource),
        };
        let object = api
            .get_opt(name)
            .await
            .with_context(|| format!("reading {kind} {name} in {cluster}"))?;
        Ok(object.map(serde_json::to_value).transpose()?)
    }

    /// The inventory's clusters.
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// The inventory's cluster names.
    pub fn names(&self) -> Vec<String> {
        self.clusters.iter().map(|c| c.name.clone()).collect()
    }

    /// Waits until `flotilla status` shows `commit` rolled out on every cluster: online, and
    /// every bundle desired and applied at `commit` and Healthy. Returns that status.
    pub async fn wait_rolled_out(&self, commit: &str) -> anyhow::Result<Value> {
        let names = self.names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.wait_rolled_out_on(commit, &names).await
    }

    /// Waits until `flotilla status` shows `commit` rolled out on `clusters`.
    pub async fn wait_rolled_out_on(
        &self,
        commit: &str,
        clusters: &[&str],
    ) -> anyhow::Result<Value> {
        wait::until(
            &format!("{} rolled out on {clusters:?}", short(commit)),
            PATIENCE,
            || async {
                let status = self.cli.status().await?;
                let problems = rollout_problems(&status, commit, clusters);
                Ok(if problems.is_empty() {
                    Probe::Done(status)
                } else {
                    let latest = &status["latestRevision"];
                    Probe::NotYet(format!(
                        "latest revision: {latest}\n{}",
                        problems.join("\n")
                    ))
                })
            },
        )
        .await
        .map_err(|e| e.context(format!("the hub's log ends with:\n{}", self.hub.log_tail())))
    }

    /// Waits until `flotilla status` lists a rollout of `stage` to `commit` that the deletion
    /// guard holds for an approval; returns that rollout as listed.
    pub async fn wait_held(&self, stage: &str, commit: &str) -> anyhow::Result<Value> {
        wait::until(
            &format!("{} held on stage {stage}", short(commit)),
            PATIENCE,
            || async {
                let status = self.cli.status().await?;
                let rollouts = status["rollouts"].as_array().cloned().unwrap_or_default();
                let found = rollouts
                    .into_iter()
                    .find(|r| r["stage"] == stage && r["toRevision"] == commit);
                Ok(match found {
                    Some(r)
                        if r["status"] == "awaitingApproval" && r["deletionHold"].is_string() =>
                    {
                        Probe::Done(r)
                    }
                    Some(r) => Probe::NotYet(r.to_string()),
                    None => Probe::NotYet(format!("no rollout yet: {}", status["rollouts"])),
                })
            },
        )
        .await
        .map_err(|e| e.context(format!("the hub's log ends with:\n{}", self.hub.log_tail())))
    }

    /// Waits until `flotilla revisions` lists `commit` with `status` (`rendered`, `failed`);
    /// returns that revision.
    pub async fn wait_revision(&self, commit: &str, status: &str) -> anyhow::Result<Value> {
        wait::until(
            &format!("revision {} {status}", short(commit)),
            PATIENCE,
            || async {
                let revisions = self.cli.revisions().await?;
                let found = revisions["revisions"]
                    .as_array()
                    .context("no revisions list")?
                    .iter()
                    .find(|r| r["commit"] == commit)
                    .cloned();
                Ok(match found {
                    Some(revision) if revision["status"] == status => Probe::Done(revision),
                    Some(revision) => Probe::NotYet(revision.to_string()),
                    None => Probe::NotYet(revisions.to_string()),
                })
            },
        )
        .await
    }
}

/// Why `status` does not show `commit` rolled out on `clusters` (empty when it does).
pub fn rollout_problems(status: &Value, commit: &str, clusters: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let listed = status["clusters"].as_array().cloned().unwrap_or_default();
    for name in clusters {
        let Some(cluster) = listed.iter().find(|c| c["name"] == *name) else {
            problems.push(format!("{name}: not registered"));
            continue;
        };
        if cluster["online"] != true {
            problems.push(format!("{name}: offline"));
        }
        let bundles = cluster["bundles"].as_array().cloned().unwrap_or_default();
        if bundles.is_empty() {
            problems.push(format!(
                "{name}: no bundles (assigned {}, render error {})",
                cluster["assignedRevision"], cluster["renderError"]
            ));
        }
        for bundle in bundles {
            // A bundle no longer desired and with nothing applied has been removed; the hub
            // may keep listing it from the agent's last report.
            if bundle["desiredRevision"].is_null() && bundle["appliedHash"].is_null() {
                continue;
            }
            let (desired, applied, health) = (
                &bundle["desiredRevision"],
                &bundle["appliedRevision"],
                &bundle["health"],
            );
            if desired != commit || applied != commit || health != "Healthy" {
                problems.push(format!(
                    "{name}/{}: desired {desired}, applied {applied}, {health} {}",
                    bundle["name"], bundle["message"]
                ));
            }
        }
    }
    problems
}

/// A commit id as tables show it.
pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Waits until the hub lists every one of `names` (`flotilla clusters`).
async fn wait_registered(hub: &HubProcess, names: &[&str]) -> anyhow::Result<()> {
    let cli = hub.cli();
    crate::wait::until(
        "the inventory's clusters registered",
        crate::wait::PATIENCE,
        || async {
            let listed = cli.json(&["clusters"]).await?;
            let missing: Vec<&str> = names
                .iter()
                .copied()
                .filter(|name| !listed.to_string().contains(&format!("\"{name}\"")))
                .collect();
            Ok(if missing.is_empty() {
                crate::wait::Probe::Done(())
            } else {
                crate::wait::Probe::NotYet(format!("not yet registered: {missing:?}"))
            })
        },
    )
    .await
}
