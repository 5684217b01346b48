//! Overlays: a cluster gets the first overlay whose selector matches; its variables
//! override the bundle's, its manifests merge over the base or add objects, and overlay
//! directories are never part of the base.

#![allow(clippy::unwrap_used)]

use crate::support::fixture;

use fixture::{Fixture, cluster};
use flotilla_core::render::{RenderedBundle, Tools, render_bundle};

fn fixture() -> Fixture {
    let repo = Fixture::new();
    repo.spec(
        "  - name: web
    path: web
    namespace: web
    variables: {replicas: 1, tier: standard}
    overlays:
      - name: prod-eu
        clusterSelector: {matchLabels: {env: prod, region: eu}}
        path: overlays/prod
        variables: {replicas: 5}
      - name: prod
        clusterSelector: {matchLabels: {env: prod}}
        path: overlays/prod
        variables: {replicas: 3}
      - name: staging
        clusterSelector: {matchLabels: {env: staging}}
        variables: {tier: gold}
",
    );
    repo.write(
        "web/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {tier: \"${tier}\"}\nspec:\n  replicas: ${replicas}\n  strategy: {type: Recreate}\n",
    );
    repo.write(
        "web/overlays/prod/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  strategy: {type: RollingUpdate}\n  minReadySeconds: 10\n",
    );
    repo.write(
        "web/overlays/prod/pdb.yaml",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\nspec: {minAvailable: 1}\n",
    );
    repo
}

fn render(repo: &Fixture, labels: &[(&str, &str)]) -> RenderedBundle {
    render_bundle(
        &repo.load().unwrap(),
        "web",
        &cluster("c", labels),
        &Tools::none(),
    )
    .unwrap()
}

fn kinds(bundle: &RenderedBundle) -> Vec<&str> {
    bundle.objects.iter().map(|o| o.id.kind.as_str()).collect()
}

#[test]
fn first_matching_overlay_wins() {
    let repo = fixture();
    let eu = render(&repo, &[("env", "prod"), ("region", "eu")]);
    assert_eq!(eu.objects[0].object["spec"]["replicas"], 5);
    let us = render(&repo, &[("env", "prod"), ("region", "us")]);
    assert_eq!(us.objects[0].object["spec"]["replicas"], 3);
}

#[test]
fn overlay_manifests_merge_over_base_and_add_objects() {
    let repo = fixture();
    let prod = render(&repo, &[("env", "prod")]);
    assert_eq!(kinds(&prod), ["Deployment", "PodDisruptionBudget"]);
    let deployment = &prod.objects[0].object;
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(deployment["spec"]["minReadySeconds"], 10);
    assert_eq!(
        deployment["metadata"]["labels"]["tier"], "standard",
        "base fields stay"
    );
    assert_eq!(prod.objects[1].object["metadata"]["namespace"], "web");
}

#[test]
fn clusters_without_overlay_get_the_base_only() {
    let repo = fixture();
    let dev = render(&repo, &[("env", "dev")]);
    assert_eq!(
        kinds(&dev),
        ["Deployment"],
        "the overlay directory is not part of the base"
    );
    assert_eq!(
        dev.objects[0].object["spec"]["strategy"]["type"],
        "Recreate"
    );
    assert_eq!(dev.objects[0].object["spec"]["replicas"], 1);
}

#[test]
fn overlay_without_path_only_sets_variables() {
    let repo = fixture();
    let staging = render(&repo, &[("env", "staging")]);
    assert_eq!(kinds(&staging), ["Deployment"]);
    assert_eq!(
        staging.objects[0].object["metadata"]["labels"]["tier"],
        "gold"
    );
}
