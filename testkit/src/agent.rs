//! `flotilla-agent run` processes, one per cluster (simulated or real), registered with a bootstrap token
//! and streaming with their own client certificate (or plain, with an `--insecure` hub). For the
//! security tests an agent can also start with another agent's credentials, or talk to another
//! cluster than the one it serves.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::binaries;
use crate::hub::HubProcess;
use crate::process::Process;

/// The credentials file in an agent's state directory.
pub const CREDENTIALS_FILE: &str = "credentials.pem";

/// How an agent process starts.
#[derive(Debug, Clone)]
pub struct AgentSetup {
    /// The cluster it serves (`--cluster`).
    pub cluster: String,
    /// The kubeconfig context its Kubernetes client uses: the cluster it really talks to.
    pub context: String,
    /// A state directory whose credentials it starts with, instead of registering with a fresh
    /// bootstrap token.
    pub credentials_from: Option<PathBuf>,
    /// A state directory copied whole — credentials, stored bundles and all — as a careless
    /// operator copies an agent's volume.
    pub state_from: Option<PathBuf>,
    /// Its `--max-backoff`, e.g. `1s` (the agent's default otherwise).
    pub max_backoff: Option<String>,
    /// Its `--metrics-listen` (none: not served).
    pub metrics_listen: Option<String>,
}

impl AgentSetup {
    /// The agent of `cluster`, talking to that cluster, registering with a fresh token.
    pub fn new(cluster: &str) -> AgentSetup {
        AgentSetup {
            cluster: cluster.to_owned(),
            context: cluster.to_owned(),
            credentials_from: None,
            state_from: None,
            max_backoff: None,
            metrics_listen: None,
        }
    }
}

/// A running agent, killed when dropped.
pub struct AgentProcess {
    kubeconfig: PathBuf,
    setup: AgentSetup,
    process: Process,
    state: TempDir,
}

impl AgentProcess {
    /// Starts an agent as `setup` says, streaming from `hub` and applying through `kubeconfig`
    /// (`setup.context` in it), with a state directory of its own: registered with a fresh
    /// bootstrap token and the hub's CA, or plain when the hub is insecure.
    pub fn start(
        hub: &HubProcess,
        kubeconfig: &Path,
        setup: AgentSetup,
    ) -> anyhow::Result<AgentProcess> {
        let state = tempfile::tempdir()?;
        let register = match (&setup.state_from, &setup.credentials_from) {
            (Some(from), _) => {
                copy_dir(from, state.path())?;
                false
            }
            (None, Some(from)) => {
                std::fs::copy(
                    from.join(CREDENTIALS_FILE),
                    state.path().join(CREDENTIALS_FILE),
                )?;
                false
            }
            (None, None) => true,
        };
        let process = spawn(hub, kubeconfig, &setup, state.path(), register)?;
        Ok(AgentProcess {
            kubeconfig: kubeconfig.to_path_buf(),
            setup,
            process,
            state,
        })
    }

    /// Kills the agent and starts it again with the same state directory (its stored
    /// credentials and bundles), as a restarted pod does.
    pub fn restart(&mut self, hub: &HubProcess) -> anyhow::Result<()> {
        self.process.kill();
        self.process = spawn(hub, &self.kubeconfig, &self.setup, self.state.path(), false)?;
        Ok(())
    }

    /// How it starts; a change takes effect at the next [`AgentProcess::restart`].
    pub fn setup_mut(&mut self) -> &mut AgentSetup {
        &mut self.setup
    }

    /// The cluster it serves.
    pub fn cluster(&self) -> &str {
        &self.setup.cluster
    }

    /// Its state directory (`--state-dir`): credentials and desired bundles.
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// The agent's process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// The agent's `/metrics` text (it must have been started with `metrics_listen`).
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let address = self
            .setup
            .metrics_listen
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("the agent serves no metrics"))?;
        let answer =
            crate::http::request("GET", &format!("http://{address}/metrics"), &[], Vec::new())
                .await?;
        anyhow::ensure!(answer.status == 200, "/metrics: {}", answer.status);
        Ok(answer.body)
    }
}

/// Copies the files and folders of `from` into `to`.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn spawn(
    hub: &HubProcess,
    kubeconfig: &Path,
    setup: &AgentSetup,
    state_dir: &Path,
    register: bool,
) -> anyhow::Result<Process> {
    let cluster = setup.cluster.as_str();
    let mut command = Command::new(binaries::AGENT.path()?);
    command
        .args(["run", "--hub", hub.api(), "--cluster", cluster])
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--context", &setup.context])
        .env_remove("FLOTILLA_HUB")
        .env_remove("FLOTILLA_CLUSTER")
        .env_remove("FLOTILLA_STATE_DIR")
        .env_remove("FLOTILLA_CA_FILE")
        .env_remove("FLOTILLA_BOOTSTRAP_TOKEN");
    if let Some(max) = &setup.max_backoff {
        command.args(["--max-backoff", max]);
    }
    if let Some(address) = &setup.metrics_listen {
        command.args(["--metrics-listen", address]);
    }
    match hub.credentials() {
        Some(credentials) if register => {
            // As an operator should: the token in a file, off the command line.
            let token_file = state_dir.join("bootstrap-token");
            std::fs::write(&token_file, format!("{}\n", hub.bootstrap_token(cluster)?))?;
            command
                .arg("--ca-file")
                .arg(&credentials.ca_file)
                .arg("--bootstrap-token-file")
                .arg(&token_file);
        }
        Some(_) => {}
        None => {
            command.arg("--insecure");
        }
    }
    let name = match setup.context == setup.cluster {
        true => format!("flotilla-agent ({cluster})"),
        false => format!("flotilla-agent ({cluster} on {})", setup.context),
    };
    Process::spawn(name, command)
}
