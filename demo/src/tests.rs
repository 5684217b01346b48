#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_core::{Limits, Repository, Tools};

use super::banner::{Banner, missing_cli_note, shell_quote};
use super::place::Place;
use super::{listen_address, repo};

fn example_on_disk() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet")
}

fn files_under(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != ".git") {
                    stack.push(path);
                }
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn the_embedded_example_is_the_example_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    repo::EXAMPLE.extract(dir.path()).unwrap();
    // A file added to examples/fleet is embedded only once this crate is rebuilt from a
    // changed source: touch demo/src/repo.rs.
    assert_eq!(files_under(dir.path()), files_under(&example_on_disk()));
}

#[test]
fn the_demo_repository_is_the_example_committed_on_main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let made = repo::prepare(&path, &repo::render_tools()).unwrap();
    assert!(!made.resumed);
    let git = git2::Repository::open(&path).unwrap();
    assert_eq!(git.head().unwrap().name().unwrap(), "refs/heads/main");
    let commit = git.head().unwrap().peel_to_commit().unwrap();
    assert_eq!(commit.parent_count(), 0);
    // Committed: the working tree has nothing the commit lacks.
    let statuses = git.statuses(None).unwrap();
    assert!(
        statuses.is_empty(),
        "uncommitted files in the demo repository"
    );
    // `git commit` works there without a global identity.
    let config = git.config().unwrap().snapshot().unwrap();
    assert_eq!(config.get_str("user.name").unwrap(), "Flotilla demo");
    let tree = commit.tree().unwrap();
    assert!(tree.get_path(Path::new("flotilla.yaml")).is_ok());
    assert!(
        tree.get_path(Path::new("bundles/web/deployment.yaml"))
            .is_ok()
    );

    let again = repo::prepare(&path, &repo::render_tools()).unwrap();
    assert!(again.resumed);
    let head = git2::Repository::open(&path)
        .unwrap()
        .head()
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .id();
    assert_eq!(head, commit.id(), "a kept repository is reused as it is");
}

#[test]
fn without_kustomize_or_helm_their_bundles_are_left_out_and_the_rest_renders() {
    let dir = tempfile::tempdir().unwrap();
    repo::EXAMPLE.extract(dir.path()).unwrap();
    let removed = repo::leave_out(dir.path(), repo::Unrenderable::Kustomization).unwrap();
    assert_eq!(removed, ["cache"]);
    let removed = repo::leave_out(dir.path(), repo::Unrenderable::Chart).unwrap();
    assert_eq!(removed, ["status"]);

    let loaded = Repository::load(dir.path(), Limits::default()).unwrap();
    let names: Vec<&str> = loaded
        .spec()
        .bundles
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    assert_eq!(names, ["monitoring", "web"]);
    let web = &loaded.spec().bundles[1];
    assert!(web.depends_on.is_empty(), "web no longer waits for cache");
    assert_eq!(web.overlays.len(), 2, "the rest of the spec is kept");
    assert_eq!(loaded.spec().stages.len(), 3);

    let clusters = flotilla_core::inventory::load_inventory(
        &dir.path().join(repo::INVENTORY),
        &Limits::default(),
    )
    .unwrap();
    let rendered = flotilla_core::render_fleet(&loaded, &clusters, &Tools::none());
    let errors: Vec<String> = rendered
        .errors()
        .map(|(c, b, e)| format!("{c}/{b}: {e}"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(rendered.clusters.len(), 5);
}

#[test]
fn a_free_default_address_is_used_and_a_taken_one_falls_back_to_a_free_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (chosen, note) = listen_address(None, &address, "--api-listen").unwrap();
    assert_eq!(chosen, "127.0.0.1:0");
    let note = note.unwrap();
    assert!(
        note.contains(&address) && note.contains("--api-listen"),
        "{note}"
    );

    drop(taken);
    let (chosen, note) = listen_address(None, &address, "--api-listen").unwrap();
    assert_eq!((chosen.as_str(), note), (address.as_str(), None));

    let (chosen, note) = listen_address(Some("127.0.0.1:9"), &address, "--api-listen").unwrap();
    assert_eq!((chosen.as_str(), note), ("127.0.0.1:9", None));
}

#[test]
fn a_data_dir_holding_something_else_is_refused_and_a_temporary_one_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let error = Place::prepare(Some(dir.path())).err().unwrap().to_string();
    assert!(error.contains("neither empty nor a kept demo"), "{error}");

    let place = Place::prepare(None).unwrap();
    let root = place.root().to_path_buf();
    assert!(root.is_dir());
    let said = place.finish(false).unwrap();
    assert!(!root.exists() && said.contains("Removed"), "{said}");

    let place = Place::prepare(None).unwrap();
    let root = place.root().to_path_buf();
    let said = place.finish(true).unwrap();
    assert!(root.is_dir() && said.contains("--data-dir"), "{said}");
    std::fs::remove_dir_all(root).unwrap();
}

fn banner(dir: &str) -> Banner {
    let root = PathBuf::from(dir);
    Banner {
        api: "127.0.0.1:7071".parse().unwrap(),
        http: "127.0.0.1:7080".parse().unwrap(),
        ca_file: root.join("hub/ca.crt"),
        token: "flt_0123456789abcdef_secret".into(),
        kubeconfig: root.join("kubeconfig"),
        repo: root.join("repo"),
        poll_interval: Duration::from_secs(2),
        clusters: vec!["dev-1".into(), "prod-eu-1".into()],
        real: false,
        data_dir: root.clone(),
        removed_on_exit: true,
        log: root.join("demo.log"),
        bin_dir: None,
        notes: vec!["127.0.0.1:7080 is taken".into()],
    }
}

#[test]
fn the_banner_prints_the_environment_to_export_and_what_to_try() {
    let text = banner("/tmp/flotilla-demo-x").render();
    assert!(
        text.contains("\n  export FLOTILLA_HUB=127.0.0.1:7071\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  export KUBECONFIG=/tmp/flotilla-demo-x/kubeconfig\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  export FLOTILLA_CA_FILE=/tmp/flotilla-demo-x/hub/ca.crt\n")
            && text.contains("\n  export FLOTILLA_TOKEN=flt_0123456789abcdef_secret\n"),
        "{text}"
    );
    assert!(text.contains("https://127.0.0.1:7080/"), "{text}");
    assert!(text.contains("cd /tmp/flotilla-demo-x/repo"), "{text}");
    assert!(text.contains("git commit -am"), "{text}");
    assert!(text.contains("flotilla status --watch"), "{text}");
    assert!(text.contains("flotilla approve prod"), "{text}");
    assert!(text.contains("kubectl --context prod-eu-1"), "{text}");
    assert!(text.contains("Note: 127.0.0.1:7080 is taken."), "{text}");
    assert!(text.contains("removed when the demo stops"), "{text}");
}

#[test]
fn paths_with_spaces_or_quotes_are_quoted_for_the_shell() {
    assert_eq!(shell_quote("/tmp/a-b_c.d"), "/tmp/a-b_c.d");
    assert_eq!(shell_quote("/tmp/my demo"), "'/tmp/my demo'");
    assert_eq!(shell_quote("it's"), r"'it'\''s'");
    let text = banner("/tmp/my demo").render();
    assert!(
        text.contains("export KUBECONFIG='/tmp/my demo/kubeconfig'"),
        "{text}"
    );
}

#[test]
fn the_commit_the_banner_suggests_edits_the_example() {
    let text = banner("/tmp/flotilla-demo-x").render();
    assert!(
        text.contains("s/Hello from/Hi from/' bundles/web/configmap.yaml"),
        "{text}"
    );
    let file = repo::EXAMPLE
        .get_file("bundles/web/configmap.yaml")
        .and_then(|f| f.contents_utf8())
        .unwrap();
    assert!(file.contains("Hello from"), "{file}");
    let spec = repo::EXAMPLE
        .get_file("flotilla.yaml")
        .and_then(|f| f.contents_utf8())
        .unwrap();
    assert!(
        spec.contains("approval: manual"),
        "prod still needs `flotilla approve prod`"
    );
}

#[test]
fn the_banner_says_how_to_build_the_cli_only_when_it_is_not_beside_the_demo_nor_on_path() {
    let target = tempfile::tempdir().unwrap();
    let release = target.path().join("release");
    std::fs::create_dir(&release).unwrap();
    let empty = std::ffi::OsString::new();

    let note = missing_cli_note(&release, &empty).unwrap();
    assert!(
        note.contains("`cargo build --release -p flotilla-cli`"),
        "{note}"
    );
    assert!(note.contains(&release.display().to_string()), "{note}");

    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("flotilla"), "").unwrap();
    let path = std::env::join_paths([elsewhere.path()]).unwrap();
    assert_eq!(missing_cli_note(&release, &path), None, "on PATH");

    std::fs::write(release.join("flotilla"), "").unwrap();
    assert_eq!(missing_cli_note(&release, &empty), None, "beside the demo");
}
