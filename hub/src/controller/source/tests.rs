#![allow(clippy::unwrap_used)]

use std::path::Path;

use git2::{Oid, Repository, Signature};

use super::*;

/// A repository with a working tree to commit from, like a developer's clone.
struct Origin {
    dir: tempfile::TempDir,
    repo: Repository,
}

impl Origin {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        repo.set_head("refs/heads/main").unwrap();
        Origin { dir, repo }
    }

    fn write(&self, path: &str, content: &[u8]) {
        let file = self.dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }

    fn commit(&self, message: &str) -> String {
        let mut index = self.repo.index().unwrap();
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let signature = Signature::now("t", "t@example.com").unwrap();
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(
                Some("HEAD"),
                &signature,
                &signature,
                message,
                &tree,
                &parents,
            )
            .unwrap()
            .to_string()
    }

    fn reset_hard(&self, commit: &str) {
        let object = self
            .repo
            .find_object(Oid::from_str(commit).unwrap(), None)
            .unwrap();
        self.repo
            .reset(&object, git2::ResetType::Hard, None)
            .unwrap();
    }

    fn source(&self, branch: &str) -> SourceConfig {
        SourceConfig::new(format!("file://{}", self.dir.path().display()), branch)
    }
}

fn mirror(data: &Path, source: &SourceConfig) -> SourceMirror {
    SourceMirror::open(data, source).unwrap()
}

#[test]
fn a_fetch_follows_the_branch_through_a_force_push() {
    let origin = Origin::new();
    origin.write("a.txt", b"one");
    let first = origin.commit("one");
    origin.write("a.txt", b"two");
    let second = origin.commit("two");
    let data = tempfile::tempdir().unwrap();
    let source = origin.source("main");
    let mirror = mirror(data.path(), &source);
    assert_eq!(mirror.fetch(&source).unwrap(), second);

    origin.reset_hard(&first);
    origin.write("a.txt", b"rewritten");
    let rewritten = origin.commit("rewritten");
    assert_eq!(mirror.fetch(&source).unwrap(), rewritten);
    assert!(mirror.has_commit(&second), "objects fetched before stay");
    assert!(mirror.has_commit(&rewritten));
    assert_eq!(*mirror.watch_fetches().borrow(), 2);

    // Reopening the mirror (a restarted hub) keeps what it fetched.
    let reopened = SourceMirror::open(data.path(), &source).unwrap();
    assert!(reopened.has_commit(&rewritten));
}

#[test]
fn a_checkout_writes_the_tree_byte_for_byte_with_links_as_links() {
    let origin = Origin::new();
    // Attributes that would rewrite line endings on a normal checkout.
    origin.write(".gitattributes", b"* text eol=crlf\n");
    origin.write("bundles/app/config.yaml", b"a: 1\nb: 2\n");
    std::os::unix::fs::symlink(
        "config.yaml",
        origin.dir.path().join("bundles/app/link.yaml"),
    )
    .unwrap();
    let commit = origin.commit("files");
    let data = tempfile::tempdir().unwrap();
    let source = origin.source("main");
    let mirror = mirror(data.path(), &source);
    mirror.fetch(&source).unwrap();
    let target = tempfile::tempdir().unwrap();
    mirror.checkout(&commit, target.path()).unwrap();
    let config = target.path().join("bundles/app/config.yaml");
    assert_eq!(std::fs::read(&config).unwrap(), b"a: 1\nb: 2\n");
    let link = target.path().join("bundles/app/link.yaml");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("config.yaml"));
}

#[test]
fn fetching_a_missing_branch_or_checking_out_a_missing_commit_says_what() {
    let origin = Origin::new();
    origin.write("a.txt", b"one");
    origin.commit("one");
    let data = tempfile::tempdir().unwrap();
    let source = origin.source("release");
    let mirror = mirror(data.path(), &source);
    let error = mirror.fetch(&source).unwrap_err().to_string();
    assert!(error.contains("branch `release`"), "{error}");
    assert!(error.contains("check the URL"), "{error}");
    let target = tempfile::tempdir().unwrap();
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let error = mirror.checkout(missing, target.path()).unwrap_err();
    assert!(
        matches!(error, MirrorError::MissingCommit { .. }),
        "{error}"
    );
    assert!(!mirror.has_commit(missing));
}

#[test]
fn a_submodule_or_an_oversized_file_is_refused_before_anything_is_written() {
    let origin = Origin::new();
    origin.write("bundles/app/config.yaml", b"a: 1\n");
    let first = origin.commit("files");
    // A gitlink, as `git submodule add` records one.
    let head = origin
        .repo
        .find_commit(Oid::from_str(&first).unwrap())
        .unwrap();
    let mut builder = origin
        .repo
        .treebuilder(Some(&head.tree().unwrap()))
        .unwrap();
    builder.insert("vendored", head.id(), 0o160000).unwrap();
    let tree = origin.repo.find_tree(builder.write().unwrap()).unwrap();
    let signature = Signature::now("t", "t@example.com").unwrap();
    let with_submodule = origin
        .repo
        .commit(
            Some("HEAD"),
            &signature,
            &signature,
            "submodule",
            &tree,
            &[&head],
        )
        .unwrap()
        .to_string();

    let data = tempfile::tempdir().unwrap();
    let source = origin.source("main");
    let mirror = mirror(data.path(), &source);
    mirror.fetch(&source).unwrap();
    let target = tempfile::tempdir().unwrap();
    let error = mirror.checkout(&with_submodule, target.path()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("`vendored` is a git submodule") && message.contains("vendor its files"),
        "{message}"
    );
    assert!(
        !target.path().join("bundles").exists(),
        "nothing was written"
    );

    origin.reset_hard(&first);
    let big = vec![0u8; usize::try_from(mirror::MAX_CHECKOUT_FILE_BYTES).unwrap() + 1];
    origin.write("assets/huge.bin", &big);
    let with_big_file = origin.commit("a huge file");
    mirror.fetch(&source).unwrap();
    let target = tempfile::tempdir().unwrap();
    let error = mirror.checkout(&with_big_file, target.path()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("`assets/huge.bin` is 33554433 bytes")
            && message.contains("bound is fixed"),
        "{message}"
    );
    assert!(
        !target.path().join("assets").exists(),
        "nothing was written"
    );
}
