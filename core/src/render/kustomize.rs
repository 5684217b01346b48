//! Building kustomizations with `kustomize build` or `kubectl kustomize`, confined to the
//! repository: remote bases are refused and local references must stay inside the root.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use super::RenderError;
use super::run::{RunFailure, run_bounded};
use super::sandbox::{self, Bounds};
use crate::location::SourceLocation;
use crate::repository::Repository;

/// The file names kustomize recognises, in its order of preference.
pub(crate) const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

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
                // Relative entries would name files of the checkout renders run in.
                .filter(|dir| dir.is_absolute())
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
        let (program, verb) = match self {
            Kustomize::Standalone(path) => (path, "build"),
            Kustomize::Kubectl(path) => (path, "kustomize"),
            Kustomize::Unavailable => return Err(RenderError::KustomizeMissing { location }),
        };
        let limits = repo.limits();
        let bounds = Bounds {
            memory_bytes: limits.render_memory_bytes,
            cpu_seconds: limits.render_timeout.as_secs().max(1),
        };
        let args = [OsString::from(verb), dir.as_os_str().to_owned()];
        let mut command =
            sandbox::confine(limits.render_sandbox, bounds, repo.root(), program, &args).map_err(
                |reason| RenderError::SandboxUnavailable {
                    location: location.clone(),
                    reason,
                },
            )?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = run_bounded(
            command,
            None,
            limits.max_rendered_bytes as u64,
            limits.render_timeout,
            repo.cancel(),
        )
        .map_err(|failure| match failure {
            RunFailure::Spawn(message) | RunFailure::Failed(message) => {
                RenderError::KustomizeFailed {
                    location: location.clone(),
                    tool: self.describe(),
                    message,
                }
            }
            RunFailure::Cancelled => RenderError::Cancelled {
                location: location.clone(),
            },
            RunFailure::Timeout => RenderError::KustomizeTimeout {
                location: location.clone(),
                timeout: limits.render_timeout,
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

/// Refuses remote references and local references that leave the repository, in every field
/// through which kustomize loads a file, a directory or a URL, following referenced
/// kustomizations recursively. The sandbox would stop a fetch anyway; this check names the
/// file and line, and also serves `flotilla lint` on hosts without a sandbox.
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
    let (text, document) = read_document(repo, &file)?;
    let shown = repo.relative(&file);
    for reference in references(&document) {
        if reference.kind == ReferenceKind::InlineConfig {
            let documents = parse_plugin_documents(reference.path, &shown, repo)?;
            check_plugin_paths(repo, dir, &documents, &text, &shown)?;
            continue;
        }
        let location = locate(&text, &shown, reference.path);
        let Some(canonical) = check_reference(repo, dir, reference.path, location)? else {
            continue;
        };
        match reference.kind {
            ReferenceKind::Kustomization if canonical.is_dir() => {
                check_kustomization(repo, &canonical, visited)?;
            }
            ReferenceKind::Kustomization | ReferenceKind::PluginConfig if canonical.is_file() => {
                check_plugin_config(repo, dir, &canonical)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// What a referenced path may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReferenceKind {
    /// A directory with a kustomization, or a file of resources or plugin configurations.
    Kustomization,
    /// A generator, transformer or validator configuration, which may name files itself.
    PluginConfig,
    /// A file kustomize reads (patches, CRDs, configurations, generator sources, OpenAPI).
    File,
    /// A generator, transformer or validator configuration written inline.
    InlineConfig,
}

/// One path written in a kustomization.
#[derive(Debug)]
struct Reference<'d> {
    path: &'d str,
    kind: ReferenceKind,
}

/// Every path a kustomization makes kustomize load, by field (kustomize v5's
/// `types.Kustomization`, including the deprecated fields it still honours).
fn references(document: &Value) -> Vec<Reference<'_>> {
    let mut found = Vec::new();
    let mut add = |path, kind| push_reference(&mut found, path, kind);
    let strings = |field: &str| -> Vec<&str> {
        match document.get(field) {
            Some(Value::Array(entries)) => entries.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(entry)) => vec![entry.as_str()],
            _ => Vec::new(),
        }
    };
    let items = |field: &str| -> Vec<&Value> {
        match document.get(field) {
            Some(Value::Array(entries)) => entries.iter().collect(),
            _ => Vec::new(),
        }
    };
    for field in ["resources", "bases", "components"] {
        for path in strings(field) {
            add(path, ReferenceKind::Kustomization);
        }
    }
    for field in ["generators", "transformers", "validators"] {
        for entry in strings(field) {
            let kind = if entry.contains('\n') {
                ReferenceKind::InlineConfig
            } else {
                ReferenceKind::PluginConfig
            };
            add(entry, kind);
        }
    }
    for field in ["crds", "configurations", "patchesStrategicMerge"] {
        for path in strings(field) {
            add(path, ReferenceKind::File);
        }
    }
    for field in ["patches", "patchesJson6902", "replacements"] {
        for item in items(field) {
            if let Some(path) = item.get("path").and_then(Value::as_str) {
                add(path, ReferenceKind::File);
            }
        }
    }
    if let Some(path) = document
        .get("openapi")
        .and_then(|openapi| openapi.get("path"))
        .and_then(Value::as_str)
    {
        add(path, ReferenceKind::File);
    }
    for field in ["configMapGenerator", "secretGenerator"] {
        for item in items(field) {
            for path in generator_sources(item) {
                add(path, ReferenceKind::File);
            }
        }
    }
    found
}

fn push_reference<'d>(found: &mut Vec<Reference<'d>>, path: &'d str, kind: ReferenceKind) {
    // A multi-line string is an inline patch or plugin configuration, not a path.
    let inline = path.contains('\n') && kind != ReferenceKind::InlineConfig;
    if !inline && !path.trim().is_empty() {
        found.push(Reference { path, kind });
    }
}

/// The files a ConfigMap or Secret generator reads: `files` (`[key=]path`), `envs` and the
/// older single `env`.
fn generator_sources(item: &Value) -> Vec<&str> {
    let mut sources = Vec::new();
    if let Some(Value::Array(files)) = item.get("files") {
        for entry in files.iter().filter_map(Value::as_str) {
            // `key=path`, unless the whole entry is a URL whose query holds the `=`.
            let path = match entry.split_once('=') {
                Some((key, path)) if !key.contains('/') && !key.contains(':') => path,
                _ => entry,
            };
            sources.push(path);
        }
    }
    if let Some(Value::Array(envs)) = item.get("envs") {
        sources.extend(envs.iter().filter_map(Value::as_str));
    }
    if let Some(env) = item.get("env").and_then(Value::as_str) {
        sources.push(env);
    }
    sources
}

/// Refuses `path` (written in the kustomization of `dir`) when it is remote or leaves the
/// repository; returns where it leads, or `None` when it does not exist (kustomize reports
/// a missing file itself).
fn check_reference(
    repo: &Repository,
    dir: &Path,
    path: &str,
    location: SourceLocation,
) -> Result<Option<PathBuf>, RenderError> {
    let target = dir.join(path);
    if looks_remote(path, &target) {
        return Err(RenderError::RemoteResource {
            location,
            resource: path.to_owned(),
        });
    }
    let Ok(canonical) = target.canonicalize() else {
        // Missing: kustomize reports it, but only if it stays inside, judged lexically, so
        // that nothing outside is probed for existence either.
        if !lexically_normal(&target).starts_with(repo.root()) {
            return Err(RenderError::Escape {
                location,
                path: path.to_owned(),
            });
        }
        return Ok(None);
    };
    if !canonical.starts_with(repo.root()) {
        return Err(RenderError::Escape {
            location,
            path: path.to_owned(),
        });
    }
    Ok(Some(canonical))
}

/// `path` with `.` and `..` resolved without the file system (`..` at the root stays there).
fn lexically_normal(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other.as_os_str()),
        }
    }
    normal
}

/// Checks the paths inside a generator, transformer or validator configuration file, which
/// kustomize resolves against the kustomization's directory `dir`.
fn check_plugin_config(repo: &Repository, dir: &Path, file: &Path) -> Result<(), RenderError> {
    let shown = repo.relative(file);
    let text = crate::repository::read_limited(file, &shown, repo.limits())?;
    let documents = parse_plugin_documents(&text, &shown, repo)?;
    check_plugin_paths(repo, dir, &documents, &text, &shown)
}

fn parse_plugin_documents(
    text: &str,
    shown: &str,
    repo: &Repository,
) -> Result<Vec<Value>, RenderError> {
    crate::yaml::parse_documents(text, shown, 0, repo.limits())
        .map(|documents| {
            documents
                .into_iter()
                .map(|(_, document)| document)
                .collect()
        })
        .map_err(|p| RenderError::Yaml {
            location: p.location,
            message: p.message,
        })
}

/// Refuses remote or escaping paths in built-in plugin configurations: `path`, `paths`,
/// `files`, `envs`, `env` and `replacements[].path`. `text` is the file they are written in.
fn check_plugin_paths(
    repo: &Repository,
    dir: &Path,
    documents: &[Value],
    text: &str,
    shown: &str,
) -> Result<(), RenderError> {
    for document in documents {
        let mut paths: Vec<&str> = Vec::new();
        if let Some(path) = document.get("path").and_then(Value::as_str) {
            paths.push(path);
        }
        if let Some(Value::Array(list)) = document.get("paths") {
            paths.extend(list.iter().filter_map(Value::as_str));
        }
        paths.extend(generator_sources(document));
        if let Some(Value::Array(replacements)) = document.get("replacements") {
            paths.extend(
                replacements
                    .iter()
                    .filter_map(|r| r.get("path").and_then(Value::as_str)),
            );
        }
        for path in paths {
            check_reference(repo, dir, path, locate(text, shown, path))?;
        }
    }
    Ok(())
}

/// Reads and parses one kustomization file.
fn read_document(repo: &Repository, file: &Path) -> Result<(String, Value), RenderError> {
    let shown = repo.relative(file);
    let text = crate::repository::read_limited(file, &shown, repo.limits())?;
    let document =
        crate::yaml::parse_one(&text, &shown, repo.limits()).map_err(|p| RenderError::Yaml {
            location: p.location,
            message: p.message,
        })?;
    Ok((text, document))
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
