//! The example repository (`examples/fleet`) loads and renders for its inventory with the
//! per-cluster values the demo relies on.

#![allow(clippy::unwrap_used)]

use crate::support::fixture;

use std::path::PathBuf;

use fixture::{helm_or_skip, kustomize_or_skip};
use flotilla_core::inventory::load_inventory;
use flotilla_core::render::render_fleet;
use flotilla_core::{Limits, Repository};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet")
}

#[test]
fn example_fleet_renders_every_bundle_for_every_cluster() {
    let test = "example_fleet_renders_every_bundle_for_every_cluster";
    let (Some(tool), Some(helm)) = (kustomize_or_skip(test), helm_or_skip(test)) else {
        return;
    };
    let tool = tool.with_helm(helm);
    let repo = Repository::load(&example(), Limits::default()).unwrap();
    let clusters = load_inventory(&example().join("clusters.yaml"), &Limits::default()).unwrap();
    assert_eq!(clusters.len(), 5);
    let rendered = render_fleet(&repo, &clusters, &tool);
    let errors: Vec<String> = rendered
        .errors()
        .map(|(c, b, e)| format!("{c}/{b}: {e}"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(rendered.pairs(), 20);
    assert_eq!(
        rendered.distinct_renders, 16,
        "web 5, monitoring 3 regions, cache 3 environments, status 5 (the cluster's name)"
    );

    let object = |cluster: &str, bundle: &str, kind: &str| {
        let hash = rendered.clusters[cluster][bundle].as_ref().unwrap();
        rendered.blobs[hash]
            .objects
            .iter()
            .find(|o| o.id.kind == kind)
            .map(|o| o.object.clone())
    };
    let config = object("prod-us-1", "web", "ConfigMap").unwrap();
    assert_eq!(config["data"]["CLUSTER_NAME"], "prod-us-1");
    assert_eq!(config["data"]["REGION"], "us");
    assert_eq!(config["metadata"]["namespace"], "web");
    assert_eq!(
        object("prod-us-1", "web", "Deployment").unwrap()["spec"]["replicas"],
        3
    );
    assert_eq!(
        object("staging-1", "web", "Deployment").unwrap()["spec"]["replicas"],
        2
    );
    assert_eq!(
        object("dev-1", "web", "Deployment").unwrap()["spec"]["replicas"],
        1
    );
    assert!(object("prod-eu-1", "web", "PodDisruptionBudget").is_some());
    assert!(object("dev-1", "web", "PodDisruptionBudget").is_none());
    assert_eq!(
        object("prod-ap-1", "cache", "Deployment").unwrap()["spec"]["replicas"],
        2
    );
    let hash = rendered.clusters["prod-eu-1"]["web"].as_ref().unwrap();
    assert_eq!(rendered.blobs[hash].depends_on, ["cache"]);

    let stage = |name: &str| {
        let cluster = clusters.iter().find(|c| c.name == name).unwrap();
        repo.spec()
            .stage_for(&cluster.labels)
            .unwrap()
            .unwrap()
            .name
            .clone()
    };
    assert_eq!(stage("dev-1"), "dev");
    assert_eq!(stage("prod-ap-1"), "prod");
}
