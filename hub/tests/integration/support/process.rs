//! Groups of real `flotilla-hub` processes on loopback, for tests where only a real process
//! will do: SIGKILL, full restarts, damaged data files.
#![allow(unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command as Process, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_hub::node::GroupClient;
use flotilla_hub::state::{Command, State, Timestamp};
use flotilla_proto::v1::GroupStatus;
use tempfile::TempDir;

/// Raft timers of the test processes: 20 ms ticks, elections after 10 ticks.
pub const TICK_MS: u64 = 20;
pub const ELECTION_TICKS: u64 = 10;

pub fn hub_bin() -> &'static str {
    env!("CARGO_BIN_EXE_flotilla-hub")
}

use super::ports;
pub use ports::free_address;

pub struct ProcessGroup {
    pub dir: TempDir,
    pub addresses: BTreeMap<u64, String>,
    pub children: BTreeMap<u64, Child>,
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl ProcessGroup {
    /// Starts `size` founding members.
    pub async fn start(size: u64) -> Result<Self> {
        let mut addresses = BTreeMap::new();
        for id in 1..=size {
            addresses.insert(id, free_address()?);
        }
        let mut group = ProcessGroup {
            dir: tempfile::tempdir()?,
            addresses,
            children: BTreeMap::new(),
        };
        for id in 1..=size {
            group.spawn(id)?;
        }
        Ok(group)
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    fn peers(&self) -> String {
        self.addresses
            .iter()
            .map(|(id, address)| format!("{id}={address}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The command line of node `id` as a founding member.
    pub fn command(&self, id: u64) -> Process {
        let mut command = Process::new(hub_bin());
        command
            .arg("--id")
            .arg(id.to_string())
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .arg("--listen")
            .arg(&self.addresses[&id])
            .arg("--peers")
            .arg(self.peers())
            .arg("--tick-ms")
            .arg(TICK_MS.to_string())
            .arg("--election-ticks")
            .arg(ELECTION_TICKS.to_string())
            .arg("--compact-after")
            .arg("50")
            // Consensus on real processes; TLS between nodes has its own tests.
            .arg("--insecure")
            // Every process on its own free API and HTTP ports, not the defaults.
            .args([
                "--api-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    pub fn spawn(&mut self, id: u64) -> Result<()> {
        let child = self.command(id).stderr(Stdio::null()).spawn()?;
        self.children.insert(id, child);
        Ok(())
    }

    /// Runs node `id` to completion (for a node expected to refuse to start).
    pub fn run_to_exit(&self, mut command: Process) -> Result<Output> {
        let child = command.stderr(Stdio::piped()).spawn()?;
        Ok(child.wait_with_output()?)
    }

    /// SIGKILL.
    pub fn kill(&mut self, id: u64) -> Result<()> {
        if let Some(mut child) = self.children.remove(&id) {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    pub fn running(&self) -> Vec<u64> {
        self.children.keys().copied().collect()
    }

    pub async fn status(&self, id: u64) -> Result<GroupStatus> {
        let mut client = GroupClient::new(&self.addresses[&id])?;
        Ok(client.status().await?)
    }

    /// Waits for a leader every running node agrees on.
    pub async fn leader(&self, within: Duration) -> Result<u64> {
        self.leader_other_than(0, within).await
    }

    /// Waits for a leader every running node agrees on, other than `old`.
    pub async fn leader_other_than(&self, old: u64, within: Duration) -> Result<u64> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut seen = Vec::new();
            for id in self.running() {
                seen.push(self.status(id).await.map(|s| s.leader).unwrap_or(0));
            }
            if let Some(&first) = seen.first()
                && first != 0
                && first != old
                && seen.iter().all(|l| *l == first)
            {
                return Ok(first);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no agreed leader within {within:?}: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Proposes through node `id`.
    pub async fn propose(&self, id: u64, command: &Command) -> Result<u64> {
        let mut client = GroupClient::new(&self.addresses[&id])?;
        Ok(client.propose(command).await?)
    }

    /// Waits until every running node has applied the same index with the same state; returns it.
    pub async fn converged(&self, within: Duration) -> Result<State> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut seen = BTreeMap::new();
            for id in self.running() {
                let status = match GroupClient::new(&self.addresses[&id]) {
                    Ok(mut client) => client.status_with_state_hash().await.ok(),
                    Err(_) => None,
                };
                if let Some(status) = status {
                    seen.insert(id, (status.applied, status.state_hash));
                }
            }
            let all = seen.len() == self.children.len();
            let first = seen.values().next().cloned();
            if all
                && first
                    .as_ref()
                    .is_some_and(|f| seen.values().all(|v| v == f))
            {
                let id = *seen.keys().next().context("no node")?;
                let mut client = GroupClient::new(&self.addresses[&id])?;
                return Ok(client.read_state(false).await?.1);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("processes did not converge within {within:?}: {seen:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn register(name: &str) -> Command {
    Command::RegisterCluster {
        name: name.to_owned(),
        labels: BTreeMap::new(),
        at: Timestamp(1),
    }
}

/// Proposes `names` one by one through the running nodes in turn; returns those acknowledged.
pub async fn write_all(
    group: &ProcessGroup,
    names: impl IntoIterator<Item = String>,
) -> BTreeSet<String> {
    let mut acked = BTreeSet::new();
    for (i, name) in names.into_iter().enumerate() {
        let running = group.running();
        let id = running[i % running.len()];
        if group.propose(id, &register(&name)).await.is_ok() {
            acked.insert(name);
        }
    }
    acked
}

pub fn missing(state: &State, acked: &BTreeSet<String>) -> Vec<String> {
    acked
        .iter()
        .filter(|name| !state.clusters.contains_key(*name))
        .cloned()
        .collect()
}
