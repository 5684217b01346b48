//! `flotilla lint` on real repositories, run as the real binary: the example fleet passes,
//! broken copies fail with exit code 1 and every error located as file:line:column.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flotilla_testkit::helm::{example_renders_or_skip, path_with_helm};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet")
}

fn flotilla(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .env("PATH", path_with_helm())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn broken_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&example(), dir.path());
    dir
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

#[test]
fn example_fleet_lints_clean() {
    if !example_renders_or_skip("example_fleet_lints_clean") {
        return;
    }
    let path = example();
    let clusters = path.join("clusters.yaml");
    let output = flotilla(&[
        "lint",
        path.to_str().unwrap(),
        "--clusters",
        clusters.to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("lint passed: 0 error(s), 0 warning(s)"),
        "{text}"
    );
    assert!(
        text.contains(
            "3 stages, 4 bundles, 5 clusters; 20 (cluster, bundle) pairs, 16 distinct renders"
        ),
        "{text}"
    );
    assert!(text.contains("canary: prod-eu-1"), "{text}");
}

#[test]
fn broken_copy_fails_with_every_error_located() {
    if !example_renders_or_skip("broken_copy_fails_with_every_error_located") {
        return;
    }
    let repo = broken_copy();
    edit(
        &repo.path().join("bundles/web/configmap.yaml"),
        "${logLevel}",
        "${logLevl}",
    );
    std::fs::write(
        repo.path().join("bundles/monitoring/broken.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n",
    )
    .unwrap();
    let path = repo.path().to_str().unwrap();

    let table = flotilla(&["lint", path]);
    assert_eq!(table.status.code(), Some(1));
    let text = stdout(&table);
    let configmap = repo.path().join("bundles/web/configmap.yaml");
    assert!(
        text.contains(&format!(
            "error: {}:11:14: undefined variable `logLevl`",
            configmap.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("broken.yaml:"),
        "the second error is reported too: {text}"
    );
    assert!(text.contains("lint failed: 2 error(s)"), "{text}");

    let json = flotilla(&["lint", path, "-o", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{report:#}");
    for problem in problems {
        assert!(
            problem["file"].is_string() && problem["line"].is_u64(),
            "{problem:#}"
        );
        assert_eq!(
            problem["clusters"].as_array().unwrap().len(),
            5,
            "{problem:#}"
        );
    }
}

#[test]
fn spec_error_fails_with_file_line_and_column() {
    let repo = broken_copy();
    edit(
        &repo.path().join("flotilla.yaml"),
        "    namespace: web\n",
        "    namespace: web\n    drfit: report\n",
    );
    let output = flotilla(&["lint", repo.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let spec = repo.path().join("flotilla.yaml");
    assert!(
        text.contains(&format!(
            "error: {}:69:5: unknown field `drfit`",
            spec.display()
        )),
        "{text}"
    );
}

#[test]
fn cluster_in_two_stages_is_an_error() {
    let repo = broken_copy();
    edit(
        &repo.path().join("flotilla.yaml"),
        "      matchLabels: {env: staging}\n    promoteFrom: dev\n",
        "      matchExpressions:\n        - {key: region, operator: In, values: [eu]}\n    promoteFrom: dev\n",
    );
    let output = flotilla(&["lint", repo.path().to_str().unwrap(), "-o", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let messages: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["message"].as_str())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("cluster `dev-1` matches stages dev, staging")),
        "{messages:#?}"
    );
}

#[test]
fn without_inventory_only_the_spec_is_checked() {
    let repo = broken_copy();
    std::fs::remove_file(repo.path().join("clusters.yaml")).unwrap();
    let output = flotilla(&["lint", repo.path().to_str().unwrap()]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("no inventory: only the spec was checked"),
        "{text}"
    );
}

#[test]
fn bad_inventory_is_reported_with_its_line() {
    let repo = broken_copy();
    let inventory = repo.path().join("clusters.yaml");
    edit(
        &inventory,
        "  - name: prod-ap-1\n",
        "  - name: prod-ap-1\n    lables: {}\n",
    );
    let output = flotilla(&[
        "lint",
        repo.path().to_str().unwrap(),
        "--clusters",
        inventory.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains(&format!(
            "error: {}:15:5: unknown field `lables`",
            inventory.display()
        )),
        "{text}"
    );
}

#[test]
fn fields_the_api_server_would_refuse_fail_at_their_lines() {
    if !example_renders_or_skip("fields_the_api_server_would_refuse_fail_at_their_lines") {
        return;
    }
    let dir = broken_copy();
    let file = dir.path().join("bundles/monitoring/blackbox-exporter.yaml");
    edit(
        &file,
        "  replicas: 1\n",
        "  replicas: three\n  replicaz: 2\n",
    );
    edit(
        &file,
        "    topology.kubernetes.io/region: ${cluster.labels.region}\n",
        "    topology.kubernetes.io/region: ${cluster.labels.region}\n    tier: front end\n",
    );
    std::fs::write(
        dir.path().join("bundles/monitoring/certificate.yaml"),
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: probe\n  namespace: monitoring\nspec:\n  secretName: probe\n",
    )
    .unwrap();
    let root = dir.path().to_str().unwrap();
    let output = flotilla(&["lint", root, "-o", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["schemas"]["kubernetesVersion"], "1.37");
    let problems = report["problems"].as_array().unwrap();
    let text = |p: &serde_json::Value| {
        format!(
            "{}:{}: {} {}",
            p["file"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches(root),
            p["line"],
            p["severity"].as_str().unwrap(),
            p["message"].as_str().unwrap()
        )
    };
    let found: Vec<String> = problems.iter().map(text).collect();
    let expect = |needle: &str| {
        assert!(
            found.iter().any(|f| f.contains(needle)),
            "no problem contains {needle:?} in {found:#?}"
        );
    };
    expect(
        "/bundles/monitoring/blackbox-exporter.yaml:31: error apps/v1 Deployment \
         monitoring/blackbox-exporter: spec.replicas: must be an integer, not the string \"three\"",
    );
    expect(
        "/bundles/monitoring/blackbox-exporter.yaml:32: error apps/v1 Deployment \
         monitoring/blackbox-exporter: spec.replicaz: unknown field",
    );
    expect("metadata.labels.tier: invalid label value `front end`");
    expect(
        "/bundles/monitoring/certificate.yaml:1: warning no schema for cert-manager.io/v1 \
         Certificate: add its CustomResourceDefinition to the repository",
    );
    // Every error names the clusters whose render carries it.
    assert!(
        problems
            .iter()
            .filter(|p| p["severity"] == "error")
            .all(|p| !p["clusters"].as_array().unwrap().is_empty())
    );

    // The older shipped schemas are selectable; an unshipped version is refused with the list.
    let older = flotilla(&["lint", root, "--kube-version", "1.36", "-o", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&older.stdout).unwrap();
    assert_eq!(report["schemas"]["kubernetesVersion"], "1.36");
    assert_eq!(older.status.code(), Some(1));
    let unshipped = flotilla(&["lint", root, "--kube-version", "1.20"]);
    assert_ne!(unshipped.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&unshipped.stderr).contains("shipped: 1.36, 1.37"),
        "{}",
        String::from_utf8_lossy(&unshipped.stderr)
    );

    // Schemas saved from a cluster (`kubectl get --raw /openapi/v3/...`) are read the same way.
    let saved = tempfile::tempdir().unwrap();
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/schemas/kubernetes-1.37.json"),
        saved.path().join("apis__apps__v1_openapi.json"),
    )
    .unwrap();
    let from_dir = flotilla(&[
        "lint",
        root,
        "--schemas",
        saved.path().to_str().unwrap(),
        "-o",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&from_dir.stdout).unwrap();
    assert_eq!(
        report["schemas"]["source"].as_str(),
        saved.path().to_str(),
        "{report:#}"
    );
    assert_eq!(from_dir.status.code(), Some(1));
}

#[test]
fn render_prints_what_one_cluster_receives_and_names_what_is_wrong() {
    if !example_renders_or_skip("render_prints_what_one_cluster_receives_and_names_what_is_wrong") {
        return;
    }
    let root = example();
    let root = root.to_str().unwrap();
    let yaml = flotilla(&["render", root, "--cluster", "prod-eu-1", "--bundle", "web"]);
    assert!(
        yaml.status.success(),
        "{}",
        String::from_utf8_lossy(&yaml.stderr)
    );
    let text = stdout(&yaml);
    assert!(
        text.starts_with("# cluster prod-eu-1: 1 bundle(s)\n# bundle web ("),
        "{text}"
    );
    assert!(
        text.contains("flotilla.dev/bundle: web"),
        "ownership label shown: {text}"
    );
    assert!(
        text.contains("app.kubernetes.io/managed-by: flotilla"),
        "{text}"
    );
    let json = flotilla(&["render", root, "--cluster", "dev-1", "-o", "json"]);
    let rendered: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rendered["cluster"], "dev-1");
    let names: Vec<&str> = rendered["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["monitoring", "cache", "web", "status"]);

    let unknown = flotilla(&["render", root, "--cluster", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no cluster `nope`"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    // A broken manifest: exit 1, the file and line on stderr, nothing on stdout.
    let dir = broken_copy();
    edit(
        &dir.path().join("bundles/monitoring/blackbox-exporter.yaml"),
        "kind: ServiceAccount\n",
        "kind: ServiceAccount\n  broken: [\n",
    );
    let path = dir.path().to_str().unwrap();
    let broken = flotilla(&["render", path, "--cluster", "dev-1"]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(broken.stdout.is_empty(), "{}", stdout(&broken));
    let errors = String::from_utf8_lossy(&broken.stderr);
    assert!(
        errors.contains("bundles/monitoring/blackbox-exporter.yaml:")
            && errors.contains("render failed: 1 bundle(s) of cluster `dev-1`"),
        "{errors}"
    );
}
