//! A real `flotilla-hub` process following a Git repository made with git2, and the real
//! `flotilla` binary run against it.
#![allow(unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

/// The hub binary, built next to this test's executable (`cargo build -p flotilla-hub`, or
/// any workspace build, puts it there).
pub fn hub_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target directory")?;
    let hub = dir.join("flotilla-hub");
    if !hub.is_file() {
        bail!(
            "{} is missing: build it with `cargo build -p flotilla-hub` (a workspace test run builds it)",
            hub.display()
        );
    }
    Ok(hub)
}

pub use flotilla_testkit::git::GitRepo;

/// A hub process, killed when dropped.
pub struct HubProcess {
    child: Child,
    pub api: String,
    _data: TempDir,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HubProcess {
    /// Starts a single-node hub following `repo` (polling every 200 ms) with `clusters`.
    pub fn start(repo: &GitRepo, clusters: &Path) -> Result<Self> {
        let data = tempfile::tempdir()?;
        let mut child = Command::new(hub_binary()?)
            .env("PATH", flotilla_testkit::helm::path_with_helm())
            .args(["--id", "1", "--listen", "127.0.0.1:0"])
            .args([
                "--api-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--repo", &repo.url(), "--poll-interval", "200ms"])
            // The CLI's commands against a hub; TLS and tokens have their own tests.
            .arg("--insecure")
            .arg("--clusters")
            .arg(clusters)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut api = None;
        for line in lines.by_ref() {
            let line = line?;
            if let Some(address) = line.strip_prefix("api listening on ") {
                api = Some(address.trim().to_owned());
                break;
            }
        }
        // Keep draining stdout so the hub never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let Some(api) = api else {
            let _ = child.kill();
            bail!("flotilla-hub exited without printing its API address");
        };
        Ok(HubProcess {
            child,
            api,
            _data: data,
        })
    }

    /// Runs `flotilla ARGS --hub API`.
    pub fn flotilla(&self, args: &[&str]) -> Result<Output> {
        Ok(Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(args)
            .env("FLOTILLA_HUB", &self.api)
            .env("FLOTILLA_INSECURE", "1")
            .env("FLOTILLA_CONFIG", "/nonexistent/flotilla/config.yaml")
            .env("PATH", flotilla_testkit::helm::path_with_helm())
            .output()?)
    }

    /// Runs `flotilla ARGS -o json` and parses its output; fails on a non-zero exit.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let output = self.flotilla(&all)?;
        if !output.status.success() {
            bail!(
                "flotilla {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// Runs `flotilla ARGS` and returns its stdout; fails on a non-zero exit.
    pub fn text(&self, args: &[&str]) -> Result<String> {
        let output = self.flotilla(args)?;
        if !output.status.success() {
            bail!(
                "flotilla {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8(output.stdout)?)
    }

    /// Polls `flotilla ARGS -o json` until `check` holds.
    pub fn wait_json(
        &self,
        what: &str,
        args: &[&str],
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.json(args)?;
            if check(&value) {
                return Ok(value);
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}; last output: {value:#}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
