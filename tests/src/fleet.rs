//! The whole chain in real processes: a `flotilla-sim` serving the inventory's clusters, a
//! `flotilla-hub` following a Git repository and registering the inventory, a
//! `flotilla-agent run` per cluster, and the `flotilla` CLI pointed at the hub.

use std::time::Duration;

use anyhow::Context;
use flotilla_core::inventory::{Cluster, parse_inventory};
use serde_json::Value;
use tempfile::TempDir;

use crate::agent::AgentProcess;
use crate::cli::Flotilla;
use crate::git::GitRepo;
use crate::hub::{HubOptions, HubProcess};
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

/// Simulator, hub, agents and CLI; every process is killed when dropped.
pub struct Fleet {
    /// The simulated clusters.
    pub sim: SimProcess,
    /// The hub.
    pub hub: HubProcess,
    /// One agent per cluster.
    pub agents: Vec<AgentProcess>,
    /// `flotilla` pointed at the hub.
    pub cli: Flotilla,
    clusters: Vec<Cluster>,
    _inventory: TempDir,
}

impl Fleet {
    /// Starts the chain for `repo` and the clusters of `inventory` (a `ClusterInventory`).
    pub async fn start(
        repo: &GitRepo,
        inventory: &str,
        options: FleetOptions,
    ) -> anyhow::Result<Fleet> {
        let clusters = parse_inventory(inventory, "clusters.yaml", &Default::default())
            .map_err(|e| anyhow::anyhow!("the test's inventory: {e}"))?;
        let dir = tempfile::tempdir()?;
        let clusters_file = dir.path().join("clusters.yaml");
        std::fs::write(&clusters_file, inventory)?;
        let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
        let sim = SimProcess::start(&names, options.rollout_delay).await?;
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
            .map(|name| AgentProcess::start(&hub, name, &sim))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let cli = hub.cli();
        Ok(Fleet {
            sim,
            hub,
            agents,
            cli,
            clusters,
            _inventory: dir,
        })
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
                        if r["status"] == "awaiting approval" && r["deletionHold"].is_string() =>
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
