//! Nothing in a repository may point outside it: bundle paths, overlay paths, links to
//! files or directories, and kustomize references are all refused when they leave the root.

#![allow(clippy::unwrap_used)]

use crate::support::fixture;

use std::os::unix::fs::symlink;

use fixture::{Fixture, cluster};
use flotilla_core::SpecError;
use flotilla_core::render::{Kustomize, RenderError, Tools, render_bundle};

const MANIFEST: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";

#[test]
fn symlink_to_a_file_outside_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.yaml"), MANIFEST).unwrap();
    let repo = Fixture::new();
    repo.spec("  - name: app\n    path: app\n");
    repo.write("app/ok.yaml", MANIFEST);
    symlink(
        outside.path().join("secret.yaml"),
        repo.root().join("app/secret.yaml"),
    )
    .unwrap();
    let errors = repo.load().expect_err("escaping link").errors;
    assert_eq!(errors.len(), 1);
    assert!(
        matches!(&errors[0], SpecError::Escape { location, .. } if location.file == "app/secret.yaml"),
        "{}",
        errors[0]
    );
}

#[test]
fn symlink_to_a_directory_outside_is_refused_even_when_unused() {
    let repo = Fixture::new();
    repo.spec("  - name: app\n    path: app\n");
    repo.write("app/ok.yaml", MANIFEST);
    symlink("/etc", repo.root().join("docs-link")).unwrap();
    let errors = repo.load().expect_err("escaping link").errors;
    assert!(
        errors[0]
            .to_string()
            .contains("docs-link: `/etc` leads outside the repository"),
        "{}",
        errors[0]
    );
}

#[test]
fn dangling_relative_link_climbing_out_is_refused() {
    let repo = Fixture::new();
    repo.spec("  - name: app\n    path: app\n");
    repo.write("app/ok.yaml", MANIFEST);
    symlink("../../../../nowhere/x.yaml", repo.root().join("app/x.yaml")).unwrap();
    assert!(repo.load().is_err());
}

#[test]
fn bundle_path_through_a_link_outside_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("cm.yaml"), MANIFEST).unwrap();
    let repo = Fixture::new();
    repo.spec("  - name: app\n    path: ../outside\n");
    let errors = repo.load().expect_err("path outside").errors;
    assert!(
        matches!(errors[0], SpecError::Escape { .. }),
        "{}",
        errors[0]
    );
    assert_eq!(errors[0].location().line, Some(8));
}

#[test]
fn links_inside_the_repository_are_followed() {
    let repo = Fixture::new();
    repo.spec("  - name: app\n    path: app\n");
    repo.write("shared/cm.yaml", MANIFEST);
    std::fs::create_dir_all(repo.root().join("app")).unwrap();
    symlink("../shared", repo.root().join("app/shared")).unwrap();
    let loaded = repo.load().unwrap();
    let bundle = render_bundle(&loaded, "app", &cluster("a", &[]), &Tools::none()).unwrap();
    assert_eq!(bundle.objects.len(), 1);
}

#[test]
fn kustomization_referencing_outside_or_remote_is_refused_before_running() {
    let repo = Fixture::new();
    repo.spec("  - name: app\n    path: app\n");
    repo.write(
        "app/kustomization.yaml",
        "resources:\n  - cm.yaml\n  - ../../..\n",
    );
    repo.write("app/cm.yaml", MANIFEST);
    let loaded = repo.load().unwrap();
    // The check runs before any tool is needed, so an unavailable tool still sees it.
    let error = render_bundle(
        &loaded,
        "app",
        &cluster("a", &[]),
        &Tools::none().with_kustomize(Kustomize::Kubectl("/nonexistent/kubectl".into())),
    )
    .unwrap_err();
    assert!(
        matches!(&error, RenderError::Escape { location, .. } if location.to_string() == "app/kustomization.yaml:3:5"),
        "{error}"
    );

    repo.write(
        "app/kustomization.yaml",
        "resources:\n  - cm.yaml\n  - https://github.com/example/repo//deploy?ref=v1\n",
    );
    let loaded = repo.load().unwrap();
    let error = render_bundle(
        &loaded,
        "app",
        &cluster("a", &[]),
        &Tools::none().with_kustomize(Kustomize::Kubectl("/nonexistent/kubectl".into())),
    )
    .unwrap_err();
    assert!(
        matches!(error, RenderError::RemoteResource { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("vendor it into the repository"),
        "{error}"
    );

    repo.write(
        "app/kustomization.yaml",
        "resources:\n  - cm.yaml\n  - github.com/example/repo/deploy\n",
    );
    let loaded = repo.load().unwrap();
    let error = render_bundle(
        &loaded,
        "app",
        &cluster("a", &[]),
        &Tools::none().with_kustomize(Kustomize::Kubectl("/nonexistent/kubectl".into())),
    )
    .unwrap_err();
    assert!(
        matches!(error, RenderError::RemoteResource { .. }),
        "{error}"
    );
}
