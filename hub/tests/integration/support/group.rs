//! In-process hub groups over real loopback sockets, for integration tests: start, crash (drop
//! a node and keep its data dir), restart (reopen the same data dir on the same port), and wait
//! for leaders and convergence. A group started with [`TestGroup::start_on_simulated_disks`]
//! keeps each node's raft log on a [`SimulatedDisk`], which outlives the node: cut its power,
//! fail a sync or fill it, then restart the node on it.
#![allow(unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_consensus::storage::SimulatedDisk;
use flotilla_consensus::transport::faults::FaultPlan;
use flotilla_hub::config::{Bootstrap, NodeConfig, Timing};
use flotilla_hub::node::{Node, NodeHandle};
use flotilla_hub::state::{Command, Timestamp};
use tempfile::TempDir;

/// Fast timers so elections take a fraction of a second.
pub fn test_timing() -> Timing {
    Timing {
        tick: Duration::from_millis(10),
        election_ticks: 10,
        heartbeat_ticks: 2,
        request_timeout: Duration::from_secs(3),
    }
}

/// A free loopback port (the socket is closed again; the node binds it right after).
use super::ports;
pub use ports::free_address;

pub struct TestGroup {
    pub faults: Arc<FaultPlan>,
    pub addresses: BTreeMap<u64, String>,
    pub nodes: BTreeMap<u64, Option<NodeHandle>>,
    pub dirs: BTreeMap<u64, TempDir>,
    pub compact_after: u64,
    pub timing: Timing,
    /// Each node's disk, when the group was started on simulated disks (empty otherwise); a
    /// restarted node opens its log on the same disk.
    pub disks: BTreeMap<u64, SimulatedDisk>,
}

impl TestGroup {
    /// Founds a group of `size` voters, ids 1..=size.
    pub async fn start(size: u64, seed: u64, compact_after: u64) -> Result<Self> {
        Self::start_with_timing(size, seed, compact_after, test_timing()).await
    }

    /// Founds a group with the given timers.
    pub async fn start_with_timing(
        size: u64,
        seed: u64,
        compact_after: u64,
        timing: Timing,
    ) -> Result<Self> {
        Self::found(size, seed, compact_after, timing, false).await
    }

    /// Founds a group of `size` voters whose raft logs are on simulated disks, one per node
    /// (see [`TestGroup::disk`]); nodes that join later get one too.
    pub async fn start_on_simulated_disks(
        size: u64,
        seed: u64,
        compact_after: u64,
        timing: Timing,
    ) -> Result<Self> {
        Self::found(size, seed, compact_after, timing, true).await
    }

    async fn found(
        size: u64,
        seed: u64,
        compact_after: u64,
        timing: Timing,
        simulated_disks: bool,
    ) -> Result<Self> {
        let mut addresses = BTreeMap::new();
        for id in 1..=size {
            addresses.insert(id, free_address()?);
        }
        let mut group = TestGroup {
            faults: Arc::new(FaultPlan::seeded(seed)),
            addresses,
            nodes: BTreeMap::new(),
            dirs: BTreeMap::new(),
            compact_after,
            timing,
            disks: BTreeMap::new(),
        };
        for id in 1..=size {
            group.dirs.insert(id, tempfile::tempdir()?);
            if simulated_disks {
                group.disks.insert(id, SimulatedDisk::new());
            }
            group
                .boot(id, Bootstrap::Members(group.addresses.clone()))
                .await?;
        }
        Ok(group)
    }

    fn config(&self, id: u64, bootstrap: Bootstrap) -> Result<NodeConfig> {
        let dir = self.dirs.get(&id).context("no data dir")?;
        let mut config = NodeConfig::new(id, dir.path(), self.addresses[&id].clone());
        config.bootstrap = bootstrap;
        config.timing = self.timing;
        config.compact_after = self.compact_after;
        config.faults = self.faults.clone();
        config.disk = self.disks.get(&id).cloned();
        Ok(config)
    }

    async fn boot(&mut self, id: u64, bootstrap: Bootstrap) -> Result<()> {
        let config = self.config(id, bootstrap)?;
        // The port was just released (crash) and may linger briefly; retry the bind.
        let mut last = None;
        for _ in 0..50 {
            match Node::start(config.clone()).await {
                Ok(node) => {
                    self.nodes.insert(id, Some(node));
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("node {id} did not start: {:?}", last)
    }

    /// Starts a new, empty node that waits to be added.
    pub async fn start_joiner(&mut self, id: u64) -> Result<()> {
        self.addresses.insert(id, free_address()?);
        self.dirs.insert(id, tempfile::tempdir()?);
        if !self.disks.is_empty() {
            self.disks.insert(id, SimulatedDisk::new());
        }
        self.boot(id, Bootstrap::Join).await
    }

    pub fn node(&self, id: u64) -> Result<&NodeHandle> {
        self.nodes
            .get(&id)
            .and_then(Option::as_ref)
            .with_context(|| format!("node {id} is not running"))
    }

    pub fn live(&self) -> Vec<NodeHandle> {
        self.nodes.values().flatten().cloned().collect()
    }

    pub fn live_ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Stops a node abruptly (raft thread, sockets) and keeps its data dir.
    pub async fn crash(&mut self, id: u64) -> Result<()> {
        if let Some(node) = self.nodes.get_mut(&id).and_then(Option::take) {
            node.shutdown().await;
        }
        Ok(())
    }

    /// The simulated disk under node `id`'s raft log.
    pub fn disk(&self, id: u64) -> Result<&SimulatedDisk> {
        self.disks.get(&id).with_context(|| {
            format!("node {id} has no simulated disk (start the group on simulated disks)")
        })
    }

    /// Cuts the power of node `id`'s disk, losing every write not synced, then stops the node:
    /// nothing it does while stopping reaches the disk. Restart it with [`TestGroup::restart`].
    pub async fn power_cut(&mut self, id: u64) -> Result<()> {
        self.disk(id)?.power_cut();
        self.crash(id).await
    }

    /// [`TestGroup::power_cut`] on a disk that reorders writes: each unsynced write survives or
    /// not, as chosen by `seed`.
    pub async fn power_cut_torn(&mut self, id: u64, seed: u64) -> Result<()> {
        self.disk(id)?.power_cut_torn(seed);
        self.crash(id).await
    }

    /// Restarts a crashed node from its data dir.
    pub async fn restart(&mut self, id: u64) -> Result<()> {
        self.boot(id, Bootstrap::Join).await
    }

    /// Waits for a leader that every live node in `among` agrees on.
    pub async fn leader_among(&self, among: &[u64], within: Duration) -> Result<u64> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut seen = Vec::new();
            for id in among {
                if let Ok(node) = self.node(*id) {
                    seen.push(node.leadership().leader);
                }
            }
            if let Some(Some(leader)) = seen.first().copied()
                && seen.iter().all(|l| *l == Some(leader))
                && self.node(leader).map(|n| n.is_leader()).unwrap_or(false)
            {
                return Ok(leader);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no agreed leader among {among:?} within {within:?}: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn leader(&self, within: Duration) -> Result<u64> {
        self.leader_among(&self.live_ids(), within).await
    }

    /// Waits until every live node applied the same index and has the same state hash.
    pub async fn converged(&self, within: Duration) -> Result<(u64, String)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut seen = BTreeMap::new();
            for node in self.live() {
                let state = node.state();
                seen.insert(node.id(), (state.applied(), state.hash()?));
            }
            let first = seen.values().next().cloned();
            if let Some(first) = first
                && seen.values().all(|v| *v == first)
            {
                return Ok(first);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("replicas did not converge within {within:?}: {seen:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn shutdown(mut self) {
        for id in self.live_ids() {
            let _ = self.crash(id).await;
        }
    }
}

/// A small command: registering cluster `name`.
pub fn register(name: &str) -> Command {
    Command::RegisterCluster {
        name: name.to_owned(),
        labels: BTreeMap::from([("env".to_owned(), "test".to_owned())]),
        at: Timestamp(1),
    }
}

/// Tracing output for a failing test, when `RUST_LOG` asks for it.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
