//! A Git repository with a working tree in a temporary directory, committing on `main` with
//! git2, as a hub's `file://` source.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use git2::{IndexAddOption, Repository, Signature};
use tempfile::TempDir;

/// A repository committing on `main`.
pub struct GitRepo {
    dir: TempDir,
    repo: Repository,
}

impl GitRepo {
    /// An empty repository.
    pub fn new() -> anyhow::Result<GitRepo> {
        let dir = tempfile::tempdir()?;
        let repo = Repository::init(dir.path())?;
        repo.set_head("refs/heads/main")?;
        Ok(GitRepo { dir, repo })
    }

    /// The git2 repository, for what the methods here do not do (signed commits, branches).
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Moves `main` to `commit` and the working tree with it: what a force-push leaves behind.
    pub fn reset_hard(&self, commit: &str) -> anyhow::Result<()> {
        let object = self.repo.find_object(git2::Oid::from_str(commit)?, None)?;
        self.repo.reset(&object, git2::ResetType::Hard, None)?;
        Ok(())
    }

    /// The working tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The URL a hub follows it at.
    pub fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }

    /// Writes a file (creating its directories).
    pub fn write(&self, path: &str, content: &str) -> anyhow::Result<()> {
        let file = self.dir.path().join(path);
        std::fs::create_dir_all(file.parent().context("a file needs a directory")?)?;
        std::fs::write(&file, content).with_context(|| format!("writing {}", file.display()))
    }

    /// Replaces `from` with `to` in a file; fails when `from` is not there.
    pub fn edit(&self, path: &str, from: &str, to: &str) -> anyhow::Result<()> {
        let file = self.dir.path().join(path);
        let text = std::fs::read_to_string(&file)?;
        if !text.contains(from) {
            bail!("{path} does not contain {from:?}");
        }
        std::fs::write(file, text.replace(from, to))?;
        Ok(())
    }

    /// Removes a file or a directory tree.
    pub fn remove(&self, path: &str) -> anyhow::Result<()> {
        let target = self.dir.path().join(path);
        if target.is_dir() {
            std::fs::remove_dir_all(&target)?;
        } else {
            std::fs::remove_file(&target)?;
        }
        Ok(())
    }

    /// A symbolic link at `path` pointing to `target` (written as given).
    pub fn symlink(&self, target: &Path, path: &str) -> anyhow::Result<()> {
        let link = self.dir.path().join(path);
        std::fs::create_dir_all(link.parent().context("a link needs a directory")?)?;
        std::os::unix::fs::symlink(target, &link)
            .with_context(|| format!("linking {} to {}", link.display(), target.display()))
    }

    /// Copies a directory tree into the working tree.
    pub fn copy_from(&self, from: &Path) -> anyhow::Result<()> {
        copy_tree(from, self.dir.path())
    }

    /// Commits the whole working tree (additions, changes and removals) on `main`; returns the
    /// commit id.
    pub fn commit(&self, message: &str) -> anyhow::Result<String> {
        let mut index = self.repo.index()?;
        index.add_all(["*"], IndexAddOption::DEFAULT, None)?;
        index.update_all(["*"], None)?;
        index.write()?;
        let tree = self.repo.find_tree(index.write_tree()?)?;
        let signature = Signature::now("Flotilla Test", "test@flotilla.dev")?;
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let oid = self.repo.commit(
            Some("HEAD"),
            &signature,
            &signature,
            message,
            &tree,
            &parents,
        )?;
        Ok(oid.to_string())
    }
}

/// The example fleet of this workspace (`examples/fleet`).
pub fn example_fleet() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet")
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
