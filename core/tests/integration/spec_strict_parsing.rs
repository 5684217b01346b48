//! `flotilla.yaml` is parsed strictly: unknown fields, wrong types and invalid values are
//! errors naming the file, line and column, and every problem is reported at once.

#![allow(clippy::unwrap_used)]

use crate::support::fixture;

use fixture::Fixture;
use flotilla_core::SpecError;

fn load_errors(spec: &str) -> Vec<SpecError> {
    let repo = Fixture::new();
    repo.write("flotilla.yaml", spec);
    repo.write(
        "bundles/web/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    );
    repo.load().expect_err("the spec is invalid").errors
}

#[test]
fn unknown_field_names_file_line_column_and_expected_fields() {
    let errors = load_errors(
        "apiVersion: flotilla.dev/v1\nkind: Fleet\nstages:\n  - name: dev\n    track: {branch: main}\n    rollout:\n      soakTime: 5m\n",
    );
    assert_eq!(errors.len(), 1);
    let text = errors[0].to_string();
    assert!(
        text.starts_with("flotilla.yaml:7:7: unknown field `soakTime`"),
        "{text}"
    );
    assert!(text.contains("soak"), "lists the expected fields: {text}");
}

#[test]
fn wrong_type_names_the_line_and_what_is_expected() {
    let errors = load_errors(
        "apiVersion: flotilla.dev/v1\nkind: Fleet\nstages:\n  - name: dev\n    track: {branch: main}\n    rollout:\n      healthTimeout: soon\n",
    );
    let text = errors[0].to_string();
    assert!(text.starts_with("flotilla.yaml:7:"), "{text}");
    assert!(text.contains("invalid duration `soon`"), "{text}");

    let errors = load_errors(
        "apiVersion: flotilla.dev/v1\nkind: Fleet\nstages:\n  - name: dev\n    track: {branch: main}\n    rollout:\n      approval: later\n",
    );
    let text = errors[0].to_string();
    assert!(text.starts_with("flotilla.yaml:7:"), "{text}");
    assert!(text.contains("auto") && text.contains("manual"), "{text}");
}

#[test]
fn yaml_syntax_errors_are_located() {
    let errors = load_errors("apiVersion: flotilla.dev/v1\nkind: Fleet\nstages: [\n  {name: dev\n");
    assert!(
        matches!(errors[0], SpecError::Syntax { .. }),
        "{:?}",
        errors[0]
    );
    assert_eq!(errors[0].location().file, "flotilla.yaml");
    assert!(errors[0].location().line.is_some());
}

#[test]
fn every_semantic_problem_is_reported_with_its_line() {
    let spec = "\
apiVersion: flotilla.dev/v2
kind: Fleet
stages:
  - name: Dev
    track: {branch: main}
  - name: prod
    promoteFrom: staging
    clusterSelector:
      matchExpressions:
        - {key: env, operator: In}
bundles:
  - name: web
    path: bundles/web
    variables:
      9lives: x
  - name: web
    path: bundles/missing
";
    let errors = load_errors(spec);
    let lines: Vec<Option<u32>> = errors.iter().map(|e| e.location().line).collect();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let all = text.join("\n");
    assert!(all.contains("flotilla.yaml:1:13: apiVersion"), "{all}");
    assert!(all.contains("flotilla.yaml:4:"), "bad stage name: {all}");
    assert!(all.contains("unknown stage `staging`"), "{all}");
    assert!(all.contains("needs at least one value"), "{all}");
    assert!(all.contains("9lives"), "{all}");
    assert!(
        all.contains("bundle `web` is already declared at flotilla.yaml:12"),
        "{all}"
    );
    assert!(lines.iter().all(Option::is_some), "{all}");
    assert!(errors.len() >= 6, "{all}");
}

#[test]
fn bundle_directory_must_exist() {
    let repo = Fixture::new();
    repo.spec("  - name: web\n    path: bundles/nowhere\n");
    let errors = repo.load().expect_err("missing directory").errors;
    let text = errors[0].to_string();
    assert!(text.starts_with("flotilla.yaml:8:11: "), "{text}");
    assert!(text.contains("bundles/nowhere"), "{text}");
}

#[test]
fn missing_spec_file_is_a_read_error() {
    let repo = Fixture::new();
    let errors = repo.load().expect_err("no flotilla.yaml").errors;
    assert!(
        matches!(errors[0], SpecError::Read { .. }),
        "{:?}",
        errors[0]
    );
    assert_eq!(errors[0].location().file, "flotilla.yaml");
}

#[test]
fn chart_bundles_are_checked_where_they_are_written() {
    let spec = |bundles: &str| {
        format!(
            "apiVersion: flotilla.dev/v1\nkind: Fleet\nstages:\n  - name: dev\n    track: {{branch: main}}\nbundles:\n{bundles}"
        )
    };
    let messages = |bundles: &str| -> Vec<String> {
        load_errors(&spec(bundles))
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let both = messages("  - name: web\n    path: bundles/web\n    helm: {chart: charts/web}\n");
    assert!(
        both[0].starts_with("flotilla.yaml:8:11: bundles[0].path: a bundle has either `path`"),
        "{both:?}"
    );
    let neither = messages("  - name: web\n");
    assert!(
        neither[0].contains("bundles[0]: a bundle needs `path`"),
        "{neither:?}"
    );
    let repo = messages(
        "  - name: web\n    helm:\n      chart: redis\n      repo: https://charts.example.com\n",
    );
    assert!(
        repo.iter().any(|m| m.starts_with(
            "flotilla.yaml:10:13: bundles[0].helm.version: a chart from a repository needs its exact `version`"
        )),
        "{repo:?}"
    );
    let release = messages("  - name: web\n    helm: {chart: bundles/web, releaseName: Web_1}\n");
    assert!(
        release
            .iter()
            .any(|m| m.contains("bundles[0].helm.releaseName: `Web_1` is not a release name")),
        "{release:?}"
    );
    let values = messages("  - name: web\n    helm: {chart: bundles/web, values: [1, 2]}\n");
    assert!(
        values
            .iter()
            .any(|m| m.contains("bundles[0].helm.values: must be a mapping")),
        "{values:?}"
    );
    let overlay_path = messages(
        "  - name: web\n    helm: {chart: bundles/web}\n    overlays:\n      - name: prod\n        clusterSelector: {matchLabels: {env: prod}}\n        path: prod\n",
    );
    assert!(
        overlay_path.iter().any(
            |m| m.contains("bundles[0].overlays[0].path: a chart bundle's overlay adds values")
        ),
        "{overlay_path:?}"
    );
    let plain_values = messages(
        "  - name: web\n    path: bundles/web\n    overlays:\n      - name: prod\n        clusterSelector: {matchLabels: {env: prod}}\n        helm: {values: {a: 1}}\n",
    );
    assert!(
        plain_values
            .iter()
            .any(|m| m.contains("bundles[0].overlays[0].helm: only a chart bundle")),
        "{plain_values:?}"
    );
}

#[test]
fn a_remote_chart_needs_a_source_a_name_and_an_exact_version() {
    let messages = |helm: &str| -> Vec<String> {
        load_errors(&format!(
            "apiVersion: flotilla.dev/v1\nkind: Fleet\nstages:\n  - name: dev\n    track: {{branch: main}}\nbundles:\n  - name: web\n    helm: {helm}\n"
        ))
        .iter()
        .map(ToString::to_string)
        .collect()
    };
    let no_version = messages("{repo: 'https://charts.example.com', chart: web}");
    assert!(
        no_version.iter().any(|m| m.contains(
            "bundles[0].helm.version: a chart from a repository needs its exact `version`"
        )),
        "{no_version:?}"
    );
    let range =
        messages("{repo: 'oci://registry.example.com/charts', chart: web, version: '^1.2'}");
    assert!(
        range
            .iter()
            .any(|m| m.contains("`^1.2` is not an exact version")),
        "{range:?}"
    );
    let scheme = messages("{repo: 'ftp://charts.example.com', chart: web, version: 1.0.0}");
    assert!(
        scheme
            .iter()
            .any(|m| m.contains("is not a chart source: use https://")),
        "{scheme:?}"
    );
    let credentials =
        messages("{repo: 'https://user:pw@charts.example.com', chart: web, version: 1.0.0}");
    assert!(
        credentials
            .iter()
            .any(|m| m.contains("may not carry a query, a fragment or credentials")),
        "{credentials:?}"
    );
    let path = messages("{repo: 'https://charts.example.com', chart: stable/web, version: 1.0.0}");
    assert!(
        path.iter()
            .any(|m| m.contains("`stable/web` is not a chart name")),
        "{path:?}"
    );
}
