//! Building kustomizations with `kustomize build` or `kubectl kustomize`, confined to the
//! repository: remote bases are refused and local references must stay inside the root.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::RenderError;
use crate::location::SourceLocation;
use crate::repository::Repository;

/// The file names kustomize recognises, in its order of preference.
pub(crate) const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

const MAX_STDERR_BYTES: u64 = 16 * 1024;

/// The tool that builds kustomizations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kustomize {
    /// A standalone `kustomize` binary, run as `kustomize build DIR`.
    Standalone(PathBuf),
    /// `kubectl`, run as `kubectl kustomize DIR`.
    Kubectl(PathBuf),
    /// Neither was found; rendering a kustomization is an error saying so.
    Unavailable,
}

impl Kustomize {
    /// Looks for `kustomize`, then `kubectl`, on `PATH`.
    pub fn discover() -> Kustomize {
        Self::discover_in(&std::env::var_os("PATH").unwrap_or_default())
    }

    /// Looks for `kustomize`, then `kubectl`, in a `PATH`-style list of directories.
    pub fn discover_in(path: &OsStr) -> Kustomize {
        let find = |name: &str| {
            std::env::split_paths(path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        };
        if let Some(kustomize) = find("kustomize") {
            Kustomize::Standalone(kustomize)
        } else if let Some(kubectl) = find("kubectl") {
            Kustomize::Kubectl(kubectl)
        } else {
            Kustomize::Unavailable
        }
    }

    /// A short description for messages (`kubectl kustomize (/usr/bin/kubectl)`).
    pub fn describe(&self) -> String {
        match self {
            Kustomize::Standalone(path) => format!("kustomize build ({})", path.display()),
            Kustomize::Kubectl(path) => format!("kubectl kustomize ({})", path.display()),
            Kustomize::Unavailable => "no kustomize tool".to_owned(),
        }
    }

    /// Builds the kustomization in `dir` (canonical, inside `repo`) and returns its YAML.
    pub(crate) fn build(&self, repo: &Repository, dir: &Path) -> Result<String, RenderError> {
        let shown = repo.relative(dir);
        let location = SourceLocation::file(shown.clone());
        check_kustomization(repo, dir, &mut BTreeSet::new())?;
        let mut command = match self {
            Kustomize::Standalone(path) => {
                let mut command = Command::new(path);
                command.arg("build");
                command
            }
            Kustomize::Kubectl(path) => {
                let mut command = Command::new(path);
                command.arg("kustomize");
                command
            }
            Kustomize::Unavailable => return Err(RenderError::KustomizeMissing { location }),
        };
        // A clean environment keeps plugin and config variables of the host out of the build.
        command
            .arg(dir)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let limits = repo.limits();
        let output = run_bounded(
            command,
            limits.max_rendered_bytes as u64,
            limits.kustomize_timeout,
        )
        .map_err(|failure| match failure {
            RunFailure::Spawn(message) | RunFailure::Failed(message) => {
                RenderError::KustomizeFailed {
                    location: location.clone(),
                    tool: self.describe(),
                    message,
                }
            }
            RunFailure::Timeout => RenderError::KustomizeTimeout {
                location: location.clone(),
                timeout: limits.kustomize_timeout,
            },
            RunFailure::TooLarge => RenderError::TooLarge {
                location: location.clone(),
                size: limits.max_rendered_bytes + 1,
                limit: limits.max_rendered_bytes,
            },
        })?;
        String::from_utf8(output).map_err(|_| RenderError::KustomizeFailed {
            location,
            tool: self.describe(),
            message: "output is not UTF-8".to_owned(),
        })
    }
}

/// The kustomization file of `dir`, if it has one.
pub(crate) fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// Refuses remote resources and local references that leave the repository, following
/// referenced kustomizations recursively.
fn check_kustomization(
    repo: &Repository,
    dir: &Path,
    visited: &mut BTreeSet<PathBuf>,
) -> Result<(), RenderError> {
    if !visited.insert(dir.to_path_buf()) {
        return Ok(());
    }
    let Some(file) = kustomization_file(dir) else {
        return Ok(());
    };
    let shown = repo.relative(&file);
    let text = crate::repository::read_limited(&file, &shown, repo.limits())?;
    let document: Value =
        crate::yaml::parse_one(&text, &shown, repo.limits()).map_err(|p| RenderError::Yaml {
            location: p.location,
            message: p.message,
        })?;
    for field in ["resources", "bases", "components"] {
        let Some(Value::Array(entries)) = document.get(field) else {
            continue;
        };
        for entry in entries.iter().filter_map(Value::as_str) {
            let location = locate(&text, &shown, entry);
            let target = dir.join(entry);
            if looks_remote(entry, &target) {
                return Err(RenderError::RemoteResource {
                    location,
                    resource: entry.to_owned(),
                });
            }
            let Ok(canonical) = target.canonicalize() else {
                continue; // kustomize reports a missing resource itself.
            };
            if !canonical.starts_with(repo.root()) {
                return Err(RenderError::Escape {
                    location,
                    path: entry.to_owned(),
                });
            }
            if canonical.is_dir() {
                check_kustomization(repo, &canonical, visited)?;
            }
        }
    }
    Ok(())
}

/// Kustomize fetches URLs, `git@` addresses and `host.tld/org/repo` paths; none of that
/// may happen while rendering, which must depend only on the commit.
fn looks_remote(entry: &str, local: &Path) -> bool {
    entry.contains("://")
        || entry.starts_with("git@")
        || entry.contains("?ref=")
        || (!local.exists()
            && entry.split_once('/').is_some_and(|(host, _)| {
                host.contains('.')
                    && host != "."
                    && host != ".."
                    && ![".yaml", ".yml", ".json"]
                        .iter()
                        .any(|ext| host.ends_with(ext))
            }))
}

fn locate(text: &str, file: &str, needle: &str) -> SourceLocation {
    text.lines()
        .position(|line| line.contains(needle))
        .map(|index| {
            let line = &text.lines().nth(index).unwrap_or_default();
            let column = line
                .find(needle)
                .map_or(1, |c| line[..c].chars().count() + 1);
            SourceLocation::at(
                file,
                u32::try_from(index + 1).unwrap_or(u32::MAX),
                u32::try_from(column).unwrap_or(u32::MAX),
            )
        })
        .unwrap_or_else(|| SourceLocation::file(file))
}

enum RunFailure {
    Spawn(String),
    Failed(String),
    Timeout,
    TooLarge,
}

/// Runs a command, reading at most `max_stdout` bytes of output, killing it after `timeout`.
fn run_bounded(
    mut command: Command,
    max_stdout: u64,
    timeout: Duration,
) -> Result<Vec<u8>, RunFailure> {
    let deadline = Instant::now() + timeout;
    let mut child = command
        .spawn()
        .map_err(|e| RunFailure::Spawn(e.to_string()))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (stdout_tx, stdout_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(stdout) = stdout {
            let _ = stdout.take(max_stdout + 1).read_to_end(&mut bytes);
        }
        let _ = stdout_tx.send(bytes);
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(stderr) = stderr {
            let _ = stderr.take(MAX_STDERR_BYTES).read_to_end(&mut bytes);
        }
        bytes
    });
    let outcome = match stdout_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(bytes) if bytes.len() as u64 > max_stdout => Err(RunFailure::TooLarge),
        Ok(bytes) => wait_until(&mut child, deadline).map(|status| (status, bytes)),
        Err(_) => Err(RunFailure::Timeout),
    };
    if outcome.is_err() {
        // The process may be blocked writing or still working: stop it.
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = stderr_reader.join().unwrap_or_default();
    let (status, stdout) = outcome?;
    if status.success() {
        return Ok(stdout);
    }
    let message = String::from_utf8_lossy(&stderr).trim().to_owned();
    Err(RunFailure::Failed(if message.is_empty() {
        format!("exited with {status}")
    } else {
        message
    }))
}

fn wait_until(child: &mut Child, deadline: Instant) -> Result<ExitStatus, RunFailure> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => return Err(RunFailure::Timeout),
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(RunFailure::Spawn(e.to_string())),
        }
    }
}
