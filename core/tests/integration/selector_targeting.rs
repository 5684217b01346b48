//! Label selectors written in `flotilla.yaml` decide which clusters get a bundle, with
//! Kubernetes semantics, and the CLI's string form means the same as the YAML form.

#![allow(clippy::unwrap_used)]

use crate::support::fixture;

use fixture::{Fixture, cluster};
use flotilla_core::LabelSelector;
use flotilla_core::render::{Tools, render_fleet};

const SELECTOR: &str = "
      matchLabels: {env: prod}
      matchExpressions:
        - {key: region, operator: In, values: [eu, us]}
        - {key: tier, operator: NotIn, values: [batch]}
        - {key: gpu, operator: Exists}
        - {key: legacy, operator: DoesNotExist}
";

#[test]
fn bundle_selector_targets_only_matching_clusters() {
    let repo = Fixture::new();
    repo.spec(&format!(
        "  - name: app\n    path: app\n    clusterSelector:{SELECTOR}"
    ));
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    );
    let clusters = vec![
        cluster("match", &[("env", "prod"), ("region", "eu"), ("gpu", "")]),
        cluster(
            "no-tier-is-fine",
            &[("env", "prod"), ("region", "us"), ("gpu", "a100")],
        ),
        cluster(
            "wrong-region",
            &[("env", "prod"), ("region", "ap"), ("gpu", "")],
        ),
        cluster(
            "batch",
            &[
                ("env", "prod"),
                ("region", "eu"),
                ("gpu", ""),
                ("tier", "batch"),
            ],
        ),
        cluster("no-gpu", &[("env", "prod"), ("region", "eu")]),
        cluster(
            "legacy",
            &[
                ("env", "prod"),
                ("region", "eu"),
                ("gpu", ""),
                ("legacy", "yes"),
            ],
        ),
        cluster("dev", &[("env", "dev"), ("region", "eu"), ("gpu", "")]),
    ];
    let rendered = render_fleet(&repo.load().unwrap(), &clusters, &Tools::none());
    let targeted: Vec<&str> = rendered
        .clusters
        .iter()
        .filter(|(_, bundles)| bundles.contains_key("app"))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(targeted, ["match", "no-tier-is-fine"]);
}

#[test]
fn string_form_equals_yaml_form() {
    let from_yaml: LabelSelector = serde_json::from_value(serde_json::json!({
        "matchLabels": {"env": "prod"},
        "matchExpressions": [
            {"key": "region", "operator": "In", "values": ["eu", "us"]},
            {"key": "tier", "operator": "NotIn", "values": ["batch"]},
            {"key": "gpu", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }))
    .unwrap();
    let from_text =
        LabelSelector::parse("env=prod,region in (eu,us),tier notin (batch),gpu,!legacy").unwrap();
    assert_eq!(from_text, from_yaml);
}

#[test]
fn invalid_selector_in_the_spec_is_located() {
    let repo = Fixture::new();
    repo.spec("  - name: app\n    path: app\n    clusterSelector:\n      matchExpressions:\n        - {key: gpu, operator: Exists, values: [a]}\n");
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    );
    let errors = repo.load().unwrap_err().errors;
    let text = errors[0].to_string();
    assert!(text.starts_with("flotilla.yaml:10:"), "{text}");
    assert!(text.contains("takes no values"), "{text}");
}
