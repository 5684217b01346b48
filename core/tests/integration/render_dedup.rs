//! Clusters whose render inputs are equal (bundle, overlay, values of the references the
//! bundle uses) are rendered once; equal content is stored once.

#![allow(clippy::unwrap_used)]

use crate::support::fixture;

use fixture::{Fixture, cluster};
use flotilla_core::render::{Tools, render_fleet};

fn repo() -> Fixture {
    let repo = Fixture::new();
    repo.spec(
        "  - name: regional
    path: regional
    overlays:
      - name: prod
        clusterSelector: {matchLabels: {env: prod}}
        variables: {size: large}
    variables: {size: small}
  - name: named
    path: named
  - name: static
    path: static
",
    );
    repo.write(
        "regional/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: regional}\ndata: {region: \"${cluster.labels.region}\", size: \"${size}\"}\n",
    );
    repo.write("named/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: named}\ndata: {cluster: \"${cluster.name}\"}\n");
    repo.write(
        "static/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: static}\n",
    );
    repo
}

#[test]
fn equal_inputs_render_once_and_unused_labels_do_not_split_renders() {
    let repo = repo();
    let clusters = vec![
        cluster("eu-1", &[("region", "eu"), ("env", "dev"), ("team", "a")]),
        cluster("eu-2", &[("region", "eu"), ("env", "dev"), ("team", "b")]),
        cluster("eu-3", &[("region", "eu"), ("env", "prod")]),
        cluster("us-1", &[("region", "us"), ("env", "dev")]),
    ];
    let rendered = render_fleet(&repo.load().unwrap(), &clusters, &Tools::none());
    assert!(rendered.is_clean());
    assert_eq!(rendered.pairs(), 12);
    // regional: (eu, small), (eu, large), (us, small); named: 4; static: 1.
    assert_eq!(rendered.distinct_renders, 3 + 4 + 1);
    assert_eq!(rendered.blobs.len(), 8);
    let regional = |name: &str| rendered.clusters[name]["regional"].clone().unwrap();
    assert_eq!(
        regional("eu-1"),
        regional("eu-2"),
        "team differs but is not used"
    );
    assert_ne!(
        regional("eu-1"),
        regional("eu-3"),
        "the prod overlay changes a value"
    );
    assert_ne!(regional("eu-1"), regional("us-1"));
    let statics: Vec<_> = clusters
        .iter()
        .map(|c| rendered.clusters[&c.name]["static"].clone().unwrap())
        .collect();
    assert!(statics.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn an_error_is_reported_for_each_cluster_it_concerns() {
    let repo = repo();
    let clusters = vec![
        cluster("eu-1", &[("region", "eu")]),
        cluster("none-1", &[]),
        cluster("none-2", &[]),
    ];
    let rendered = render_fleet(&repo.load().unwrap(), &clusters, &Tools::none());
    let failed: Vec<(&str, &str)> = rendered.errors().map(|(c, b, _)| (c, b)).collect();
    assert_eq!(failed, [("none-1", "regional"), ("none-2", "regional")]);
    assert!(rendered.clusters["eu-1"]["regional"].is_ok());
    assert!(
        rendered.clusters["none-1"]["static"].is_ok(),
        "other bundles still render"
    );
}

#[test]
fn clusters_a_bundle_does_not_target_get_nothing_from_it() {
    let repo = Fixture::new();
    repo.spec(
        "  - name: prod-only\n    path: p\n    clusterSelector: {matchLabels: {env: prod}}\n",
    );
    repo.write(
        "p/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p}\n",
    );
    let clusters = vec![
        cluster("dev-1", &[("env", "dev")]),
        cluster("prod-1", &[("env", "prod")]),
    ];
    let rendered = render_fleet(&repo.load().unwrap(), &clusters, &Tools::none());
    assert!(rendered.clusters["dev-1"].is_empty());
    assert!(rendered.clusters["prod-1"].contains_key("prod-only"));
}
