//! Kustomize bundles are built with `kustomize build` or `kubectl kustomize`; an overlay
//! with a kustomization replaces the bundle's build; a missing tool is a clear error.

#![allow(clippy::unwrap_used)]

use crate::support::fixture;

use fixture::{Fixture, cluster, kustomize_or_skip};
use flotilla_core::render::{Kustomize, RenderError, Tools, render_bundle};

fn kustomize_repo() -> Fixture {
    let repo = Fixture::new();
    repo.spec(
        "  - name: cache
    path: cache/base
    overlays:
      - name: prod
        clusterSelector: {matchLabels: {env: prod}}
        path: ../overlays/prod
",
    );
    repo.write(
        "cache/base/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: cache\nresources:\n  - deployment.yaml\n",
    );
    repo.write(
        "cache/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: redis\n  labels: {cluster: \"${cluster.name}\"}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: redis}}\n  template:\n    metadata: {labels: {app: redis}}\n    spec: {containers: [{name: redis, image: redis:7}]}\n",
    );
    repo.write(
        "cache/overlays/prod/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../base\nreplicas:\n  - name: redis\n    count: 3\n",
    );
    repo
}

#[test]
fn base_kustomization_is_built_and_substituted() {
    let Some(tool) = kustomize_or_skip("base_kustomization_is_built_and_substituted") else {
        return;
    };
    let repo = kustomize_repo();
    let bundle = render_bundle(
        &repo.load().unwrap(),
        "cache",
        &cluster("dev-1", &[("env", "dev")]),
        &tool,
    )
    .unwrap();
    let deployment = &bundle.objects[0];
    assert_eq!(deployment.id.namespace.as_deref(), Some("cache"));
    assert_eq!(deployment.object["spec"]["replicas"], 1);
    assert_eq!(deployment.object["metadata"]["labels"]["cluster"], "dev-1");
}

#[test]
fn overlay_kustomization_replaces_the_base_build() {
    let Some(tool) = kustomize_or_skip("overlay_kustomization_replaces_the_base_build") else {
        return;
    };
    let repo = kustomize_repo();
    let bundle = render_bundle(
        &repo.load().unwrap(),
        "cache",
        &cluster("prod-1", &[("env", "prod")]),
        &tool,
    )
    .unwrap();
    assert_eq!(bundle.objects[0].object["spec"]["replicas"], 3);
}

#[test]
fn failing_build_reports_the_directory_and_kustomize_message() {
    let Some(tool) = kustomize_or_skip("failing_build_reports_the_directory_and_kustomize_message")
    else {
        return;
    };
    let repo = kustomize_repo();
    repo.write(
        "cache/base/kustomization.yaml",
        "resources:\n  - missing.yaml\n",
    );
    let error =
        render_bundle(&repo.load().unwrap(), "cache", &cluster("d", &[]), &tool).unwrap_err();
    let RenderError::KustomizeFailed {
        location, message, ..
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!(location.file, "cache/base");
    assert!(message.contains("missing.yaml"), "{message}");
}

#[test]
fn missing_tool_is_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let tool = Kustomize::discover_in(empty.path().as_os_str());
    assert_eq!(tool, Kustomize::Unavailable);
    let repo = kustomize_repo();
    let error = render_bundle(
        &repo.load().unwrap(),
        "cache",
        &cluster("d", &[]),
        &Tools::none().with_kustomize(tool),
    )
    .unwrap_err();
    assert!(
        matches!(error, RenderError::KustomizeMissing { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.starts_with("cache/base: ") && text.contains("neither `kustomize` nor `kubectl`"),
        "{text}"
    );
}

#[test]
fn standalone_kustomize_is_preferred_over_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["kubectl", "kustomize"] {
        std::fs::write(dir.path().join(name), "").unwrap();
    }
    let tool = Kustomize::discover_in(dir.path().as_os_str());
    assert_eq!(tool, Kustomize::Standalone(dir.path().join("kustomize")));
    std::fs::remove_file(dir.path().join("kustomize")).unwrap();
    assert_eq!(
        Kustomize::discover_in(dir.path().as_os_str()),
        Kustomize::Kubectl(dir.path().join("kubectl"))
    );
}

#[test]
fn kustomization_inside_a_plain_bundle_is_refused() {
    let repo = Fixture::new();
    repo.spec("  - name: app\n    path: app\n");
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    );
    repo.write("app/sub/kustomization.yaml", "resources: []\n");
    let error = render_bundle(
        &repo.load().unwrap(),
        "app",
        &cluster("a", &[]),
        &Tools::none(),
    )
    .unwrap_err();
    assert!(
        matches!(&error, RenderError::NestedKustomization { location } if location.file == "app/sub/kustomization.yaml"),
        "{error}"
    );
}
