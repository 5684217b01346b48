//! The real `flotilla` binary, run as an operator would.

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::binaries;

/// `flotilla` pointed at one hub.
#[derive(Debug, Clone)]
pub struct Flotilla {
    hub: String,
    ca_file: Option<PathBuf>,
    token: Option<String>,
}

impl Flotilla {
    /// Commands talk to the hub whose API listens at `hub`, without TLS (an `--insecure`
    /// hub, or commands that need no hub) until [`Flotilla::with_credentials`].
    pub fn new(hub: &str) -> Flotilla {
        Flotilla {
            hub: hub.to_owned(),
            ca_file: None,
            token: None,
        }
    }

    /// Talks TLS trusting `ca_file`, authenticated with `token`.
    pub fn with_credentials(mut self, ca_file: &Path, token: &str) -> Flotilla {
        self.ca_file = Some(ca_file.to_owned());
        self.token = Some(token.to_owned());
        self
    }

    /// `flotilla ARGS` with the hub's address and credentials in its environment.
    pub fn command(&self, args: &[&str]) -> anyhow::Result<std::process::Command> {
        let mut command = std::process::Command::new(binaries::FLOTILLA.path()?);
        command
            .args(args)
            .env("FLOTILLA_HUB", &self.hub)
            // No operator's contexts: only what the test sets.
            .env("FLOTILLA_CONFIG", "/nonexistent/flotilla/config.yaml")
            .env_remove("FLOTILLA_CONTEXT")
            .env("PATH", crate::helm::path_with_helm());
        match (&self.ca_file, &self.token) {
            (Some(ca_file), token) => {
                command
                    .env("FLOTILLA_CA_FILE", ca_file)
                    .env_remove("FLOTILLA_INSECURE");
                match token {
                    Some(token) => command.env("FLOTILLA_TOKEN", token),
                    None => command.env_remove("FLOTILLA_TOKEN"),
                };
            }
            (None, _) => {
                command
                    .env("FLOTILLA_INSECURE", "1")
                    .env_remove("FLOTILLA_CA_FILE")
                    .env_remove("FLOTILLA_TOKEN");
            }
        }
        Ok(command)
    }

    /// Runs `flotilla ARGS` with `FLOTILLA_HUB` set, in `dir` when given.
    pub async fn run_in(&self, dir: Option<&Path>, args: &[&str]) -> anyhow::Result<Output> {
        let mut command = tokio::process::Command::from(self.command(args)?);
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        command
            .output()
            .await
            .with_context(|| format!("running flotilla {args:?}"))
    }

    /// Runs `flotilla ARGS`.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.run_in(None, args).await
    }

    /// Runs `flotilla ARGS` and returns its stdout; fails on a non-zero exit.
    pub async fn text(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.run(args).await?;
        if !output.status.success() {
            bail!(
                "flotilla {args:?} exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8(output.stdout)?)
    }

    /// Runs `flotilla ARGS -o json` and parses what it prints.
    pub async fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.text(&all).await?;
        serde_json::from_str(&text).with_context(|| format!("flotilla {all:?} printed {text}"))
    }

    /// `flotilla status -o json`.
    pub async fn status(&self) -> anyhow::Result<Value> {
        self.json(&["status"]).await
    }

    /// `flotilla revisions -o json`.
    pub async fn revisions(&self) -> anyhow::Result<Value> {
        self.json(&["revisions"]).await
    }
}
