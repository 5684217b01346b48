//! Helm charts served the two ways a chart bundle can name its source: from an OCI registry
//! (the pinned CNCF distribution registry `scripts/k8s-build` builds, started on loopback) and
//! from an HTTP chart repository (`index.yaml` plus packaged charts, served here in-process so a
//! test can count what was fetched). Both speak plain HTTP on 127.0.0.1 and may require basic
//! auth, so a test exercises the real protocols and credentials without reaching the Internet.
//! Charts are packaged, indexed and pushed with the pinned helm.
//!
//! A test needing the registry asks for it with [`registry_or_skip`]: missing, it fails under
//! `CI=true` and is skipped loudly otherwise, as with helm.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use sha2::Digest;
use tempfile::TempDir;

use crate::process::Process;

/// The directory holding the built registry, or why there is none (`scripts/k8s-build --check
/// registry`, which never builds), found once per process.
pub fn registry_dir() -> Result<&'static Path, &'static str> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(find_registry)
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(String::as_str)
}

fn find_registry() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(root.join("scripts/k8s-build"))
        .args(["--check", "registry"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run scripts/k8s-build --check registry: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().last() {
        Some(bin) if output.status.success() && Path::new(bin).join("registry").is_file() => {
            Ok(PathBuf::from(bin))
        }
        _ => Err(format!(
            "the OCI registry is not built; run scripts/k8s-build registry: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// The pinned OCI registry, or `None` after saying loudly why `test` is skipped. Under
/// `CI=true` a missing registry fails the test instead.
pub fn registry_or_skip(test: &str) -> Option<PathBuf> {
    match registry_dir() {
        Ok(dir) => Some(dir.join("registry")),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: {why}, and CI=true requires it")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// A user name and password that a server requires (HTTP basic auth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl BasicAuth {
    /// `user` with `password`.
    pub fn new(user: &str, password: &str) -> BasicAuth {
        BasicAuth {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// The `Authorization` header value a client sends.
    pub fn header(&self) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", self.user, self.password))
        )
    }
}

/// Empty helm homes (`HELM_CONFIG_HOME`, `HELM_CACHE_HOME`, `HELM_DATA_HOME`) for the pinned
/// helm, so nothing a test does reads or writes the user's helm configuration, registry logins
/// or chart caches. Removed when dropped.
pub struct HelmHome {
    dir: TempDir,
}

impl HelmHome {
    /// Fresh, empty homes.
    pub fn new() -> anyhow::Result<HelmHome> {
        Ok(HelmHome {
            dir: tempfile::tempdir()?,
        })
    }

    /// The directory holding the three homes.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A command running the pinned helm in these homes; fails when helm is not built.
    pub fn helm(&self) -> anyhow::Result<Command> {
        let dir = crate::helm::helm_dir().map_err(|why| anyhow::anyhow!("{why}"))?;
        let mut command = Command::new(dir.join("helm"));
        command
            .env("HELM_CONFIG_HOME", self.dir.path().join("config"))
            .env("HELM_CACHE_HOME", self.dir.path().join("cache"))
            .env("HELM_DATA_HOME", self.dir.path().join("data"))
            .stdin(Stdio::null());
        Ok(command)
    }
}

/// Runs `command` (a helm invocation) to its end; fails with its output if it fails.
pub fn run(mut command: Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Packages the chart in `chart_dir` into `out_dir` with the pinned helm (`helm package`) and
/// returns the `.tgz` it wrote.
pub fn package(chart_dir: &Path, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let home = HelmHome::new()?;
    let mut command = home.helm()?;
    command
        .arg("package")
        .arg(chart_dir)
        .arg("--destination")
        .arg(out_dir);
    let stdout = run(command)?;
    // "Successfully packaged chart and saved it to: PATH"
    let path = stdout
        .lines()
        .find_map(|line| {
            line.split_once("saved it to: ")
                .map(|(_, path)| path.trim())
        })
        .with_context(|| format!("helm package named no file: {stdout}"))?;
    Ok(PathBuf::from(path))
}

/// The sha256 of the file at `path`, in hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// A running CNCF distribution registry on 127.0.0.1, plain HTTP, storing in a temporary
/// directory; killed when dropped.
pub struct OciRegistry {
    process: Process,
    address: String,
    auth: Option<BasicAuth>,
    _dir: TempDir,
}

impl OciRegistry {
    /// Starts a registry anyone may push to and pull from, and waits until it answers.
    pub async fn start() -> anyhow::Result<OciRegistry> {
        Self::start_with(None).await
    }

    /// Starts a registry that requires `user` and `password` (an htpasswd file with their
    /// bcrypt hash) for every request, and waits until it answers.
    pub async fn start_with_basic_auth(user: &str, password: &str) -> anyhow::Result<OciRegistry> {
        Self::start_with(Some(BasicAuth::new(user, password))).await
    }

    async fn start_with(auth: Option<BasicAuth>) -> anyhow::Result<OciRegistry> {
        let bin = registry_dir()
            .map_err(|why| anyhow::anyhow!("{why}"))?
            .join("registry");
        let dir = tempfile::tempdir()?;
        // The `http` section comes last: each try below appends its address to it.
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n",
            yaml_string(&dir.path().join("storage").to_string_lossy()),
        );
        if let Some(auth) = &auth {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(
                &htpasswd,
                format!(
                    "{}:{}\n",
                    auth.user,
                    bcrypt::hash(&auth.password, BCRYPT_COST)?
                ),
            )?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: flotilla-test\n    path: {}\n",
                yaml_string(&htpasswd.to_string_lossy())
            ));
        }
        // The secret signs upload state between requests; any value does for one instance.
        config.push_str(&format!(
            "http:\n  secret: {}\n",
            hex::encode(sha2::Sha256::digest(
                dir.path().to_string_lossy().as_bytes()
            ))
        ));
        // The port is free when picked but may be taken before the registry binds it: then it
        // exits at once and another port is tried.
        let mut last = String::new();
        for _ in 0..3 {
            let address = crate::ports::free_address()?;
            let file = dir.path().join("config.yml");
            std::fs::write(&file, format!("{config}  addr: {address}\n"))?;
            let mut command = Command::new(&bin);
            command
                .arg("serve")
                .arg(&file)
                // No traces are exported (the default would send them to an OTLP collector).
                .env("OTEL_TRACES_EXPORTER", "none");
            let mut process = Process::spawn("registry", command)?;
            match ready(&mut process, &address).await {
                Ok(()) => {
                    return Ok(OciRegistry {
                        process,
                        address,
                        auth,
                        _dir: dir,
                    });
                }
                Err(e) => {
                    let exited = process.try_exit()?.is_some();
                    last = format!("{e:#}");
                    let taken = |text: &str| text.contains("address already in use");
                    if !(exited && (taken(&last) || taken(&process.stderr_tail()))) {
                        break;
                    }
                }
            }
        }
        bail!("the registry did not start: {last}")
    }

    /// `127.0.0.1:PORT`, as `oci://` references name it.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `oci://127.0.0.1:PORT/repository`.
    pub fn reference(&self, repository: &str) -> String {
        format!("oci://{}/{repository}", self.address)
    }

    /// The credentials it requires, if any.
    pub fn auth(&self) -> Option<&BasicAuth> {
        self.auth.as_ref()
    }

    /// Pushes the packaged chart `chart_tgz` under `repository` with the pinned helm (`helm
    /// push CHART.tgz oci://127.0.0.1:PORT/REPOSITORY --plain-http`, with the registry's
    /// credentials when it requires some); the chart lands at `REPOSITORY/<chart name>`,
    /// tagged with its version.
    pub fn push(&self, chart_tgz: &Path, repository: &str) -> anyhow::Result<()> {
        let home = HelmHome::new()?;
        let mut command = home.helm()?;
        command
            .arg("push")
            .arg(chart_tgz)
            .arg(self.reference(repository))
            .arg("--plain-http");
        if let Some(auth) = &self.auth {
            command
                .args(["--username", &auth.user])
                .args(["--password", &auth.password]);
        }
        run(command)
            .with_context(|| format!("registry stderr:\n{}", self.process.stderr_tail()))?;
        Ok(())
    }

    /// What the registry printed on stderr last (its log), for a failing test.
    pub fn log_tail(&self) -> String {
        self.process.stderr_tail()
    }
}

/// Waits until the registry at `address` answers `/v2/` (200, or 401 when it requires
/// credentials), failing at once if it exits.
async fn ready(process: &mut Process, address: &str) -> anyhow::Result<()> {
    let url = format!("http://{address}/v2/");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = process.try_exit()? {
            bail!(
                "the registry exited ({status}); stderr:\n{}",
                process.stderr_tail()
            );
        }
        let seen = match crate::http::request("GET", &url, &[], Vec::new()).await {
            Ok(answer) if answer.status == 200 || answer.status == 401 => return Ok(()),
            Ok(answer) => format!("{} {}", answer.status, answer.body),
            Err(e) => format!("{e:#}"),
        };
        if tokio::time::Instant::now() > deadline {
            bail!(
                "GET {url} did not answer within 30 s (last: {seen}); stderr:\n{}",
                process.stderr_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP chart repository on 127.0.0.1 serving the files of one directory (packaged charts
/// and the `index.yaml` the pinned helm made for them), in a background task of the runtime
/// that started it; stopped when dropped. GET only; it counts the requests for each path.
///
/// Helm runs as a child process that this task must answer: a test waiting for helm must not
/// block the runtime's only thread (use a multi-threaded runtime).
pub struct ChartRepo {
    url: String,
    dir: PathBuf,
    requests: Arc<Mutex<BTreeMap<String, u64>>>,
    server: tokio::task::JoinHandle<()>,
}

impl ChartRepo {
    /// Serves `dir` (packaged charts, `*.tgz`) after writing its `index.yaml` (`helm repo
    /// index DIR --url http://127.0.0.1:PORT`).
    pub async fn start(dir: &Path) -> anyhow::Result<ChartRepo> {
        Self::start_with(dir, None).await
    }

    /// Serves `dir` as [`ChartRepo::start`] does, answering 401 to any request without
    /// `user` and `password`.
    pub async fn start_with_basic_auth(
        dir: &Path,
        user: &str,
        password: &str,
    ) -> anyhow::Result<ChartRepo> {
        Self::start_with(dir, Some(BasicAuth::new(user, password))).await
    }

    async fn start_with(dir: &Path, auth: Option<BasicAuth>) -> anyhow::Result<ChartRepo> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let dir = dir.to_path_buf();
        let requests = Arc::new(Mutex::new(BTreeMap::new()));
        let state = Arc::new(Served {
            dir: dir.clone(),
            authorization: auth.as_ref().map(BasicAuth::header),
            requests: Arc::clone(&requests),
        });
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors, say: try again shortly rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(state.answer(&request)) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let repo = ChartRepo {
            url,
            dir,
            requests,
            server,
        };
        repo.reindex()?;
        Ok(repo)
    }

    /// Rewrites `index.yaml` from the charts now in the directory (after a test added one).
    pub fn reindex(&self) -> anyhow::Result<()> {
        let home = HelmHome::new()?;
        let mut command = home.helm()?;
        command
            .args(["repo", "index"])
            .arg(&self.dir)
            .args(["--url", &self.url]);
        run(command)?;
        Ok(())
    }

    /// `http://127.0.0.1:PORT`, the repository's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many requests were made for `path` (`/index.yaml`, `/demo-0.1.0.tgz`), whatever
    /// the answer.
    pub fn requests(&self, path: &str) -> u64 {
        self.requests.lock().get(path).copied().unwrap_or(0)
    }

    /// How many requests were made in all.
    pub fn total_requests(&self) -> u64 {
        self.requests.lock().values().sum()
    }
}

impl Drop for ChartRepo {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What the chart repository's connections share.
struct Served {
    dir: PathBuf,
    /// The `Authorization` header required, if any.
    authorization: Option<String>,
    requests: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Served {
    fn answer(&self, request: &http::Request<Incoming>) -> http::Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        *self.requests.lock().entry(path.clone()).or_default() += 1;
        if let Some(expected) = &self.authorization {
            let given = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if given != Some(expected.as_str()) {
                return reply(
                    http::StatusCode::UNAUTHORIZED,
                    &[(
                        http::header::WWW_AUTHENTICATE,
                        "Basic realm=\"flotilla-test\"",
                    )],
                    Bytes::new(),
                );
            }
        }
        if request.method() != http::Method::GET {
            return reply(
                http::StatusCode::METHOD_NOT_ALLOWED,
                &[(http::header::ALLOW, "GET")],
                Bytes::new(),
            );
        }
        // One file of the directory: no subdirectories, no hidden files, nothing outside it.
        let name = path.trim_start_matches('/');
        if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return reply(http::StatusCode::NOT_FOUND, &[], Bytes::new());
        }
        match std::fs::read(self.dir.join(name)) {
            Ok(bytes) => {
                let kind = if name.ends_with(".yaml") {
                    "application/x-yaml"
                } else if name.ends_with(".tgz") {
                    "application/gzip"
                } else {
                    "application/octet-stream"
                };
                reply(
                    http::StatusCode::OK,
                    &[(http::header::CONTENT_TYPE, kind)],
                    Bytes::from(bytes),
                )
            }
            Err(_) => reply(http::StatusCode::NOT_FOUND, &[], Bytes::new()),
        }
    }
}

fn reply(
    status: http::StatusCode,
    headers: &[(http::header::HeaderName, &'static str)],
    body: Bytes,
) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(body));
    *response.status_mut() = status;
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name, http::HeaderValue::from_static(value));
    }
    response
}

/// `text` as a double-quoted YAML string.
fn yaml_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// The bcrypt cost of the htpasswd entries: the lowest bcrypt allows, as the registry hashes
/// the password of every request with it.
const BCRYPT_COST: u32 = 4;
