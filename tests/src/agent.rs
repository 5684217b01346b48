//! `flotilla-agent run` processes, one per simulated cluster.

use std::process::Command;

use tempfile::TempDir;

use crate::binaries;
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
    /// the hub at `hub`, with its own state directory.
    pub fn start(hub: &str, cluster: &str, sim: &SimProcess) -> anyhow::Result<AgentProcess> {
        let state = tempfile::tempdir()?;
        let mut command = Command::new(binaries::AGENT.path()?);
        command
            .args(["run", "--hub", hub, "--cluster", cluster])
            .arg("--state-dir")
            .arg(state.path())
            .arg("--kubeconfig")
            .arg(sim.kubeconfig())
            .args(["--context", cluster])
            .env_remove("FLOTILLA_HUB")
            .env_remove("FLOTILLA_CLUSTER")
            .env_remove("FLOTILLA_STATE_DIR");
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
