//! The demo's Git repository: the example fleet, compiled into the binary, written out and
//! committed on `main` with git2 (no `git` needed). A kept demo's repository is reused as is.
//!
//! The example's `cache` bundle is a kustomization and its `status` bundle a Helm chart.
//! Without `kustomize` or `kubectl` on `PATH`, or without helm (on `PATH` or built by
//! `scripts/k8s-build` into its cache), the hub could not render them and the whole revision
//! would fail, so such bundles are left out of the demo's `flotilla.yaml` (with a note) rather
//! than showing a broken first revision.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use flotilla_core::{Helm, Kustomize, Limits, Repository, Tools};
use git2::{IndexAddOption, Signature};
use include_dir::{Dir, include_dir};
use serde_json::Value;

/// The example fleet (`examples/fleet`), as it was when this binary was built.
pub(super) static EXAMPLE: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../examples/fleet");

/// The inventory file inside the example.
pub(super) const INVENTORY: &str = "clusters.yaml";

/// The files kustomize builds a directory from.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Who commits in the demo repository (also set as its local git identity, so `git commit`
/// works there on a machine without one).
const AUTHOR: (&str, &str) = ("Flotilla demo", "demo@flotilla.dev");

/// The repository the demo's hub follows.
pub(super) struct DemoRepo {
    /// Its working tree.
    pub(super) path: PathBuf,
    /// Bundles left out because no kustomize tool was found.
    pub(super) left_out: Vec<String>,
    /// Chart bundles left out because no helm was found.
    pub(super) charts_left_out: Vec<String>,
    /// It is a kept demo's repository, reused as it was.
    pub(super) resumed: bool,
}

impl DemoRepo {
    /// What the user should know about the repository.
    pub(super) fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.left_out.is_empty() {
            notes.push(format!(
                "neither kustomize nor kubectl is on PATH, so the kustomize bundle(s) {} were \
                 left out of the demo repository; install kubectl to see them",
                self.left_out.join(", ")
            ));
        }
        if !self.charts_left_out.is_empty() {
            notes.push(format!(
                "helm is neither on PATH nor built by scripts/k8s-build, so the chart bundle(s) \
                 {} were left out of the demo repository; run scripts/k8s-build helm to see them",
                self.charts_left_out.join(", ")
            ));
        }
        if self.resumed {
            notes.push(format!(
                "resumed the demo repository {} as it was",
                self.path.display()
            ));
        }
        notes
    }
}

/// The tools the demo's hub renders with: kustomize (or kubectl) on `PATH`, and helm on
/// `PATH` or else the one `scripts/k8s-build` built into its cache.
pub(super) fn render_tools() -> Tools {
    let tools = Tools::discover();
    if tools.helm != Helm::Unavailable {
        return tools;
    }
    let cache = std::env::var_os("FLOTILLA_K8S_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/flotilla/k8s"))
        });
    let mut built: Vec<PathBuf> = cache
        .and_then(|cache| std::fs::read_dir(cache).ok())
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|version| version.path().join("bin/helm"))
        .filter(|helm| helm.is_file())
        .collect();
    built.sort();
    match built.pop() {
        Some(helm) => tools.with_helm(Helm::Binary(helm)),
        None => tools,
    }
}

/// Writes the example into `dir` and commits it on `main`, or reuses a repository already
/// there. Bundles `tools` cannot render are left out.
pub(super) fn prepare(dir: &Path, tools: &Tools) -> anyhow::Result<DemoRepo> {
    if dir.join(".git").is_dir() {
        return Ok(DemoRepo {
            path: dir.to_path_buf(),
            left_out: Vec::new(),
            charts_left_out: Vec::new(),
            resumed: true,
        });
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    EXAMPLE
        .extract(dir)
        .with_context(|| format!("writing the example repository to {}", dir.display()))?;
    let left_out = if tools.kustomize == Kustomize::Unavailable {
        leave_out(dir, Unrenderable::Kustomization)?
    } else {
        Vec::new()
    };
    let charts_left_out = if tools.helm == Helm::Unavailable {
        leave_out(dir, Unrenderable::Chart)?
    } else {
        Vec::new()
    };
    let mut missing = Vec::new();
    if !left_out.is_empty() {
        missing.push(format!("{} (no kustomize tool)", left_out.join(", ")));
    }
    if !charts_left_out.is_empty() {
        missing.push(format!("{} (no helm)", charts_left_out.join(", ")));
    }
    let message = if missing.is_empty() {
        "Example fleet".to_owned()
    } else {
        format!("Example fleet, without {}", missing.join(", "))
    };
    commit_all(dir, &message)?;
    Ok(DemoRepo {
        path: dir.to_path_buf(),
        left_out,
        charts_left_out,
        resumed: false,
    })
}

/// A new repository at `dir` with everything in it committed on `main`.
fn commit_all(dir: &Path, message: &str) -> anyhow::Result<String> {
    let failed = |e: git2::Error| anyhow!("making the demo repository {}: {e}", dir.display());
    let repo = git2::Repository::init(dir).map_err(failed)?;
    repo.set_head("refs/heads/main").map_err(failed)?;
    let mut config = repo.config().map_err(failed)?;
    config.set_str("user.name", AUTHOR.0).map_err(failed)?;
    config.set_str("user.email", AUTHOR.1).map_err(failed)?;
    let mut index = repo.index().map_err(failed)?;
    index
        .add_all(["*"], IndexAddOption::DEFAULT, None)
        .map_err(failed)?;
    index.write().map_err(failed)?;
    let tree = repo
        .find_tree(index.write_tree().map_err(failed)?)
        .map_err(failed)?;
    let signature = Signature::now(AUTHOR.0, AUTHOR.1).map_err(failed)?;
    let commit = repo
        .commit(Some("HEAD"), &signature, &signature, message, &tree, &[])
        .map_err(failed)?;
    Ok(commit.to_string())
}

/// The bundles a missing tool leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unrenderable {
    /// Built with kustomize: its directory or an overlay's holds a kustomization.
    Kustomization,
    /// A Helm chart.
    Chart,
}

/// Removes every bundle of the sort `which` from `flotilla.yaml` in `root`, and from other
/// bundles' `dependsOn`. Returns the names removed.
pub(super) fn leave_out(root: &Path, which: Unrenderable) -> anyhow::Result<Vec<String>> {
    let repo = Repository::load(root, Limits::default())
        .map_err(|errors| anyhow!("the example repository does not load:\n{errors}"))?;
    let is_kustomization = |dir: &str| {
        KUSTOMIZATION_FILES
            .iter()
            .any(|file| root.join(dir).join(file).is_file())
    };
    let removed: Vec<String> = repo
        .spec()
        .bundles
        .iter()
        .filter(|bundle| match which {
            Unrenderable::Chart => bundle.helm.is_some(),
            Unrenderable::Kustomization => {
                bundle.helm.is_none()
                    && (is_kustomization(&bundle.path)
                        || bundle
                            .overlays
                            .iter()
                            .filter_map(|overlay| overlay.path.as_deref())
                            .any(is_kustomization))
            }
        })
        .map(|bundle| bundle.name.clone())
        .collect();
    if removed.is_empty() {
        return Ok(removed);
    }
    let path = root.join("flotilla.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut spec: Value =
        serde_saphyr::from_str(&text).map_err(|e| anyhow!("reading {}: {e}", path.display()))?;
    let bundles = spec
        .get_mut("bundles")
        .and_then(Value::as_array_mut)
        .context("flotilla.yaml has no list of bundles")?;
    bundles.retain(|bundle| {
        !bundle["name"]
            .as_str()
            .is_some_and(|name| removed.iter().any(|r| r == name))
    });
    for bundle in bundles.iter_mut() {
        if let Some(depends) = bundle.get_mut("dependsOn").and_then(Value::as_array_mut) {
            depends.retain(|d| !d.as_str().is_some_and(|d| removed.iter().any(|r| r == d)));
        }
    }
    let yaml = serde_saphyr::to_string(&spec).context("writing flotilla.yaml")?;
    let tool = match which {
        Unrenderable::Kustomization => "kustomize tool",
        Unrenderable::Chart => "helm",
    };
    let header = format!(
        "# Written by `flotilla demo`: no {tool} was found, so {} left out.\n",
        removed.join(", ")
    );
    std::fs::write(&path, header + &yaml).with_context(|| format!("writing {}", path.display()))?;
    Ok(removed)
}
