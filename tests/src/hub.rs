//! A single-node `flotilla-hub` process following a Git repository, on free ports.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;

use crate::binaries;
use crate::process::Process;

/// How a hub process is started.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// The repository it follows.
    pub repo_url: String,
    /// The cluster inventory it registers.
    pub clusters_file: PathBuf,
    /// Its poll interval, as the flag takes it (`200ms`, `1h`).
    pub poll_interval: String,
    /// The secret webhooks must be signed with.
    pub webhook_secret: Option<String>,
}

/// A running hub, killed when dropped.
pub struct HubProcess {
    process: Process,
    api: String,
    http: String,
    _data: TempDir,
}

impl HubProcess {
    /// Starts a single-node hub on free ports and waits until it prints its addresses.
    pub fn start(options: &HubOptions) -> anyhow::Result<HubProcess> {
        let data = tempfile::tempdir()?;
        let mut command = Command::new(binaries::HUB.path()?);
        command
            .args(["--id", "1", "--listen", "127.0.0.1:0"])
            .args([
                "--api-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--repo", &options.repo_url])
            .args(["--poll-interval", &options.poll_interval])
            .arg("--clusters")
            .arg(&options.clusters_file)
            .env_remove("FLOTILLA_WEBHOOK_SECRET");
        if let Some(secret) = &options.webhook_secret {
            command.args(["--webhook-secret", secret]);
        }
        let process = Process::spawn("flotilla-hub", command)?;
        let wait = Duration::from_secs(30);
        let api = process.wait_for_stdout("its API address", wait, |l| {
            l.starts_with("api listening on ")
        })?;
        let http = process.wait_for_stdout("its HTTP address", wait, |l| {
            l.starts_with("http listening on ")
        })?;
        let address = |line: &str, prefix: &str| -> anyhow::Result<String> {
            line.strip_prefix(prefix)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
                .with_context(|| format!("no address in {line:?}"))
        };
        Ok(HubProcess {
            api: address(&api, "api listening on ")?,
            http: address(&http, "http listening on ")?,
            process,
            _data: data,
        })
    }

    /// The API listener (agents, the CLI).
    pub fn api(&self) -> &str {
        &self.api
    }

    /// The HTTP listener (webhook, dashboard, metrics).
    pub fn http(&self) -> &str {
        &self.http
    }

    /// The last lines the hub logged.
    pub fn log_tail(&self) -> String {
        self.process.stderr_tail()
    }

    /// The hub's process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}
