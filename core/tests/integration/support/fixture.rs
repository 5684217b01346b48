//! A repository in a temporary directory, written file by file.

use std::path::{Path, PathBuf};

use flotilla_core::render::Kustomize;
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

/// The kustomize tool, or `None` after saying loudly why the test is skipped. Under
/// `CI=true` a missing tool fails the test instead.
pub(crate) fn kustomize_or_skip(test: &str) -> Option<Kustomize> {
    match Kustomize::discover() {
        Kustomize::Unavailable if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: neither kustomize nor kubectl is on PATH, and CI=true requires them")
        }
        Kustomize::Unavailable => {
            eprintln!("SKIPPED {test}: neither kustomize nor kubectl is on PATH");
            None
        }
        tool => Some(tool),
    }
}
