//! A single-node `flotilla-hub` process following a Git repository, on free ports: with TLS
//! (the CA it creates, `<data-dir>/ca.crt`) and its first admin token, as a real hub starts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;

use crate::binaries;
use crate::cli::Flotilla;
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
    /// Start it with `--insecure` (no TLS, no tokens) instead.
    pub insecure: bool,
}

/// A running hub, killed when dropped.
pub struct HubProcess {
    process: Process,
    api: String,
    http: String,
    credentials: Option<HubCredentials>,
    data: TempDir,
    _config: Option<tempfile::NamedTempFile>,
}

/// What a client needs to talk to a hub with TLS.
#[derive(Debug, Clone)]
pub struct HubCredentials {
    /// The hub's CA certificate file.
    pub ca_file: PathBuf,
    /// The first admin token.
    pub token: String,
}

impl HubProcess {
    /// Starts a single-node hub on free ports and waits until it prints its addresses.
    pub fn start(options: &HubOptions) -> anyhow::Result<HubProcess> {
        Self::start_with_config(options, None)
    }

    /// Starts a hub as [`HubProcess::start`] does, reading `config` (the YAML of `--config`,
    /// e.g. `connections:` limits) besides its flags.
    pub fn start_with_config(
        options: &HubOptions,
        config: Option<&str>,
    ) -> anyhow::Result<HubProcess> {
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
            .env("PATH", crate::helm::path_with_helm())
            .env_remove("FLOTILLA_WEBHOOK_SECRET");
        if let Some(secret) = &options.webhook_secret {
            command.args(["--webhook-secret", secret]);
        }
        if options.insecure {
            command.arg("--insecure");
        }
        let config = match config {
            Some(yaml) => {
                let file = tempfile::Builder::new().suffix(".yaml").tempfile()?;
                std::fs::write(file.path(), yaml)?;
                command.arg("--config").arg(file.path());
                Some(file)
            }
            None => None,
        };
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
        let credentials = if options.insecure {
            None
        } else {
            Some(credentials(data.path(), wait)?)
        };
        Ok(HubProcess {
            api: address(&api, "api listening on ")?,
            http: address(&http, "http listening on ")?,
            credentials,
            process,
            data,
            _config: config,
        })
    }

    /// The CA file and admin token clients use; `None` for an insecure hub.
    pub fn credentials(&self) -> Option<&HubCredentials> {
        self.credentials.as_ref()
    }

    /// The `flotilla` CLI pointed at this hub, with its CA and admin token.
    pub fn cli(&self) -> Flotilla {
        let cli = Flotilla::new(&self.api);
        match &self.credentials {
            Some(credentials) => cli.with_credentials(&credentials.ca_file, &credentials.token),
            None => cli,
        }
    }

    /// The hub's data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// A new one-time bootstrap token for `cluster`'s agent (`flotilla cluster token`).
    pub fn bootstrap_token(&self, cluster: &str) -> anyhow::Result<String> {
        let output = self
            .cli()
            .command(&["cluster", "token", cluster, "-o", "json"])?
            .output()?;
        if !output.status.success() {
            anyhow::bail!(
                "flotilla cluster token {cluster}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let answer: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        answer["token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no token in {answer}"))
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

/// The CA file and the first admin token a new hub writes into its data directory.
fn credentials(data: &Path, wait: Duration) -> anyhow::Result<HubCredentials> {
    let ca_file = data.join("ca.crt");
    let token_file = data.join("admin-token");
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let (true, Ok(token)) = (ca_file.is_file(), std::fs::read_to_string(&token_file))
            && !token.trim().is_empty()
        {
            return Ok(HubCredentials {
                ca_file,
                token: token.trim().to_owned(),
            });
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "the hub wrote no {} and {} within {wait:?}",
                ca_file.display(),
                token_file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
