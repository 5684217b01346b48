//! A repository in a temporary directory, written file by file.

use std::path::{Path, PathBuf};

use flotilla_core::render::{Helm, Kustomize, Tools};
use flotilla_core::{Cluster, Limits, Repository, SpecErrors};

/// A temporary repository.
pub(crate) struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// An empty repository.
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// The repository root.
    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file, creating its directories.
    pub(crate) fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create dirs");
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// Removes a file.
    pub(crate) fn remove_file(&self, relative: &str) {
        std::fs::remove_file(self.dir.path().join(relative)).expect("remove file");
    }

    /// Writes `flotilla.yaml` with one stage tracking `main` and the given bundles section.
    pub(crate) fn spec(&self, bundles: &str) {
        self.write(
            "flotilla.yaml",
            &format!(
                "apiVersion: flotilla.dev/v1\nkind: Fleet\nstages:\n  - name: all\n    track: {{branch: main}}\nbundles:\n{bundles}"
            ),
        );
    }

    /// Loads the repository with default limits.
    pub(crate) fn load(&self) -> Result<Repository, SpecErrors> {
        Repository::load(self.root(), Limits::default())
    }

    /// Loads the repository with the given limits.
    pub(crate) fn load_with(&self, limits: Limits) -> Result<Repository, SpecErrors> {
        Repository::load(self.root(), limits)
    }
}

/// A cluster from a name and `k=v` labels.
pub(crate) fn cluster(name: &str, labels: &[(&str, &str)]) -> Cluster {
    Cluster::new(name, labels.iter().copied())
}

/// The tools with kustomize found, or `None` after saying loudly why the test is skipped.
/// Under `CI=true` a missing tool fails the test instead. Helm is found as
/// [`helm_or_skip`] finds it, when it is there.
pub(crate) fn kustomize_or_skip(test: &str) -> Option<Tools> {
    let helm = pinned_helm().unwrap_or(Helm::Unavailable);
    match Kustomize::discover() {
        Kustomize::Unavailable if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: neither kustomize nor kubectl is on PATH, and CI=true requires them")
        }
        Kustomize::Unavailable => {
            eprintln!("SKIPPED {test}: neither kustomize nor kubectl is on PATH");
            None
        }
        kustomize => Some(Tools::none().with_kustomize(kustomize).with_helm(helm)),
    }
}

/// The pinned helm that `scripts/k8s-build helm` built, or `None` after saying loudly why the
/// test is skipped. Under `CI=true` a missing helm fails the test instead.
pub(crate) fn helm_or_skip(test: &str) -> Option<Helm> {
    match pinned_helm() {
        Ok(helm) => Some(helm),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: {why}, and CI=true requires it")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// The helm `scripts/k8s-build --check helm` finds built (it never builds).
fn pinned_helm() -> Result<Helm, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new(root.join("scripts/k8s-build"))
        .args(["--check", "helm"])
        .output()
        .map_err(|e| format!("cannot run scripts/k8s-build --check helm: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().last() {
        Some(bin) if output.status.success() => match Helm::discover_in(bin.as_ref()) {
            Helm::Unavailable => Err(format!("helm is not in {bin}")),
            helm => Ok(helm),
        },
        _ => Err(format!(
            "helm is not built; run scripts/k8s-build helm: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}
