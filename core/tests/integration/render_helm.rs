//! Chart bundles are rendered with the pinned helm (`helm template`, confined like kustomize):
//! values from the chart, the bundle's files and inline values and the cluster's overlay, in
//! that order, with `${...}` substituted per cluster; a vendored dependency; CRDs from
//! `crds/`; and every way a chart cannot be rendered faithfully refused at its file and line.

#![allow(clippy::unwrap_used)]

use crate::support::fixture;
use fixture::{Fixture, cluster, helm_or_skip};
use flotilla_core::render::{
    Helm, RenderError, RenderedBundle, Tools, render_bundle, render_fleet,
};
use serde_json::Value;

const CHART_YAML: &str = "apiVersion: v2\nname: web\nversion: 1.2.0\ndependencies:\n  - name: cache\n    version: 0.1.0\n    repository: file://../cache\n";

const VALUES_YAML: &str = "replicas: 1\nimage: {repository: nginx, tag: \"1.27\"}\ngreeting: chart\ncolour: chart\nsize: chart\nshape: chart\ncache: {enabled: true}\n";

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
  labels:
    release: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
"#;

const CONFIG: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
data:
  greeting: {{ .Values.greeting | quote }}
  colour: {{ .Values.colour | quote }}
  size: {{ .Values.size | quote }}
  shape: {{ .Values.shape | quote }}
  namespace: {{ .Release.Namespace }}
  kube: {{ .Capabilities.KubeVersion.Version }}
"#;

const TEST_HOOK: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Release.Name }}-test\n  annotations:\n    helm.sh/hook: test\nspec:\n  containers: [{name: t, image: busybox}]\n";

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  names: {kind: Widget, plural: widgets}\n  scope: Namespaced\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema: {type: object}\n";

/// A repository with the `web` chart (a vendored `cache` subchart, a CRD, a test hook) and a
/// bundle over it with values at every level.
fn chart_repo() -> Fixture {
    let repo = Fixture::new();
    repo.write("charts/web/Chart.yaml", CHART_YAML);
    repo.write("charts/web/values.yaml", VALUES_YAML);
    repo.write("charts/web/templates/deployment.yaml", DEPLOYMENT);
    repo.write("charts/web/templates/config.yaml", CONFIG);
    repo.write("charts/web/templates/tests/test.yaml", TEST_HOOK);
    repo.write("charts/web/crds/widgets.yaml", CRD);
    repo.write(
        "charts/web/charts/cache/Chart.yaml",
        "apiVersion: v2\nname: cache\nversion: 0.1.0\n",
    );
    repo.write("charts/web/charts/cache/values.yaml", "enabled: false\n");
    repo.write(
        "charts/web/charts/cache/templates/cm.yaml",
        "{{- if .Values.enabled }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cache\n{{- end }}\n",
    );
    repo.write("values/common.yaml", "colour: common-file\nsize: common-file\nshape: common-file\ngreeting: hello from ${cluster.name}\n");
    repo.write("values/prod.yaml", "shape: prod-file\nsize: prod-file\n");
    repo.spec(
        "  - name: web
    namespace: shop
    variables: {replicas: 2}
    helm:
      chart: charts/web
      version: 1.2.0
      releaseName: storefront
      valuesFiles: [values/common.yaml]
      values:
        colour: bundle-inline
        size: bundle-inline
        replicas: ${replicas}
        image: {tag: \"${cluster.labels.tag}\"}
    overlays:
      - name: prod
        clusterSelector: {matchLabels: {env: prod}}
        variables: {replicas: 5}
        helm:
          valuesFiles: [values/prod.yaml]
          values: {size: prod-inline}
",
    );
    repo
}

fn tools(helm: Helm) -> Tools {
    Tools::none().with_helm(helm)
}

fn object<'b>(bundle: &'b RenderedBundle, kind: &str, name: &str) -> &'b Value {
    bundle
        .objects
        .iter()
        .find(|o| o.id.kind == kind && o.id.name == name)
        .map(|o| &o.object)
        .unwrap_or_else(|| {
            let ids: Vec<String> = bundle.objects.iter().map(|o| o.id.to_string()).collect();
            panic!("no {kind} {name} in {ids:?}")
        })
}

#[test]
fn chart_values_follow_their_precedence_per_cluster() {
    let Some(helm) = helm_or_skip("chart_values_follow_their_precedence_per_cluster") else {
        return;
    };
    let repo = chart_repo();
    let loaded = repo.load().unwrap();
    let tools = tools(helm);
    let dev = render_bundle(
        &loaded,
        "web",
        &cluster("dev-1", &[("env", "dev"), ("tag", "1.28")]),
        &tools,
    )
    .unwrap();
    let config = object(&dev, "ConfigMap", "storefront-settings");
    assert_eq!(config["metadata"]["namespace"], "shop");
    // values.yaml < the bundle's valuesFiles < its inline values.
    assert_eq!(config["data"]["greeting"], "hello from dev-1");
    assert_eq!(config["data"]["colour"], "bundle-inline");
    assert_eq!(config["data"]["size"], "bundle-inline");
    assert_eq!(config["data"]["shape"], "common-file");
    assert_eq!(config["data"]["namespace"], "shop");
    assert_eq!(config["data"]["kube"], "v1.37.0");
    let deployment = object(&dev, "Deployment", "storefront-web");
    // Substituted inline values are strings; the template prints the number.
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );

    let prod = render_bundle(
        &loaded,
        "web",
        &cluster("prod-1", &[("env", "prod"), ("tag", "1.29")]),
        &tools,
    )
    .unwrap();
    let config = object(&prod, "ConfigMap", "storefront-settings");
    // ... < the overlay's valuesFiles < its inline values.
    assert_eq!(config["data"]["greeting"], "hello from prod-1");
    assert_eq!(config["data"]["colour"], "bundle-inline");
    assert_eq!(config["data"]["shape"], "prod-file");
    assert_eq!(config["data"]["size"], "prod-inline");
    assert_eq!(
        object(&prod, "Deployment", "storefront-web")["spec"]["replicas"],
        5
    );
}

#[test]
fn a_chart_brings_its_crds_and_vendored_dependency_but_not_its_tests() {
    let Some(helm) =
        helm_or_skip("a_chart_brings_its_crds_and_vendored_dependency_but_not_its_tests")
    else {
        return;
    };
    let repo = chart_repo();
    let bundle = render_bundle(
        &repo.load().unwrap(),
        "web",
        &cluster("dev-1", &[("env", "dev"), ("tag", "1")]),
        &tools(helm),
    )
    .unwrap();
    let mut ids: Vec<String> = bundle.objects.iter().map(|o| o.id.to_string()).collect();
    ids.sort();
    assert_eq!(
        ids.len(),
        4,
        "a CRD, a Deployment, the settings and the subchart's ConfigMap: {ids:?}"
    );
    object(&bundle, "CustomResourceDefinition", "widgets.example.com");
    // The release's namespace is created by the agent when missing, as `helm install
    // --create-namespace`, owned by no bundle.
    assert_eq!(bundle.create_namespace.as_deref(), Some("shop"));
    object(&bundle, "ConfigMap", "storefront-cache");
    assert!(
        !ids.iter().any(|id| id.contains("storefront-test")),
        "the test hook is left out: {ids:?}"
    );
}

#[test]
fn clusters_with_the_same_values_share_one_render_and_hash() {
    let Some(helm) = helm_or_skip("clusters_with_the_same_values_share_one_render_and_hash") else {
        return;
    };
    let repo = chart_repo();
    let loaded = repo.load().unwrap();
    let tools = tools(helm);
    let clusters = [
        cluster("dev-1", &[("env", "dev"), ("tag", "1")]),
        cluster("dev-2", &[("env", "dev"), ("tag", "1")]),
    ];
    let first = render_fleet(&loaded, &clusters, &tools);
    let again = render_fleet(&loaded, &clusters, &tools);
    let hash = |render: &flotilla_core::FleetRender, name: &str| {
        render.clusters[name]["web"].clone().unwrap()
    };
    // The greeting names the cluster, so each cluster has its own content; rendering again
    // gives the same hashes.
    assert_ne!(hash(&first, "dev-1"), hash(&first, "dev-2"));
    assert_eq!(hash(&first, "dev-1"), hash(&again, "dev-1"));
    assert_eq!(hash(&first, "dev-2"), hash(&again, "dev-2"));
    assert_eq!(first.distinct_renders, 2);
}

fn refused(repo: &Fixture, helm: Helm) -> RenderError {
    render_bundle(
        &repo.load().unwrap(),
        "web",
        &cluster("dev-1", &[("env", "dev"), ("tag", "1")]),
        &tools(helm),
    )
    .unwrap_err()
}

#[test]
fn a_template_error_names_the_template_and_line() {
    let Some(helm) = helm_or_skip("a_template_error_names_the_template_and_line") else {
        return;
    };
    let repo = chart_repo();
    repo.write(
        "charts/web/templates/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\ndata:\n  a: {{ .Values.missing.field }}\n",
    );
    let error = refused(&repo, helm);
    let RenderError::HelmFailed { location, message } = &error else {
        panic!("not a helm failure: {error:?}");
    };
    assert_eq!(location.file, "charts/web/templates/broken.yaml");
    assert_eq!(location.line, Some(6));
    assert!(message.contains("nil pointer"), "{message}");
    assert!(!message.contains("--debug"), "{message}");
}

#[test]
fn lookup_is_refused_at_the_template_calling_it() {
    let Some(helm) = helm_or_skip("lookup_is_refused_at_the_template_calling_it") else {
        return;
    };
    let repo = chart_repo();
    repo.write(
        "charts/web/charts/cache/templates/secret.yaml",
        "{{- $existing := lookup \"v1\" \"Secret\" .Release.Namespace \"x\" }}\napiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n",
    );
    let error = refused(&repo, helm);
    assert!(
        error.to_string().starts_with(
            "charts/web/charts/cache/templates/secret.yaml:1:18: the template calls `lookup`"
        ),
        "{error}"
    );
}

#[test]
fn a_hook_is_refused_naming_its_template() {
    let Some(helm) = helm_or_skip("a_hook_is_refused_naming_its_template") else {
        return;
    };
    let repo = chart_repo();
    repo.write(
        "charts/web/templates/migrate.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    \"helm.sh/hook\": pre-upgrade\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: m, image: busybox}]\n",
    );
    let error = refused(&repo, helm).to_string();
    assert!(
        error.starts_with("charts/web/templates/migrate.yaml: Job `migrate` is a Helm hook (helm.sh/hook: pre-upgrade)"),
        "{error}"
    );
}

#[test]
fn a_dependency_not_vendored_is_refused_at_its_line() {
    let Some(helm) = helm_or_skip("a_dependency_not_vendored_is_refused_at_its_line") else {
        return;
    };
    let repo = chart_repo();
    repo.remove_file("charts/web/charts/cache/Chart.yaml");
    let error = refused(&repo, helm).to_string();
    assert!(
        error.starts_with("charts/web/Chart.yaml:5: dependency `cache` is not vendored"),
        "{error}"
    );
}

#[test]
fn a_version_other_than_the_bundle_asks_for_is_refused() {
    let Some(helm) = helm_or_skip("a_version_other_than_the_bundle_asks_for_is_refused") else {
        return;
    };
    let repo = chart_repo();
    repo.write(
        "charts/web/Chart.yaml",
        &CHART_YAML.replace("version: 1.2.0", "version: 1.3.0"),
    );
    let error = refused(&repo, helm).to_string();
    assert!(
        error.contains(
            "asks for version 1.2.0 of chart `web`, but charts/web/Chart.yaml declares 1.3.0"
        ),
        "{error}"
    );
}

#[test]
fn a_chart_without_helm_says_how_to_get_it() {
    let repo = chart_repo();
    let error = refused(&repo, Helm::Unavailable).to_string();
    assert!(
        error.contains("charts/web: is a chart but `helm` is not on PATH"),
        "{error}"
    );
}

#[test]
fn a_reference_to_a_missing_label_in_values_is_an_error_at_the_values() {
    let Some(helm) =
        helm_or_skip("a_reference_to_a_missing_label_in_values_is_an_error_at_the_values")
    else {
        return;
    };
    let repo = chart_repo();
    let error = render_bundle(
        &repo.load().unwrap(),
        "web",
        &cluster("dev-1", &[("env", "dev")]),
        &tools(helm),
    )
    .unwrap_err();
    let RenderError::MissingLabel { location, key } = &error else {
        panic!("not a missing label: {error:?}");
    };
    assert_eq!(key, "tag");
    assert_eq!(location.file, "flotilla.yaml");
}

#[test]
fn a_changed_chart_file_is_rendered_again_not_recalled() {
    let Some(helm) = helm_or_skip("a_changed_chart_file_is_rendered_again_not_recalled") else {
        return;
    };
    let repo = chart_repo();
    let tools = tools(helm);
    let dev = cluster("dev-1", &[("env", "dev"), ("tag", "1")]);
    let before = render_bundle(&repo.load().unwrap(), "web", &dev, &tools).unwrap();
    let again = render_bundle(&repo.load().unwrap(), "web", &dev, &tools).unwrap();
    assert_eq!(
        before.hash(),
        again.hash(),
        "the same inputs render the same content"
    );
    // Helm's output is cached by a digest of the chart's files: a changed helper (not a
    // template of its own) must still change the render.
    repo.write("charts/web/charts/cache/values.yaml", "enabled: true\n");
    repo.write(
        "charts/web/values.yaml",
        &VALUES_YAML.replace("cache: {enabled: true}\n", "cache: {enabled: false}\n"),
    );
    let after = render_bundle(&repo.load().unwrap(), "web", &dev, &tools).unwrap();
    assert_ne!(before.hash(), after.hash());
    assert!(
        !after
            .objects
            .iter()
            .any(|o| o.id.name == "storefront-cache"),
        "the subchart is now off"
    );
}

/// A bundle over a chart `web` 1.0.0 from a chart repository.
fn remote_repo() -> Fixture {
    let repo = Fixture::new();
    repo.spec(
        "  - name: web
    namespace: shop
    helm:
      repo: https://charts.example.com/stable
      chart: web
      version: 1.0.0
      values: {greeting: from-values}
",
    );
    repo
}

#[test]
fn a_remote_chart_renders_from_its_package_and_offline_says_how_to_give_it() {
    let Some(helm) =
        helm_or_skip("a_remote_chart_renders_from_its_package_and_offline_says_how_to_give_it")
    else {
        return;
    };
    // The package as `helm pull` writes it.
    let source = Fixture::new();
    source.write(
        "web/Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 1.0.0\n",
    );
    source.write(
        "web/templates/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
    );
    let packages = tempfile::tempdir().unwrap();
    let packaged = std::process::Command::new(match &helm {
        Helm::Binary(path) => path.clone(),
        Helm::Unavailable => unreachable!("helm_or_skip gives a binary"),
    })
    .arg("package")
    .arg(source.root().join("web"))
    .arg("--destination")
    .arg(packages.path())
    .env("HOME", packages.path())
    .output()
    .unwrap();
    assert!(packaged.status.success(), "{packaged:?}");

    let repo = remote_repo();
    let loaded = repo.load().unwrap();
    let dev = cluster("dev-1", &[]);
    let offline = render_bundle(&loaded, "web", &dev, &tools(helm.clone())).unwrap_err();
    assert!(
        offline.to_string().contains(
            "chart `web` 1.0.0 comes from https://charts.example.com/stable, which only the hub fetches; offline, give its package with --charts DIR"
        ),
        "{offline}"
    );
    let with_packages = tools(helm).with_charts(std::sync::Arc::new(flotilla_core::ChartDir(
        packages.path().to_path_buf(),
    )));
    let bundle = render_bundle(&loaded, "web", &dev, &with_packages).unwrap();
    assert_eq!(
        object(&bundle, "ConfigMap", "web")["data"]["greeting"],
        "from-values"
    );
    std::fs::remove_file(packages.path().join("web-1.0.0.tgz")).unwrap();
    let missing = render_bundle(&loaded, "web", &dev, &with_packages)
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("cannot fetch chart `web` 1.0.0 from https://charts.example.com/stable")
            && missing
                .contains("helm pull web --repo https://charts.example.com/stable --version 1.0.0"),
        "{missing}"
    );
}

/// `helm package` of the chart in `dir` into `into`.
fn package(helm: &Helm, dir: &std::path::Path, into: &std::path::Path) {
    let Helm::Binary(binary) = helm else {
        unreachable!("helm_or_skip gives a binary")
    };
    let output = std::process::Command::new(binary)
        .arg("package")
        .arg(dir)
        .arg("--destination")
        .arg(into)
        .env("HOME", into)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn a_dependency_from_a_chart_source_is_fetched_into_a_copy_of_the_chart() {
    let Some(helm) =
        helm_or_skip("a_dependency_from_a_chart_source_is_fetched_into_a_copy_of_the_chart")
    else {
        return;
    };
    let repo = chart_repo();
    // The `cache` subchart is no longer vendored: it comes from a chart repository.
    let cache = Fixture::new();
    for file in ["Chart.yaml", "values.yaml", "templates/cm.yaml"] {
        let text = std::fs::read_to_string(repo.root().join("charts/web/charts/cache").join(file))
            .unwrap();
        cache.write(&format!("cache/{file}"), &text);
    }
    std::fs::remove_dir_all(repo.root().join("charts/web/charts")).unwrap();
    repo.write(
        "charts/web/Chart.yaml",
        &CHART_YAML.replace("file://../cache", "https://charts.example.com/stable"),
    );
    let packages = tempfile::tempdir().unwrap();
    package(&helm, &cache.root().join("cache"), packages.path());
    let loaded = repo.load().unwrap();
    let dev = cluster("dev-1", &[("env", "dev"), ("tag", "1")]);
    let fetching = tools(helm.clone()).with_charts(std::sync::Arc::new(flotilla_core::ChartDir(
        packages.path().to_path_buf(),
    )));
    let bundle = render_bundle(&loaded, "web", &dev, &fetching).unwrap();
    object(&bundle, "ConfigMap", "storefront-cache");
    assert!(
        !repo.root().join("charts/web/charts").exists(),
        "the checkout stays as committed"
    );

    let offline = render_bundle(&loaded, "web", &dev, &tools(helm.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        offline.starts_with("charts/web/Chart.yaml:5: dependency `cache` is not vendored"),
        "{offline}"
    );
    repo.write(
        "charts/web/Chart.yaml",
        &CHART_YAML
            .replace("file://../cache", "https://charts.example.com/stable")
            .replace("version: 0.1.0", "version: ~0.1.0"),
    );
    let range = render_bundle(&repo.load().unwrap(), "web", &dev, &fetching)
        .unwrap_err()
        .to_string();
    assert!(
        range.contains("asks for version `~0.1.0`, a range"),
        "{range}"
    );
}

#[test]
fn two_charts_share_a_namespace_neither_owns() {
    let Some(helm) = helm_or_skip("two_charts_share_a_namespace_neither_owns") else {
        return;
    };
    let repo = chart_repo();
    let spec = std::fs::read_to_string(repo.root().join("flotilla.yaml")).unwrap();
    repo.write(
        "flotilla.yaml",
        &format!(
            "{spec}  - name: again\n    namespace: shop\n    helm: {{chart: charts/web, releaseName: again}}\n"
        ),
    );
    let rendered = render_fleet(
        &repo.load().unwrap(),
        &[cluster("dev-1", &[("env", "dev"), ("tag", "1")])],
        &tools(helm),
    );
    let errors: Vec<String> = rendered.errors().map(|(_, _, e)| e.to_string()).collect();
    // The CRD both render is one object with two owners: refused as for any bundles. The
    // namespace is not an object of either.
    assert!(
        errors.iter().all(|e| e.contains("widgets.example.com")),
        "{errors:?}"
    );
}
