//! `flotilla-agent run` processes, one per simulated cluster, registered with a bootstrap token
//! and streaming with their own client certificate (or plain, with an `--insecure` hub).

use std::process::Command;

use tempfile::TempDir;

use crate::binaries;
use crate::hub::HubProcess;
use crate::process::Process;
use crate::sim::SimProcess;

/// A running agent, killed when dropped.
pub struct AgentProcess {
    cluster: String,
    process: Process,
    _state: TempDir,
}

impl AgentProcess {
    /// Starts the agent of `cluster` (a context of the simulator's kubeconfig) streaming from
    /// `hub`, with its own state directory: registered with a fresh bootstrap token and the
    /// hub's CA, or plain when the hub is insecure.
    pub fn start(
        hub: &HubProcess,
        cluster: &str,
        sim: &SimProcess,
    ) -> anyhow::Result<AgentProcess> {
        let state = tempfile::tempdir()?;
        let mut command = Command::new(binaries::AGENT.path()?);
        command
            .args(["run", "--hub", hub.api(), "--cluster", cluster])
            .arg("--state-dir")
            .arg(state.path())
            .arg("--kubeconfig")
            .arg(sim.kubeconfig())
            .args(["--context", cluster])
            .env_remove("FLOTILLA_HUB")
            .env_remove("FLOTILLA_CLUSTER")
            .env_remove("FLOTILLA_STATE_DIR")
            .env_remove("FLOTILLA_CA_FILE")
            .env_remove("FLOTILLA_BOOTSTRAP_TOKEN");
        match hub.credentials() {
            Some(credentials) => {
                // As an operator should: the token in a file, off the command line.
                let token_file = state.path().join("bootstrap-token");
                std::fs::write(&token_file, format!("{}\n", hub.bootstrap_token(cluster)?))?;
                command
                    .arg("--ca-file")
                    .arg(&credentials.ca_file)
                    .arg("--bootstrap-token-file")
                    .arg(&token_file);
            }
            None => {
                command.arg("--insecure");
            }
        }
        let process = Process::spawn(format!("flotilla-agent ({cluster})"), command)?;
        Ok(AgentProcess {
            cluster: cluster.to_owned(),
            process,
            _state: state,
        })
    }

    /// The cluster it serves.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The agent's process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}
