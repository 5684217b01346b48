//! A group of real `flotilla-hub` processes on loopback, each with its own peer and API port:
//! with mutual TLS between the nodes and a group CA made by `flotilla-hub ca create`, as a
//! production group runs, or with `--insecure` for comparison. Whoever holds the CA reaches the
//! peer listeners as an operator (node id 0), which is how this proposes commands, reads state
//! and issues agents' bootstrap tokens.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::ports::free_address;
use flotilla_consensus::transport::net::Security;
use flotilla_hub::node::GroupClient;
use flotilla_hub::server::DEFAULT_BOOTSTRAP_TOKEN_TTL;
use flotilla_hub::state::{Command, State};
use flotilla_hub::sync::register::IssuedBootstrapToken;
use tempfile::TempDir;

/// The group CA's files, as `flotilla-hub ca create` writes them.
struct CaFiles {
    certificate: PathBuf,
    private_key: PathBuf,
    certificate_pem: String,
}

/// A running group, every process killed when dropped.
pub struct HubGroup {
    bin: PathBuf,
    dir: TempDir,
    peers: BTreeMap<u64, String>,
    apis: BTreeMap<u64, String>,
    https: BTreeMap<u64, String>,
    children: BTreeMap<u64, Child>,
    ca: Option<CaFiles>,
    security: Security,
    /// The `--config` file every node is given, if any.
    config: Option<PathBuf>,
}

impl Drop for HubGroup {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl HubGroup {
    /// Founds a group of `size` nodes (ids `1..=size`) running `bin` with default timers: with
    /// TLS and a new group CA, or `--insecure`. Each node logs warnings to `node-<id>.log` in
    /// the group's directory.
    pub fn start(bin: &Path, size: u64, insecure: bool) -> anyhow::Result<HubGroup> {
        Self::start_with_config(bin, size, insecure, None)
    }

    /// [`HubGroup::start`], every node (and every node started later) also given `config` as
    /// its `--config` file.
    pub fn start_with_config(
        bin: &Path,
        size: u64,
        insecure: bool,
        config: Option<&str>,
    ) -> anyhow::Result<HubGroup> {
        let dir = tempfile::tempdir()?;
        let config = match config {
            Some(text) => {
                let path = dir.path().join("config.yaml");
                std::fs::write(&path, text)?;
                Some(path)
            }
            None => None,
        };
        let (ca, security) = if insecure {
            (None, Security::Plain)
        } else {
            let ca = create_ca(bin, &dir.path().join("ca"))?;
            let group_ca = flotilla_pki::GroupCa::from_files(&ca.certificate, &ca.private_key)?;
            (Some(ca), Security::operator(group_ca, "127.0.0.1")?)
        };
        let mut group = HubGroup {
            bin: bin.to_owned(),
            dir,
            peers: BTreeMap::new(),
            apis: BTreeMap::new(),
            https: BTreeMap::new(),
            children: BTreeMap::new(),
            ca,
            security,
            config,
        };
        for id in 1..=size {
            group.peers.insert(id, free_address()?);
            group.apis.insert(id, free_address()?);
            group.https.insert(id, free_address()?);
        }
        for id in 1..=size {
            group.spawn(id)?;
        }
        Ok(group)
    }

    /// Starts node `id` (again, after [`HubGroup::kill`]) on its data directory.
    pub fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        self.spawn_as(id, false)
    }

    /// Starts a new node `id` with `--join`, empty, waiting for the group to add it; returns
    /// its peer address (what `add_member` takes).
    pub fn join(&mut self, id: u64) -> anyhow::Result<String> {
        let address = free_address()?;
        self.peers.insert(id, address.clone());
        self.apis.insert(id, free_address()?);
        self.https.insert(id, free_address()?);
        self.spawn_as(id, true)?;
        Ok(address)
    }

    fn spawn_as(&mut self, id: u64, join: bool) -> anyhow::Result<()> {
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|(id, address)| format!("{id}={address}"))
            .collect();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{id}.log")))?;
        let mut command = Process::new(&self.bin);
        command
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--listen", &self.peers[&id]])
            .args(if join {
                vec!["--join".to_owned()]
            } else {
                vec!["--peers".to_owned(), peers.join(",")]
            })
            .args([
                "--api-listen",
                &self.apis[&id],
                "--http-listen",
                &self.https[&id],
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        match &self.ca {
            Some(ca) => {
                command
                    .arg("--ca-cert")
                    .arg(&ca.certificate)
                    .arg("--ca-key")
                    .arg(&ca.private_key);
            }
            None => {
                command.arg("--insecure");
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.children.insert(id, child);
        Ok(())
    }

    /// SIGKILL of node `id`.
    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(mut child) = self.children.remove(&id) {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// The process id of node `id`, while it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.children.get(&id).map(Child::id)
    }

    /// Whether the group runs with TLS.
    pub fn is_secure(&self) -> bool {
        self.ca.is_some()
    }

    /// The group CA's certificate (PEM), which agents trust; `None` for an insecure group.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(|ca| ca.certificate_pem.as_str())
    }

    /// Nodes still running.
    pub fn running(&self) -> Vec<u64> {
        self.children.keys().copied().collect()
    }

    /// Node `id`'s API address (agents).
    pub fn api(&self, id: u64) -> &str {
        &self.apis[&id]
    }

    /// Node `id`'s HTTP address (dashboard, webhooks, metrics): HTTPS on a secure group.
    pub fn http(&self, id: u64) -> &str {
        &self.https[&id]
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// Every node's API address, for an agent's list of hubs.
    pub fn apis(&self) -> Vec<String> {
        self.apis.values().cloned().collect()
    }

    /// The node serving API address `api`.
    pub fn node_at(&self, api: &str) -> Option<u64> {
        self.apis.iter().find(|(_, a)| *a == api).map(|(id, _)| *id)
    }

    /// A client of node `id`'s group API, as an operator holding the group CA when secure;
    /// connects on first use.
    pub fn client(&self, id: u64) -> anyhow::Result<GroupClient> {
        let peer = self
            .peers
            .get(&id)
            .with_context(|| format!("no node {id}"))?;
        Ok(GroupClient::with_security(peer, &self.security)?)
    }

    /// The leader every running node agrees on, a running node itself.
    pub async fn leader(&self, within: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + within;
        loop {
            let mut seen = Vec::new();
            for id in self.running() {
                let status = match self.client(id) {
                    Ok(mut client) => client.status().await.ok(),
                    Err(_) => None,
                };
                seen.push(status.map_or(0, |s| s.leader));
            }
            let first = seen.first().copied().unwrap_or(0);
            if self.children.contains_key(&first) && seen.iter().all(|l| *l == first) {
                return Ok(first);
            }
            if Instant::now() > deadline {
                bail!("no agreed leader within {within:?}: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// How many of `blobs` node `id` does not serve byte for byte (`HubContent.Get`).
    pub async fn content_missing(
        &self,
        id: u64,
        blobs: &[flotilla_hub::state::source::Blob],
    ) -> anyhow::Result<Vec<flotilla_hub::state::source::BlobHash>> {
        crate::protocol::content_missing(
            &self.peers[&id],
            &self.security,
            flotilla_consensus::config::DEFAULT_GROUP,
            blobs,
        )
        .await
    }

    /// Stores blobs in every running node's content store, as a leader's render does before it
    /// proposes their hashes.
    pub async fn put_content(
        &self,
        blobs: &[flotilla_hub::state::source::Blob],
    ) -> anyhow::Result<()> {
        for id in self.running() {
            crate::protocol::put_content(
                &self.peers[&id],
                &self.security,
                flotilla_consensus::config::DEFAULT_GROUP,
                blobs,
            )
            .await?;
        }
        Ok(())
    }

    /// Proposes through the leader, retrying a few times when a busy machine makes it time out.
    pub async fn propose(&self, command: &Command) -> anyhow::Result<()> {
        let mut attempts = 0;
        loop {
            let leader = self.leader(Duration::from_secs(20)).await?;
            match self.client(leader)?.propose(command).await {
                Ok(_) => return Ok(()),
                Err(status) if attempts < 3 && status.code() == tonic::Code::Unavailable => {
                    attempts += 1;
                }
                // The timed-out attempt applied after all.
                Err(status) if attempts > 0 && status.code() == tonic::Code::FailedPrecondition => {
                    return Ok(());
                }
                Err(status) => {
                    return Err(status).with_context(|| format!("proposing {}", command.kind()));
                }
            }
        }
    }

    /// Node `id`'s replica of the state.
    pub async fn state(&self, id: u64) -> anyhow::Result<State> {
        Ok(self.client(id)?.read_state(false).await?.1)
    }

    /// A new one-time bootstrap token for the agent of registered `cluster`.
    pub async fn bootstrap_token(&self, cluster: &str) -> anyhow::Result<String> {
        let clock = flotilla_hub::clock::system();
        let (issued, command) =
            IssuedBootstrapToken::generate(clock.as_ref(), cluster, DEFAULT_BOOTSTRAP_TOKEN_TTL);
        self.propose(&command).await?;
        Ok(issued.token.reveal().to_owned())
    }
}

/// Runs `flotilla-hub ca create --out DIR`, as an operator founding a group does.
fn create_ca(bin: &Path, dir: &Path) -> anyhow::Result<CaFiles> {
    let output = Process::new(bin)
        .args(["ca", "create", "--out"])
        .arg(dir)
        .output()
        .with_context(|| format!("running {} ca create", bin.display()))?;
    if !output.status.success() {
        bail!(
            "{} ca create failed: {}",
            bin.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let certificate = dir.join("ca.crt");
    let certificate_pem = std::fs::read_to_string(&certificate)
        .with_context(|| format!("reading {}", certificate.display()))?;
    Ok(CaFiles {
        private_key: dir.join("ca.key"),
        certificate,
        certificate_pem,
    })
}
