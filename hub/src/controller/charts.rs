//! Fetching remote charts for chart bundles: only from the chart repositories and OCI
//! registries the hub's configuration allows (`chartSources`), with credentials read from the
//! files it names (never logged, never on a command line), each fetch bounded in time and
//! size, and every package kept in `DATA_DIR/charts` so a chart version is fetched once.
//!
//! The pinned helm fetches (`helm pull`; it speaks both chart repositories and OCI
//! registries) in a scratch home of its own, with an environment holding nothing of the hub's.
//! Rendering then runs offline in its sandbox on the fetched package: a chart version is
//! treated as immutable, as chart repositories and registries publish them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use flotilla_core::ChartFetcher;

/// Longest one fetch may take, by default.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest package kept (charts are kilobytes; this bounds a hostile source), the size the
/// render's package check accepts.
pub const DEFAULT_MAX_CHART_BYTES: u64 = 16 * 1024 * 1024;

pub use crate::config::ChartSource;

/// Fetches remote charts with the pinned helm into a cache.
#[derive(Debug, Clone)]
pub struct HelmFetcher {
    /// One fetch at a time: parallel renders asking for the same chart wait for the first
    /// fetch and then find it cached.
    fetching: std::sync::Arc<std::sync::Mutex<()>>,
    helm: Option<PathBuf>,
    cache: PathBuf,
    sources: Vec<ChartSource>,
    timeout: Duration,
    max_bytes: u64,
}

impl HelmFetcher {
    /// A fetcher allowing `sources`, keeping packages in `cache`, running `helm` (none: every
    /// fetch fails saying helm is missing).
    pub fn new(helm: Option<PathBuf>, cache: PathBuf, sources: Vec<ChartSource>) -> Self {
        HelmFetcher {
            fetching: std::sync::Arc::default(),
            helm,
            cache,
            sources,
            timeout: DEFAULT_FETCH_TIMEOUT,
            max_bytes: DEFAULT_MAX_CHART_BYTES,
        }
    }

    /// The same with another time bound per fetch.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn pull(
        &self,
        source: &ChartSource,
        repo: &str,
        name: &str,
        version: &str,
    ) -> Result<PathBuf, String> {
        let helm = self
            .helm
            .as_deref()
            .ok_or("helm is not on PATH (or given with --helm)")?;
        std::fs::create_dir_all(&self.cache).map_err(|e| format!("the chart cache: {e}"))?;
        let scratch = tempfile::Builder::new()
            .prefix(".fetch-")
            .tempdir_in(&self.cache)
            .map_err(|e| format!("the chart cache: {e}"))?;
        let home = scratch.path();
        let destination = home.join("out");
        std::fs::create_dir_all(&destination).map_err(|e| e.to_string())?;
        let mut command = helm_command(helm, home);
        let credentials = read_credentials(source)?;
        if let Some(oci) = repo.strip_prefix("oci://") {
            if let Some((user, password)) = &credentials {
                // The registry's credentials go in helm's registry config file, as `helm
                // registry login` writes it, never on the command line.
                let host = oci.split('/').next().unwrap_or_default();
                let auth =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                let config = serde_json::json!({"auths": {host: {"auth": auth}}});
                write_private(&home.join("registry.json"), config.to_string().as_bytes())?;
            }
            command
                .arg("pull")
                .arg(format!("{repo}/{name}"))
                .args(["--version", version]);
            if source.plain_http {
                command.arg("--plain-http");
            }
        } else {
            // A named repository in a private repositories file carries the credentials, so
            // they never reach the command line; `--repo` does for anonymous sources.
            match &credentials {
                Some((user, password)) => {
                    let entry = serde_json::json!({
                        "apiVersion": "",
                        "generated": "0001-01-01T00:00:00Z",
                        "repositories": [{
                            "name": "source",
                            "url": repo,
                            "username": user,
                            "password": password,
                            "caFile": source.ca_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                            "pass_credentials_all": false,
                        }],
                    });
                    write_private(
                        &home.join("repositories.yaml"),
                        entry.to_string().as_bytes(),
                    )?;
                    let mut update = helm_command(helm, home);
                    update.args(["repo", "update", "source"]);
                    run(&mut update, self.timeout)?;
                    command
                        .arg("pull")
                        .arg(format!("source/{name}"))
                        .args(["--version", version]);
                }
                None => {
                    command
                        .arg("pull")
                        .arg(name)
                        .args(["--repo", repo, "--version", version]);
                }
            }
        }
        if let Some(ca) = &source.ca_file {
            command.arg("--ca-file").arg(ca);
        }
        command.arg("--destination").arg(&destination);
        run(&mut command, self.timeout)?;
        let package = std::fs::read_dir(&destination)
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|e| e == "tgz"))
            .ok_or("helm pull wrote no package")?;
        let size = std::fs::metadata(&package)
            .map_err(|e| e.to_string())?
            .len();
        if size > self.max_bytes {
            return Err(format!(
                "the package is {size} bytes, over the limit of {}",
                self.max_bytes
            ));
        }
        let kept = self.cached(repo, name, version);
        std::fs::rename(&package, &kept).map_err(|e| format!("the chart cache: {e}"))?;
        let digest =
            flotilla_core::ContentHash::of(&std::fs::read(&kept).map_err(|e| e.to_string())?);
        tracing::info!(%repo, chart = %name, %version, bytes = size, digest = %digest, "chart fetched");
        Ok(kept)
    }

    /// Where the package of `name` `version` from `repo` is kept.
    fn cached(&self, repo: &str, name: &str, version: &str) -> PathBuf {
        let key = flotilla_core::ContentHash::of(format!("{repo}\n{name}\n{version}").as_bytes());
        self.cache
            .join(format!("{name}-{version}-{}.tgz", key.short()))
    }
}

impl ChartFetcher for HelmFetcher {
    fn fetch(&self, repo: &str, name: &str, version: &str) -> Result<PathBuf, String> {
        // The most specific source: its credentials are the ones meant for this path.
        let source = self
            .sources
            .iter()
            .filter(|source| source.covers(repo))
            .max_by_key(|source| source.url.trim_end_matches('/').len())
            .ok_or_else(|| {
                format!(
                    "{repo} is not among the hub's chart sources; an operator allows it under \
                     `chartSources` in the hub's configuration"
                )
            })?;
        let kept = self.cached(repo, name, version);
        let _one_at_a_time = self
            .fetching
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.is_file() {
            return Ok(kept);
        }
        self.pull(source, repo, name, version)
    }
}

/// `helm` in the scratch `home`, with an environment holding nothing of the hub's.
fn helm_command(helm: &Path, home: &Path) -> Command {
    let mut command = Command::new(helm);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("HELM_REGISTRY_CONFIG", home.join("registry.json"))
        .env("HELM_REPOSITORY_CONFIG", home.join("repositories.yaml"))
        .env("HELM_REPOSITORY_CACHE", home.join("cache/repository"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// The user name and password a source names, read now.
fn read_credentials(source: &ChartSource) -> Result<Option<(String, String)>, String> {
    let read = |path: &Path, what: &str| {
        std::fs::read_to_string(path)
            .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| format!("reading the {what} file {}: {e}", path.display()))
    };
    match (&source.username_file, &source.password_file) {
        (None, None) => Ok(None),
        (Some(user), Some(password)) => Ok(Some((
            read(user, "user name")?,
            read(password, "password")?,
        ))),
        _ => Err("a chart source needs both usernameFile and passwordFile, or neither".to_owned()),
    }
}

/// Writes a file only its owner reads.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Runs a helm command to its end within `timeout`; its error output is the error.
fn run(command: &mut Command, timeout: Duration) -> Result<(), String> {
    let mut child = command.spawn().map_err(|e| format!("running helm: {e}"))?;
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut text = String::new();
        if let Some(stderr) = stderr {
            let _ = stderr.take(16 * 1024).read_to_string(&mut text);
        }
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("helm did not finish within {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for helm: {e}")),
        }
    };
    let text = reader.join().unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(text
            .lines()
            .map(|line| line.strip_prefix("Error: ").unwrap_or(line))
            .collect::<Vec<_>>()
            .join(" ")
            .trim()
            .to_owned())
    }
}
