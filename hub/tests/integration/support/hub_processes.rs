//! Real `flotilla-hub` processes for the agent protocol's tests, where only a process will do
//! (SIGKILL). Include next to `support/sync.rs` as module `support`.
#![allow(unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_hub::state::Command;
use tempfile::TempDir;

use super::sync::eventually;

/// A group of real `flotilla-hub` processes on loopback, each with its own peer and API port.
pub struct HubProcesses {
    dir: TempDir,
    pub peers: BTreeMap<u64, String>,
    pub apis: BTreeMap<u64, String>,
    children: BTreeMap<u64, std::process::Child>,
}

impl Drop for HubProcesses {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

use super::ports;
use ports::free_address;

impl HubProcesses {
    /// Founds a group of `size` nodes, ids 1..=size.
    pub fn start(size: u64) -> Result<Self> {
        Self::start_with(size, &[])
    }

    /// Founds a group of `size` nodes, each also given `extra` arguments (`--repo URL`, ...).
    pub fn start_with(size: u64, extra: &[String]) -> Result<Self> {
        let mut group = HubProcesses {
            dir: tempfile::tempdir()?,
            peers: BTreeMap::new(),
            apis: BTreeMap::new(),
            children: BTreeMap::new(),
        };
        for id in 1..=size {
            group.peers.insert(id, free_address()?);
            group.apis.insert(id, free_address()?);
        }
        let peers = group
            .peers
            .iter()
            .map(|(id, address)| format!("{id}={address}"))
            .collect::<Vec<_>>()
            .join(",");
        for id in 1..=size {
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla-hub"))
                .args(["--id", &id.to_string()])
                .arg("--data-dir")
                .arg(group.dir.path().join(format!("node-{id}")))
                .args(["--listen", &group.peers[&id], "--peers", &peers])
                .args(["--api-listen", &group.apis[&id]])
                .args(["--http-listen", "127.0.0.1:0"])
                .args(["--tick-ms", "20", "--election-ticks", "10"])
                // These tests are about consensus and failover; TLS has its own tests.
                .arg("--insecure")
                .args(extra)
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .spawn()
                .context("starting flotilla-hub")?;
            group.children.insert(id, child);
        }
        Ok(group)
    }

    /// Node `id`'s data directory (its raft log is replayable once the node stopped).
    pub fn data_dir(&self, id: u64) -> std::path::PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// Every API address, for an agent's `--hub`.
    pub fn api_addresses(&self) -> Vec<String> {
        self.apis.values().cloned().collect()
    }

    /// The node serving `api`.
    pub fn node_at(&self, api: &str) -> Option<u64> {
        self.apis.iter().find(|(_, a)| *a == api).map(|(id, _)| *id)
    }

    /// SIGKILL.
    pub fn kill(&mut self, id: u64) -> Result<()> {
        if let Some(mut child) = self.children.remove(&id) {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Sends a signal by name (`STOP`, `CONT`) to node `id`'s process.
    pub fn signal(&self, id: u64, signal: &str) -> Result<()> {
        let child = self.children.get(&id).context("no such node")?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {} failed", child.id());
        }
        Ok(())
    }

    /// Nodes still running.
    pub fn running(&self) -> Vec<u64> {
        self.children.keys().copied().collect()
    }

    /// The leader every running node agrees on (a running node itself).
    pub async fn leader(&self) -> Result<u64> {
        eventually("an agreed leader", || async {
            let mut seen = Vec::new();
            for id in self.running() {
                let status = match flotilla_hub::node::GroupClient::new(&self.peers[&id]) {
                    Ok(mut client) => client.status().await.ok(),
                    Err(_) => None,
                };
                seen.push(status.map(|s| s.leader).unwrap_or(0));
            }
            let first = seen.first().copied().unwrap_or(0);
            let agreed = seen.iter().all(|l| *l == first);
            Ok((agreed && self.children.contains_key(&first)).then_some(first))
        })
        .await
    }

    /// Proposes through the first running node that accepts it.
    pub async fn propose(&self, command: &Command) -> Result<()> {
        let mut last = None;
        for _ in 0..50 {
            for id in self.running() {
                let mut client = flotilla_hub::node::GroupClient::new(&self.peers[&id])?;
                match client.propose(command).await {
                    Ok(_) => return Ok(()),
                    Err(status) => last = Some(status),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{} not accepted: {last:?}", command.kind())
    }

    /// Stores blobs in every running node's content store, as a leader's render would before
    /// proposing their hashes.
    pub async fn put_content(&self, blobs: &[flotilla_hub::state::source::Blob]) -> Result<()> {
        for id in self.running() {
            flotilla_testkit::protocol::put_content(
                &self.peers[&id],
                &flotilla_consensus::transport::net::Security::Plain,
                flotilla_consensus::config::DEFAULT_GROUP,
                blobs,
            )
            .await?;
        }
        Ok(())
    }

    /// Node `id`'s replica of the state.
    pub async fn state(&self, id: u64) -> Result<flotilla_hub::state::State> {
        let mut client = flotilla_hub::node::GroupClient::new(&self.peers[&id])?;
        Ok(client.read_state(false).await?.1)
    }
}
