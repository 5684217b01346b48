//! Where the demo keeps its files: a temporary directory removed when it stops (unless
//! `--keep`), or a directory of the user's, which is never removed and lets a kept demo resume.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tempfile::TempDir;

/// A file in the data directory of a demo that ran on real clusters.
const REAL_MARK: &str = "real-clusters";

/// The demo's data directory.
pub(super) enum Place {
    /// Made for this run.
    Temporary(TempDir),
    /// Given with `--data-dir`.
    Given(PathBuf),
}

impl Place {
    /// A new temporary directory, or `given` (created when missing). A non-empty directory
    /// must hold an earlier demo, so nothing of the user's is mixed in.
    pub(super) fn prepare(given: Option<&Path>) -> anyhow::Result<Place> {
        let Some(dir) = given else {
            let dir = tempfile::Builder::new()
                .prefix("flotilla-demo-")
                .tempdir()
                .context("creating a temporary directory for the demo")?;
            return Ok(Place::Temporary(dir));
        };
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        let empty = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty && !dir.join("repo").join(".git").is_dir() {
            bail!(
                "--data-dir {} is neither empty nor a kept demo (no repo/.git in it); \
                 pass a new or empty directory",
                dir.display()
            );
        }
        Ok(Place::Given(dir))
    }

    /// The directory itself.
    pub(super) fn root(&self) -> &Path {
        match self {
            Place::Temporary(dir) => dir.path(),
            Place::Given(dir) => dir,
        }
    }

    /// Whether the demo made it (and removes it unless kept).
    pub(super) fn is_temporary(&self) -> bool {
        matches!(self, Place::Temporary(_))
    }

    /// The demo's Git repository, which the hub follows.
    pub(super) fn repo_dir(&self) -> PathBuf {
        self.root().join("repo")
    }

    /// The hub's raft log and source mirror.
    pub(super) fn hub_dir(&self) -> PathBuf {
        self.root().join("hub")
    }

    /// One state directory per agent, under this one.
    pub(super) fn agents_dir(&self) -> PathBuf {
        self.root().join("agents")
    }

    /// A kubeconfig with a context per simulated cluster.
    pub(super) fn kubeconfig(&self) -> PathBuf {
        self.root().join("kubeconfig")
    }

    /// The hub's, agents' and simulator's log.
    pub(super) fn log_file(&self) -> PathBuf {
        self.root().join("demo.log")
    }

    /// Whether a demo kept here ran on real clusters: it cannot resume, since the clusters its
    /// hub knows (by their kube-system UIDs) are gone.
    pub(super) fn ran_on_real_clusters(&self) -> bool {
        self.root().join(REAL_MARK).exists()
    }

    /// Marks the directory as a demo on real clusters.
    pub(super) fn mark_real(&self) -> anyhow::Result<()> {
        let mark = self.root().join(REAL_MARK);
        std::fs::write(&mark, "this demo ran on real clusters, stopped with it\n")
            .with_context(|| format!("writing {}", mark.display()))
    }

    /// Removes a temporary directory unless `keep`; says what became of the directory.
    pub(super) fn finish(self, keep: bool) -> anyhow::Result<String> {
        let resume = match self.ran_on_real_clusters() {
            true => String::new(),
            false => format!(
                "; resume with `flotilla demo --data-dir {}`",
                self.root().display()
            ),
        };
        match self {
            Place::Temporary(dir) if keep => {
                Ok(format!("Stopped. Kept {}{resume}.", dir.keep().display()))
            }
            Place::Temporary(dir) => {
                let path = dir.path().to_path_buf();
                dir.close()
                    .with_context(|| format!("removing {}", path.display()))?;
                Ok(format!("Stopped. Removed {}.", path.display()))
            }
            Place::Given(dir) => Ok(format!("Stopped. {} is kept{resume}.", dir.display())),
        }
    }
}
