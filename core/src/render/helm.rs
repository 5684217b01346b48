//! Rendering chart bundles with `helm template`, confined like kustomize: no network, a
//! read-only checkout, a scrubbed environment, and CPU, memory and time limits.
//!
//! Before helm runs, the chart is checked so that a render depends on the commit and the
//! values alone and never misleads:
//! - its `Chart.yaml` parses, and declares the version the bundle asks for;
//! - every dependency is vendored in `charts/` (a directory or a packaged `.tgz`): nothing is
//!   fetched;
//! - no template calls `lookup`, which reads a live cluster: `helm template` answers it with
//!   an empty result, so the chart would silently render something else than it does when
//!   installed.
//!
//! Its output is kept in a process-wide cache keyed by the digest of everything it depends on
//! (helm, every file of the chart, release, namespace, Kubernetes version, values): a commit
//! that leaves a chart and a cluster's values alone, or a re-render after a cluster joins,
//! runs helm only for what changed.
//!
//! After it runs, an object that is a hook (`helm.sh/hook`) is refused, naming its template:
//! hooks run at moments of a release's life (before an install, after an upgrade) that a
//! declarative apply does not have, and applying them as ordinary objects would run them on
//! every sync. Test hooks are left out of the output (`--skip-tests`): they belong to
//! `helm test`.

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use super::RenderError;
use super::run::{RunFailure, run_bounded};
use super::sandbox::{self, Bounds};
use crate::hash::ContentHash;
use crate::inventory::Capabilities;
use crate::location::SourceLocation;
use crate::repository::{Repository, read_limited};
use crate::spec::{Bundle, HelmChart, RemoteChart};
use crate::yaml::parse_documents;

/// The Kubernetes version templates see (`.Capabilities.KubeVersion`) for a cluster whose
/// agent has not reported its own yet, and offline (lint, render): the newest whose schemas
/// Flotilla ships. Its API versions are then helm's built-in set for that version.
pub const DEFAULT_KUBE_VERSION: &str = "v1.37.0";

/// The annotation that makes an object a hook.
const HOOK_ANNOTATION: &str = "helm.sh/hook";

/// Packaged subcharts larger than this are refused before they are read.
const MAX_PACKAGED_CHART_BYTES: u64 = 16 * 1024 * 1024;

/// Most bytes of `helm template` output the cache keeps; the oldest go first.
const CACHE_BYTES: usize = 256 * 1024 * 1024;

/// The tool that renders charts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Helm {
    /// A `helm` binary (v4), run as `helm template`.
    Binary(PathBuf),
    /// None was found; rendering a chart is an error saying so.
    Unavailable,
}

impl Helm {
    /// Looks for `helm` on `PATH`.
    pub fn discover() -> Helm {
        Self::discover_in(&std::env::var_os("PATH").unwrap_or_default())
    }

    /// Looks for `helm` in a `PATH`-style list of directories (relative entries are skipped:
    /// renders run in a checkout, where they would name the repository's files).
    pub fn discover_in(path: &OsStr) -> Helm {
        std::env::split_paths(path)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join("helm"))
            .find(|candidate| candidate.is_file())
            .map_or(Helm::Unavailable, Helm::Binary)
    }

    /// A short description for messages (`helm (/usr/bin/helm)`).
    pub fn describe(&self) -> String {
        match self {
            Helm::Binary(path) => format!("helm ({})", path.display()),
            Helm::Unavailable => "no helm".to_owned(),
        }
    }

    /// Runs `helm template` on `chart` with `values` (a JSON document) and returns its YAML,
    /// or the cached output of a run with the same inputs.
    pub(crate) fn template(
        &self,
        repo: &Repository,
        chart: &Chart,
        release: &str,
        namespace: &str,
        capabilities: Option<&Capabilities>,
        values: Vec<u8>,
    ) -> Result<Arc<str>, RenderError> {
        let location = SourceLocation::file(chart.display.clone());
        let Helm::Binary(program) = self else {
            return Err(RenderError::HelmMissing { location });
        };
        if !program.is_absolute() || !chart.dir.is_absolute() {
            return Err(RenderError::HelmFailed {
                location,
                message: "helm and the chart must be named by absolute paths (renders run in the checkout)".to_owned(),
            });
        }
        let kube_version = capabilities.map_or(DEFAULT_KUBE_VERSION, |c| c.kube_version.as_str());
        // Served group versions, as helm's `--api-versions` takes them (it adds its built-in
        // set for the Kubernetes version).
        let api_versions = capabilities
            .map(|c| c.api_versions.join(","))
            .unwrap_or_default();
        let key = {
            let mut hasher = blake3::Hasher::new();
            for part in [
                program.as_os_str().as_encoded_bytes(),
                chart.digest.as_bytes(),
                release.as_bytes(),
                namespace.as_bytes(),
                kube_version.as_bytes(),
                api_versions.as_bytes(),
                &values,
            ] {
                hasher.update(&(part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
            ContentHash::from_bytes(*hasher.finalize().as_bytes())
        };
        if let Some(output) = cached(&key) {
            return Ok(output);
        }
        let limits = repo.limits();
        let bounds = Bounds {
            memory_bytes: limits.render_memory_bytes,
            cpu_seconds: limits.render_timeout.as_secs().max(1),
        };
        let mut args: Vec<OsString> = [
            OsStr::new("template"),
            OsStr::new(release),
            chart.dir.as_os_str(),
            OsStr::new("--namespace"),
            OsStr::new(namespace),
            OsStr::new("--kube-version"),
            OsStr::new(kube_version),
            OsStr::new("--include-crds"),
            OsStr::new("--skip-tests"),
            OsStr::new("--values"),
            OsStr::new("-"),
        ]
        .into_iter()
        .map(OsStr::to_owned)
        .collect();
        if !api_versions.is_empty() {
            args.push("--api-versions".into());
            args.push(api_versions.into());
        }
        let mut command =
            sandbox::confine(limits.render_sandbox, bounds, repo.root(), program, &args).map_err(
                |reason| RenderError::SandboxUnavailable {
                    location: location.clone(),
                    reason,
                },
            )?;
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = run_bounded(
            command,
            Some(values),
            limits.max_rendered_bytes as u64,
            limits.render_timeout,
            repo.cancel(),
        )
        .map_err(|failure| match failure {
            RunFailure::Spawn(message) => RenderError::HelmFailed {
                location: location.clone(),
                message,
            },
            RunFailure::Failed(message) => RenderError::HelmFailed {
                location: chart.locate_message(&message),
                message: tidy(&message),
            },
            RunFailure::Cancelled => RenderError::Cancelled {
                location: location.clone(),
            },
            RunFailure::Timeout => RenderError::HelmTimeout {
                location: location.clone(),
                timeout: limits.render_timeout,
            },
            RunFailure::TooLarge => RenderError::TooLarge {
                location: location.clone(),
                size: limits.max_rendered_bytes + 1,
                limit: limits.max_rendered_bytes,
            },
        })?;
        let output: Arc<str> = String::from_utf8(output)
            .map_err(|_| RenderError::HelmFailed {
                location,
                message: "output is not UTF-8".to_owned(),
            })?
            .into();
        keep(key, output.clone());
        Ok(output)
    }
}

/// Outputs of `helm template` by the digest of their inputs, oldest first out.
#[derive(Default)]
struct OutputCache {
    entries: HashMap<ContentHash, Arc<str>>,
    order: VecDeque<ContentHash>,
    bytes: usize,
}

fn cache() -> &'static Mutex<OutputCache> {
    static CACHE: OnceLock<Mutex<OutputCache>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

fn cached(key: &ContentHash) -> Option<Arc<str>> {
    let cache = cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    cache.entries.get(key).cloned()
}

fn keep(key: ContentHash, output: Arc<str>) {
    if output.len() > CACHE_BYTES {
        return;
    }
    let mut cache = cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.entries.contains_key(&key) {
        return;
    }
    while cache.bytes + output.len() > CACHE_BYTES {
        let Some(oldest) = cache.order.pop_front() else {
            break;
        };
        if let Some(gone) = cache.entries.remove(&oldest) {
            cache.bytes -= gone.len();
        }
    }
    cache.bytes += output.len();
    cache.order.push_back(key);
    cache.entries.insert(key, output);
}

/// Where charts from chart repositories and registries come from: the hub's fetcher (its
/// allowed sources, credentials, a cache), or packaged charts in a directory offline.
pub trait ChartFetcher: Send + Sync + std::fmt::Debug {
    /// The packaged chart (`.tgz`) of `name` at `version` from `repo`, or why not (a message
    /// naming no credential).
    fn fetch(&self, repo: &str, name: &str, version: &str) -> Result<PathBuf, String>;
}

/// Packaged charts in a directory, `NAME-VERSION.tgz` as `helm pull` writes them: how `flotilla
/// lint` and `flotilla render` (offline) get a remote chart.
#[derive(Debug, Clone)]
pub struct ChartDir(pub PathBuf);

impl ChartFetcher for ChartDir {
    fn fetch(&self, repo: &str, name: &str, version: &str) -> Result<PathBuf, String> {
        let file = self.0.join(format!("{name}-{version}.tgz"));
        if file.is_file() {
            Ok(file)
        } else {
            Err(format!(
                "{} is not there; `helm pull {name} --repo {repo} --version {version} -d {}` \
                 (or `helm pull {repo}/{name} --version {version}` for oci://) puts it there",
                file.display(),
                self.0.display()
            ))
        }
    }
}

/// The chart a bundle rendered from, as its revision records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartUsed {
    /// Its directory in the repository, or `REPO/NAME:VERSION` for a remote one.
    pub source: String,
    /// The version its `Chart.yaml` declares.
    pub version: String,
    /// The digest of its files (a remote one: of its package), fetched dependencies included.
    pub digest: ContentHash,
}

/// A chart checked for rendering.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    /// Its directory, canonical, inside the repository.
    pub(crate) dir: PathBuf,
    /// Its directory relative to the repository, for messages.
    pub(crate) display: String,
    /// The name `Chart.yaml` declares: helm's messages and `# Source:` lines start with it.
    pub(crate) name: String,
    /// The version its `Chart.yaml` declares.
    pub(crate) version: String,
    /// The digest of every file of the chart (paths and contents), subcharts included.
    pub(crate) digest: ContentHash,
    /// The copy `dir` points into when dependencies were fetched: held (never read) so it
    /// lives as long as the chart, and removed with it.
    _scratch: Option<Arc<tempfile::TempDir>>,
}

impl Chart {
    /// What a revision records of it.
    pub(crate) fn used(&self) -> ChartUsed {
        ChartUsed {
            source: self.display.clone(),
            version: self.version.clone(),
            digest: self.digest,
        }
    }

    /// Loads and checks the chart of a chart bundle: its directory in the repository, or the
    /// package `charts` fetches for a remote one.
    pub(crate) fn load(
        repo: &Repository,
        bundle: &Bundle,
        helm: &HelmChart,
        charts: Option<&dyn ChartFetcher>,
    ) -> Result<Chart, RenderError> {
        if let Some(remote) = &helm.remote {
            return Self::fetched(repo, bundle, helm, remote, charts);
        }
        let dir = repo.resolve_dir(&bundle.path, &bundle.path_location)?;
        let display = repo.relative(&dir);
        let metadata = ChartMetadata::read(repo, &dir, &display)?;
        if let Some(wanted) = &helm.version
            && wanted.trim_start_matches('v') != metadata.version.trim_start_matches('v')
        {
            return Err(RenderError::Chart {
                location: bundle.path_location.clone(),
                message: format!(
                    "the bundle asks for version {wanted} of chart `{}`, but {display}/Chart.yaml \
                     declares {}; change `helm.version` or the chart",
                    metadata.name, metadata.version
                ),
            });
        }
        let fetched = check_chart_tree(repo, &dir, &display, &metadata, charts)?;
        let mut digest = digest(repo, &dir, &display)?;
        if fetched.is_empty() {
            return Ok(Chart {
                digest,
                dir,
                display,
                name: metadata.name,
                version: metadata.version,
                _scratch: None,
            });
        }
        // The fetched dependencies join a copy of the chart: the checkout stays as committed.
        let scratch = copy_with_dependencies(repo, &dir, &display, &fetched)?;
        for (_, package) in &fetched {
            let bytes = std::fs::read(package).map_err(|e| read_error(display.clone(), &e))?;
            let mut hasher = blake3::Hasher::new();
            hasher.update(digest.as_bytes());
            hasher.update(ContentHash::of(&bytes).as_bytes());
            digest = ContentHash::from_bytes(*hasher.finalize().as_bytes());
        }
        Ok(Chart {
            digest,
            dir: scratch.path().join("chart"),
            display,
            name: metadata.name,
            version: metadata.version,
            _scratch: Some(Arc::new(scratch)),
        })
    }

    /// A remote chart: fetched (or found in the cache), checked, digested.
    fn fetched(
        repo: &Repository,
        bundle: &Bundle,
        helm: &HelmChart,
        remote: &RemoteChart,
        charts: Option<&dyn ChartFetcher>,
    ) -> Result<Chart, RenderError> {
        let RemoteChart { repo: source, name } = remote;
        let version = helm.version.as_deref().unwrap_or_default();
        let location = bundle.path_location.clone();
        let Some(charts) = charts else {
            return Err(RenderError::Chart {
                location,
                message: format!(
                    "chart `{name}` {version} comes from {source}, which only the hub fetches; \
                     offline, give its package with --charts DIR (`helm pull {name} --repo \
                     {source} --version {version} -d DIR`)"
                ),
            });
        };
        let package = charts
            .fetch(source, name, version)
            .map_err(|why| RenderError::Chart {
                location: location.clone(),
                message: format!("cannot fetch chart `{name}` {version} from {source}: {why}"),
            })?;
        let display = format!("{source}/{name}:{version}");
        let metadata = packaged_metadata(&package, &display, repo.limits())?;
        if metadata.name != *name
            || metadata.version.trim_start_matches('v') != version.trim_start_matches('v')
        {
            return Err(RenderError::Chart {
                location,
                message: format!(
                    "{source} served chart `{}` {} for `{name}` {version}",
                    metadata.name, metadata.version
                ),
            });
        }
        check_package(&package, &display)?;
        let bytes = std::fs::read(&package).map_err(|e| read_error(display.clone(), &e))?;
        Ok(Chart {
            dir: package,
            digest: ContentHash::of(&bytes),
            display,
            name: metadata.name,
            version: metadata.version,
            _scratch: None,
        })
    }

    /// The repository file helm's `NAME/templates/x.yaml` means.
    fn file_of(&self, helm_path: &str) -> Option<String> {
        let rest = helm_path.strip_prefix(&self.name)?.strip_prefix('/')?;
        Some(format!("{}/{rest}", self.display))
    }

    /// Where helm's error message points (`NAME/templates/x.yaml:12:3`), in the repository;
    /// the chart's directory when it names no template.
    fn locate_message(&self, message: &str) -> SourceLocation {
        let prefix = format!("{}/", self.name);
        for (start, _) in message.match_indices(&prefix) {
            if start > 0
                && !message[..start].ends_with(|c: char| c.is_whitespace() || c == '(' || c == '"')
            {
                continue;
            }
            let token: &str = message[start..]
                .split(|c: char| c.is_whitespace() || c == ')' || c == '"')
                .next()
                .unwrap_or_default();
            let mut parts = token.trim_end_matches(':').split(':');
            let Some(file) = parts.next().and_then(|path| self.file_of(path)) else {
                continue;
            };
            let mut number = || parts.next().and_then(|n| n.parse::<u32>().ok());
            return match (number(), number()) {
                (Some(line), Some(column)) => SourceLocation::at(file, line, column),
                (Some(line), None) => SourceLocation {
                    file,
                    line: Some(line),
                    column: None,
                },
                _ => SourceLocation::file(file),
            };
        }
        SourceLocation::file(self.display.clone())
    }

    /// For each line of `helm template` output, the repository file of the template it came
    /// from (from helm's `# Source:` comments).
    pub(crate) fn sources(&self, output: &str) -> Vec<Option<String>> {
        let mut current = None;
        output
            .lines()
            .map(|line| {
                if line == "---" {
                    current = None;
                } else if let Some(path) = line.strip_prefix("# Source: ") {
                    current = self.file_of(path.trim());
                }
                current.clone()
            })
            .collect()
    }

    /// Refuses a hook, naming the template it comes from.
    pub(crate) fn refuse_hook(
        &self,
        object: &Value,
        origin: &SourceLocation,
    ) -> Result<(), RenderError> {
        let Some(hook) = object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(HOOK_ANNOTATION))
            .and_then(Value::as_str)
        else {
            return Ok(());
        };
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("object");
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Err(RenderError::Chart {
            location: origin.clone(),
            message: format!(
                "{kind} `{name}` is a Helm hook ({HOOK_ANNOTATION}: {hook}); Flotilla applies a \
                 chart's objects declaratively and does not run hooks, so it refuses the chart \
                 rather than drop the hook or run it on every sync; turn the hook off with the \
                 chart's values, or remove it"
            ),
        })
    }
}

/// The digest of every file under `dir`: relative path and content, in name order.
fn digest(repo: &Repository, dir: &Path, display: &str) -> Result<ContentHash, RenderError> {
    let mut hasher = blake3::Hasher::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name();
    for (count, entry) in walker.into_iter().enumerate() {
        if count >= repo.limits().max_repo_entries {
            return Err(RenderError::Chart {
                location: SourceLocation::file(display.to_owned()),
                message: format!(
                    "has more than {} entries (the limit is fixed)",
                    repo.limits().max_repo_entries
                ),
            });
        }
        let entry = entry
            .map_err(|e| read_error(display.to_owned(), &std::io::Error::other(e.to_string())))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let name = relative.as_os_str().as_encoded_bytes();
        let file = repo.relative(entry.path());
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        if size > repo.limits().max_file_bytes {
            return Err(RenderError::Spec(crate::spec::SpecError::TooLarge {
                location: SourceLocation::file(file),
                size,
                limit: repo.limits().max_file_bytes,
            }));
        }
        let content = std::fs::read(entry.path()).map_err(|e| read_error(file, &e))?;
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name);
        hasher.update(&(content.len() as u64).to_le_bytes());
        hasher.update(&content);
    }
    Ok(ContentHash::from_bytes(*hasher.finalize().as_bytes()))
}

/// A copy of the chart in `dir` (at `chart/` in a new temporary directory) with the `fetched`
/// packages added to its `charts/`.
fn copy_with_dependencies(
    repo: &Repository,
    dir: &Path,
    display: &str,
    fetched: &[(String, PathBuf)],
) -> Result<tempfile::TempDir, RenderError> {
    let failed = |e: std::io::Error| read_error(display.to_owned(), &e);
    let scratch = tempfile::Builder::new()
        .prefix("flotilla-chart-")
        .tempdir()
        .map_err(failed)?;
    let root = scratch.path().join("chart");
    let walker = walkdir::WalkDir::new(dir).follow_links(true);
    for (count, entry) in walker.into_iter().enumerate() {
        if count >= repo.limits().max_repo_entries {
            return Err(RenderError::Chart {
                location: SourceLocation::file(display.to_owned()),
                message: "has too many entries to copy".to_owned(),
            });
        }
        let entry = entry.map_err(|e| failed(std::io::Error::other(e.to_string())))?;
        let relative = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let target = root.join(relative);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).map_err(failed)?;
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &target).map_err(failed)?;
        }
    }
    std::fs::create_dir_all(root.join("charts")).map_err(failed)?;
    for (file, package) in fetched {
        std::fs::copy(package, root.join("charts").join(file)).map_err(failed)?;
    }
    Ok(scratch)
}

/// What rendering needs from a `Chart.yaml`.
struct ChartMetadata {
    name: String,
    version: String,
    dependencies: Vec<Dependency>,
}

impl ChartMetadata {
    fn read(repo: &Repository, dir: &Path, display: &str) -> Result<ChartMetadata, RenderError> {
        let file = format!("{display}/Chart.yaml");
        let path = dir.join("Chart.yaml");
        if !path.is_file() {
            return Err(RenderError::Chart {
                location: SourceLocation::file(display.to_owned()),
                message: "is not a chart: it has no Chart.yaml".to_owned(),
            });
        }
        let text = read_limited(&path, &file, repo.limits())?;
        let mut documents = parse_documents(&text, &file, 0, repo.limits()).map_err(|problem| {
            RenderError::Yaml {
                location: problem.location,
                message: problem.message,
            }
        })?;
        let (_, document) = documents
            .drain(..)
            .next()
            .ok_or_else(|| RenderError::Chart {
                location: SourceLocation::file(file.clone()),
                message: "is empty".to_owned(),
            })?;
        let field = |name: &str| {
            document
                .get(name)
                .and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .filter(|s| !s.is_empty())
                .ok_or_else(|| RenderError::Chart {
                    location: SourceLocation::file(file.clone()),
                    message: format!("`{name}` is missing; a chart declares its name and version"),
                })
        };
        let name = field("name")?;
        let version = field("version")?;
        let dependencies = document
            .get("dependencies")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|d| {
                        let text_of = |key: &str| match d.get(key) {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Number(n)) => n.to_string(),
                            _ => String::new(),
                        };
                        let name = d.get("name").and_then(Value::as_str)?;
                        Some(Dependency {
                            name: name.to_owned(),
                            version: text_of("version"),
                            repository: text_of("repository"),
                            line: line_of(&text, name),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(ChartMetadata {
            name,
            version,
            dependencies,
        })
    }
}

/// A dependency a `Chart.yaml` declares.
struct Dependency {
    name: String,
    version: String,
    repository: String,
    line: u32,
}

/// The first line of `text` that names `needle` as a value (1 when none does).
fn line_of(text: &str, needle: &str) -> u32 {
    text.lines()
        .position(|line| {
            line.split_once(':')
                .is_some_and(|(_, value)| value.trim().trim_matches(['"', '\'']) == needle)
        })
        .map_or(1, |index| u32::try_from(index + 1).unwrap_or(u32::MAX))
}

/// Checks a chart and its vendored subcharts: every dependency present, no `lookup`.
/// Checks a chart and its vendored subcharts: every dependency present, no `lookup`. A
/// dependency of the top chart that is not vendored is fetched with `charts` when its
/// repository is a remote one and its version exact; those packages are returned, to be put
/// in the chart's `charts/` for rendering.
fn check_chart_tree(
    repo: &Repository,
    dir: &Path,
    display: &str,
    metadata: &ChartMetadata,
    charts: Option<&dyn ChartFetcher>,
) -> Result<Vec<(String, PathBuf)>, RenderError> {
    let vendored = vendored_charts(repo, dir, display)?;
    let mut fetched = Vec::new();
    for dependency in &metadata.dependencies {
        if vendored.iter().any(|sub| sub.name == dependency.name) {
            continue;
        }
        let location = SourceLocation {
            file: format!("{display}/Chart.yaml"),
            line: Some(dependency.line),
            column: None,
        };
        let name = &dependency.name;
        let remote = ["https://", "http://", "oci://"]
            .iter()
            .any(|scheme| dependency.repository.starts_with(scheme));
        if remote
            && let Err(why) = crate::spec::chart_repo(&dependency.repository)
                .and_then(|()| crate::spec::chart_name(name))
        {
            return Err(RenderError::Chart {
                location,
                message: format!("dependency `{name}`: {why}"),
            });
        }
        let Some(charts) = charts.filter(|_| remote) else {
            return Err(RenderError::Chart {
                location,
                message: format!(
                    "dependency `{name}` is not vendored in {display}/charts/; run `helm \
                     dependency build {display}` and commit charts/, or give it an https:// or \
                     oci:// repository the hub allows and an exact version"
                ),
            });
        };
        if crate::spec::exact_version(&dependency.version).is_err() {
            return Err(RenderError::Chart {
                location,
                message: format!(
                    "dependency `{name}` asks for version `{}`, a range: a fetched dependency \
                     needs an exact version (or vendor it in {display}/charts/)",
                    dependency.version
                ),
            });
        }
        let repository = dependency.repository.trim_end_matches('/');
        let package = charts
            .fetch(repository, name, &dependency.version)
            .map_err(|why| RenderError::Chart {
                location: location.clone(),
                message: format!(
                    "cannot fetch dependency `{name}` {} from {repository}: {why}",
                    dependency.version
                ),
            })?;
        let package_display = format!("{repository}/{name}:{}", dependency.version);
        check_package(&package, &package_display)?;
        fetched.push((format!("{name}-{}.tgz", dependency.version), package));
    }
    check_templates(repo, &dir.join("templates"), display)?;
    for sub in vendored {
        match sub.source {
            Vendored::Directory(path) => {
                let sub_display = repo.relative(&path);
                let sub_metadata = ChartMetadata::read(repo, &path, &sub_display)?;
                check_chart_tree(repo, &path, &sub_display, &sub_metadata, None)?;
            }
            Vendored::Packaged(path) => {
                let display = repo.relative(&path);
                check_package(&path, &display)?
            }
        }
    }
    Ok(fetched)
}

/// A subchart in `charts/`.
struct VendoredChart {
    name: String,
    source: Vendored,
}

enum Vendored {
    Directory(PathBuf),
    Packaged(PathBuf),
}

/// The subcharts vendored in `dir/charts/`: directories with a `Chart.yaml`, and packaged
/// `NAME-VERSION.tgz` files.
fn vendored_charts(
    repo: &Repository,
    dir: &Path,
    display: &str,
) -> Result<Vec<VendoredChart>, RenderError> {
    let charts = dir.join("charts");
    if !charts.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&charts)
        .map_err(|e| read_error(format!("{display}/charts"), &e))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() && path.join("Chart.yaml").is_file() {
            let sub_display = repo.relative(&path);
            let metadata = ChartMetadata::read(repo, &path, &sub_display)?;
            found.push(VendoredChart {
                name: metadata.name,
                source: Vendored::Directory(path),
            });
        } else if path.extension().is_some_and(|e| e == "tgz") && path.is_file() {
            // Named by its own Chart.yaml, as helm names it (a file name like
            // `cert-manager-v1.14.4.tgz` does not say where the name ends).
            let shown = repo.relative(&path);
            let metadata = packaged_metadata(&path, &shown, repo.limits())?;
            found.push(VendoredChart {
                name: metadata.name,
                source: Vendored::Packaged(path),
            });
        }
    }
    Ok(found)
}

fn read_error(file: String, error: &std::io::Error) -> RenderError {
    RenderError::Spec(crate::spec::SpecError::Read {
        location: SourceLocation::file(file),
        message: error.to_string(),
    })
}

/// Refuses any template under `dir` that calls `lookup`.
fn check_templates(repo: &Repository, dir: &Path, display: &str) -> Result<(), RenderError> {
    if !dir.is_dir() {
        return Ok(());
    }
    // Every file: helm parses every file under `templates/`, whatever its name, and follows
    // links (the repository's were checked to stay inside it when it loaded).
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name();
    for entry in walker {
        let entry = entry.map_err(|e| {
            read_error(
                format!("{display}/templates"),
                &std::io::Error::other(e.to_string()),
            )
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let file = repo.relative(entry.path());
        let text = read_limited(entry.path(), &file, repo.limits())?;
        refuse_lookup(&text, &file)?;
    }
    Ok(())
}

/// The name and version a packaged chart's `Chart.yaml` declares.
fn packaged_metadata(
    path: &Path,
    display: &str,
    limits: &crate::limits::Limits,
) -> Result<ChartMetadata, RenderError> {
    let unreadable = |e: std::io::Error| RenderError::Chart {
        location: SourceLocation::file(display.to_owned()),
        message: format!("is not a readable packaged chart (gzipped tar): {e}"),
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let inner = entry.path().map_err(unreadable)?.into_owned();
        if inner.components().count() != 2 || !inner.ends_with("Chart.yaml") {
            continue;
        }
        let mut text = String::new();
        entry
            .by_ref()
            .take(1024 * 1024)
            .read_to_string(&mut text)
            .map_err(unreadable)?;
        let file = format!("{display}/Chart.yaml");
        let document: Value =
            crate::yaml::parse_one(&text, &file, limits).map_err(|problem| RenderError::Yaml {
                location: problem.location,
                message: problem.message,
            })?;
        let field = |key: &str| match document.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        return Ok(ChartMetadata {
            name: field("name"),
            version: field("version"),
            dependencies: Vec::new(),
        });
    }
    Err(RenderError::Chart {
        location: SourceLocation::file(display.to_owned()),
        message: "the package holds no Chart.yaml".to_owned(),
    })
}

/// Most bytes a packaged chart (with the packages inside it) may hold uncompressed.
const MAX_UNPACKED_CHART_BYTES: u64 = 64 * 1024 * 1024;

/// Most entries a packaged chart (with the packages inside it) may hold.
const MAX_PACKAGED_ENTRIES: usize = 10_000;

/// Refuses the templates of a packaged chart that call `lookup`, in it and in the packages
/// it holds; `display` names it.
fn check_package(path: &Path, display: &str) -> Result<(), RenderError> {
    let display = display.to_owned();
    let file = std::fs::File::open(path).map_err(|e| read_error(display.clone(), &e))?;
    let size = file
        .metadata()
        .map_err(|e| read_error(display.clone(), &e))?
        .len();
    if size > MAX_PACKAGED_CHART_BYTES {
        return Err(RenderError::Chart {
            location: SourceLocation::file(display),
            message: format!(
                "a packaged chart of {size} bytes is over the limit of {MAX_PACKAGED_CHART_BYTES}"
            ),
        });
    }
    let mut budget = PackageBudget {
        bytes: MAX_UNPACKED_CHART_BYTES,
        entries: MAX_PACKAGED_ENTRIES,
    };
    scan_package(file, &display, &mut budget, 0)
}

/// What is left to unpack of one packaged chart.
struct PackageBudget {
    bytes: u64,
    entries: usize,
}

/// Packages inside packages (a chart's vendored dependencies) are opened this deep at most.
const MAX_PACKAGE_DEPTH: usize = 4;

fn scan_package(
    reader: impl Read,
    display: &str,
    budget: &mut PackageBudget,
    depth: usize,
) -> Result<(), RenderError> {
    let refused = |message: String| RenderError::Chart {
        location: SourceLocation::file(display.to_owned()),
        message,
    };
    let unreadable = |e: std::io::Error| {
        refused(format!(
            "is not a readable packaged chart (gzipped tar): {e}"
        ))
    };
    if depth > MAX_PACKAGE_DEPTH {
        return Err(refused("holds packages nested too deep".to_owned()));
    }
    // Every gzip member, as Go's reader (and so helm) reads them.
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(reader));
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        budget.entries = budget
            .entries
            .checked_sub(1)
            .ok_or_else(|| refused(format!("holds more than {MAX_PACKAGED_ENTRIES} entries")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let size = entry.header().size().map_err(unreadable)?;
        budget.bytes = budget.bytes.checked_sub(size).ok_or_else(|| {
            refused(format!(
                "unpacks to more than {MAX_UNPACKED_CHART_BYTES} bytes"
            ))
        })?;
        let inner = entry.path().map_err(unreadable)?.into_owned();
        let shown = format!("{display}:{}", inner.display());
        let in_templates = inner.components().any(|c| c.as_os_str() == "templates");
        let nested = inner.extension().is_some_and(|e| e == "tgz")
            && inner.components().any(|c| c.as_os_str() == "charts");
        if nested {
            let mut bytes = Vec::new();
            entry
                .by_ref()
                .take(size)
                .read_to_end(&mut bytes)
                .map_err(unreadable)?;
            scan_package(bytes.as_slice(), &shown, budget, depth + 1)?;
        } else if in_templates {
            let mut bytes = Vec::new();
            entry
                .by_ref()
                .take(size)
                .read_to_end(&mut bytes)
                .map_err(unreadable)?;
            refuse_lookup(&String::from_utf8_lossy(&bytes), &shown)?;
        }
    }
    Ok(())
}

/// Refuses a template whose actions (`{{ ... }}`) call `lookup`.
fn refuse_lookup(text: &str, file: &str) -> Result<(), RenderError> {
    let mut rest = text;
    let mut offset = 0;
    while let Some(open) = rest.find("{{") {
        let action_start = open + 2;
        let close = rest[action_start..]
            .find("}}")
            .map_or(rest.len(), |c| action_start + c);
        let action = &rest[action_start..close];
        if let Some(at) = find_word(action, "lookup") {
            let absolute = offset + action_start + at;
            let line = text[..absolute].matches('\n').count() + 1;
            let column = absolute - text[..absolute].rfind('\n').map_or(0, |n| n + 1) + 1;
            return Err(RenderError::Chart {
                location: SourceLocation::at(
                    file.to_owned(),
                    u32::try_from(line).unwrap_or(u32::MAX),
                    u32::try_from(column).unwrap_or(u32::MAX),
                ),
                message: "the template calls `lookup`, which reads a live cluster; rendering \
                          has no cluster and helm would answer it with nothing, so the chart is \
                          refused; give the value through the chart's values instead"
                    .to_owned(),
            });
        }
        let consumed = (close + 2).min(rest.len());
        offset += consumed;
        rest = &rest[consumed..];
    }
    Ok(())
}

/// The byte offset of `word` in `text` as a whole identifier.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$';
    text.match_indices(word).map(|(at, _)| at).find(|&at| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// Helm's error output without its advice about flags Flotilla does not expose.
fn tidy(message: &str) -> String {
    message
        .lines()
        .filter(|line| !line.starts_with("Use --debug flag"))
        .map(|line| line.strip_prefix("Error: ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// Merges chart values as helm merges its `--values` files: mappings merge key by key, any
/// other value (a list, a scalar, `null`) replaces what was there.
pub(crate) fn merge_values(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing @ Value::Object(_)) if value.is_object() => {
                        merge_values(existing, value);
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

#[cfg(test)]
mod tests;
