//! Simulated clusters and their agents as real processes, for CLI tests that need health to
//! flow: a `flotilla-sim` process serving N clusters and one `flotilla-agent run` per cluster,
//! each built next to the test executable (a workspace build puts them there).
#![allow(unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

/// A binary of the workspace, next to this test's executable.
pub fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target directory")?;
    let binary = dir.join(name);
    if !binary.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --workspace` (a workspace test run builds it)",
            binary.display()
        );
    }
    Ok(binary)
}

/// Kills and reaps a child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `flotilla-sim` process and one `flotilla-agent` process per cluster, streaming to `hub`.
/// Its fields only keep the processes running and their files in place until it is dropped.
pub struct SimFleet {
    _dir: TempDir,
    _sim: Guard,
    _agents: Vec<Guard>,
}

impl SimFleet {
    /// Starts a simulator with `clusters` clusters (`sim-0`...) whose Deployments roll out in
    /// 200 ms, and an agent for each talking to the hub's API address.
    pub fn start(clusters: usize, hub: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        let sim = Command::new(sibling_binary("flotilla-sim")?)
            .args([
                "--clusters",
                &clusters.to_string(),
                "--rollout-delay-ms",
                "200",
            ])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting flotilla-sim")?;
        let sim = Guard(sim);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !kubeconfig.is_file() {
            if Instant::now() > deadline {
                bail!("flotilla-sim wrote no kubeconfig within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut agents = Vec::new();
        for index in 0..clusters {
            let cluster = format!("sim-{index}");
            let child = Command::new(sibling_binary("flotilla-agent")?)
                .args(["run", "--hub", hub, "--cluster", &cluster])
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["--context", &cluster, "--heartbeat-interval", "200ms"])
                // The CLI tests' hub runs --insecure (see hub.rs).
                .arg("--insecure")
                .arg("--state-dir")
                .arg(dir.path().join(&cluster))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting flotilla-agent")?;
            agents.push(Guard(child));
        }
        Ok(SimFleet {
            _dir: dir,
            _sim: sim,
            _agents: agents,
        })
    }
}
