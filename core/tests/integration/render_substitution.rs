//! `${cluster.name}`, `${cluster.labels.KEY}` and declared variables are substituted per
//! cluster; undefined ones are errors naming file, line and variable.

#![allow(clippy::unwrap_used)]

use crate::support::fixture;

use fixture::{Fixture, cluster};
use flotilla_core::render::{RenderError, Tools, render_bundle};

const CONFIG_MAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels:
    region: ${cluster.labels.region}
data:
  cluster: ${cluster.name}
  replicas: \"${replicas}\"
  script: echo $${HOME}
";

fn repo_with(config_map: &str, variables: &str) -> Fixture {
    let repo = Fixture::new();
    repo.spec(&format!(
        "  - name: app\n    path: app\n    namespace: app\n{variables}"
    ));
    repo.write("app/settings.yaml", config_map);
    repo
}

#[test]
fn cluster_facts_and_variables_are_substituted() {
    let repo = repo_with(CONFIG_MAP, "    variables:\n      replicas: 3\n");
    let loaded = repo.load().unwrap();
    let eu = cluster("prod-eu-1", &[("region", "eu")]);
    let bundle = render_bundle(&loaded, "app", &eu, &Tools::none()).unwrap();
    let object = &bundle.objects[0].object;
    assert_eq!(object["data"]["cluster"], "prod-eu-1");
    assert_eq!(object["data"]["replicas"], "3");
    assert_eq!(
        object["data"]["script"], "echo ${HOME}",
        "a doubled dollar keeps the reference literal"
    );
    assert_eq!(object["metadata"]["labels"]["region"], "eu");
    assert_eq!(
        object["metadata"]["namespace"], "app",
        "the bundle namespace is defaulted"
    );
}

#[test]
fn unquoted_substitution_yields_typed_values() {
    let repo = repo_with(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: ${replicas}\n  paused: ${paused}\n",
        "    variables:\n      replicas: 4\n      paused: false\n",
    );
    let bundle = render_bundle(
        &repo.load().unwrap(),
        "app",
        &cluster("a", &[]),
        &Tools::none(),
    )
    .unwrap();
    assert_eq!(bundle.objects[0].object["spec"]["replicas"], 4);
    assert_eq!(bundle.objects[0].object["spec"]["paused"], false);
}

#[test]
fn undefined_variable_names_file_line_and_variable() {
    let repo = repo_with(CONFIG_MAP, "    variables:\n      replica: 3\n");
    let error = render_bundle(
        &repo.load().unwrap(),
        "app",
        &cluster("a", &[("region", "eu")]),
        &Tools::none(),
    )
    .unwrap_err();
    let RenderError::UndefinedVariable {
        location,
        name,
        declared,
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!(name, "replicas");
    assert_eq!(declared, &["replica".to_owned()]);
    assert_eq!(location.to_string(), "app/settings.yaml:9:14");
    assert!(
        error.to_string().contains("$${replicas}"),
        "says how to write a literal: {error}"
    );
}

#[test]
fn missing_label_is_an_error_at_its_use() {
    let repo = repo_with(CONFIG_MAP, "    variables:\n      replicas: 3\n");
    let error = render_bundle(
        &repo.load().unwrap(),
        "app",
        &cluster("a", &[]),
        &Tools::none(),
    )
    .unwrap_err();
    assert!(
        matches!(error, RenderError::MissingLabel { ref key, .. } if key == "region"),
        "{error}"
    );
    assert_eq!(
        error.location().map(ToString::to_string).as_deref(),
        Some("app/settings.yaml:6:13")
    );
}

#[test]
fn malformed_reference_is_an_error_for_every_cluster() {
    let repo = repo_with(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  a: ${cluster.nmae}\n",
        "",
    );
    let error = render_bundle(
        &repo.load().unwrap(),
        "app",
        &cluster("a", &[]),
        &Tools::none(),
    )
    .unwrap_err();
    assert!(matches!(error, RenderError::BadReference { .. }), "{error}");
    assert_eq!(
        error.location().map(ToString::to_string).as_deref(),
        Some("app/settings.yaml:5:6")
    );
}

#[test]
fn yaml_broken_after_substitution_reports_the_file() {
    let repo = repo_with(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  a: [${v}\n",
        "    variables:\n      v: 1\n",
    );
    let error = render_bundle(
        &repo.load().unwrap(),
        "app",
        &cluster("a", &[]),
        &Tools::none(),
    )
    .unwrap_err();
    assert!(matches!(error, RenderError::Yaml { .. }), "{error}");
    assert_eq!(
        error.location().map(|l| l.file.as_str()),
        Some("app/settings.yaml")
    );
}
