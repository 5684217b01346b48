//! kubectl's server-side apply against the simulator: field removal, server dry-run and
//! conflicts between field managers.

use crate::support::harness as support;

use support::{Kubectl, kubectl_or_skip, start};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_removes_a_dropped_field() {
    if !kubectl_or_skip("kubectl_server_side_apply_removes_a_dropped_field") {
        return;
    }
    let sim = start(1).await;
    let k = Kubectl::new(&sim);
    let first = k.file("d1.yaml", DEPLOYMENT);
    k.ok(
        "sim-0",
        &[
            "apply",
            "--server-side",
            "-f",
            first.to_str().unwrap_or_default(),
        ],
    )
    .await;
    let obj = k
        .json("sim-0", &["get", "deployment", "web", "-o", "json"])
        .await;
    assert_eq!(obj["metadata"]["labels"]["tier"], "front");

    let second = k.file(
        "d2.yaml",
        &DEPLOYMENT.replace("labels: {app: web, tier: front}", "labels: {app: web}"),
    );
    k.ok(
        "sim-0",
        &[
            "apply",
            "--server-side",
            "-f",
            second.to_str().unwrap_or_default(),
        ],
    )
    .await;
    let obj = k
        .json(
            "sim-0",
            &[
                "get",
                "deployment",
                "web",
                "-o",
                "json",
                "--show-managed-fields",
            ],
        )
        .await;
    assert_eq!(obj["metadata"]["labels"]["app"], "web");
    assert!(
        obj["metadata"]["labels"].get("tier").is_none(),
        "dropped label still there: {obj}"
    );
    let managers: Vec<&str> = obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["manager"].as_str()).collect())
        .unwrap_or_default();
    assert!(managers.contains(&"kubectl"), "managers: {managers:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_dry_run_changes_nothing() {
    if !kubectl_or_skip("kubectl_server_dry_run_changes_nothing") {
        return;
    }
    let sim = start(1).await;
    let k = Kubectl::new(&sim);
    let first = k.file("d1.yaml", DEPLOYMENT);
    k.ok(
        "sim-0",
        &[
            "apply",
            "--server-side",
            "-f",
            first.to_str().unwrap_or_default(),
        ],
    )
    .await;
    let before = k
        .json("sim-0", &["get", "deployment", "web", "-o", "json"])
        .await;

    let changed = k.file("d2.yaml", &DEPLOYMENT.replace("replicas: 2", "replicas: 7"));
    let out = k
        .ok(
            "sim-0",
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "-f",
                changed.to_str().unwrap_or_default(),
            ],
        )
        .await;
    assert!(out.contains("server dry run"), "{out}");
    let after = k
        .json("sim-0", &["get", "deployment", "web", "-o", "json"])
        .await;
    assert_eq!(after["spec"]["replicas"], 2);
    assert_eq!(
        after["metadata"]["generation"],
        before["metadata"]["generation"]
    );
    assert_eq!(after["metadata"]["generation"], 1);

    // A dry-run create leaves no object behind either.
    let other = k.file(
        "d3.yaml",
        &DEPLOYMENT.replace("name: web\n", "name: ghost\n"),
    );
    k.ok(
        "sim-0",
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            other.to_str().unwrap_or_default(),
        ],
    )
    .await;
    let out = k.run("sim-0", &["get", "deployment", "ghost"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("deployments.apps \"ghost\" not found"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_conflicting_manager_needs_force_conflicts() {
    if !kubectl_or_skip("kubectl_conflicting_manager_needs_force_conflicts") {
        return;
    }
    let sim = start(1).await;
    let k = Kubectl::new(&sim);
    let first = k.file("d1.yaml", DEPLOYMENT);
    k.ok(
        "sim-0",
        &[
            "apply",
            "--server-side",
            "-f",
            first.to_str().unwrap_or_default(),
        ],
    )
    .await;

    let theirs = k.file("d2.yaml", &DEPLOYMENT.replace("replicas: 2", "replicas: 5"));
    let path = theirs.to_str().unwrap_or_default();
    let out = k
        .run(
            "sim-0",
            &[
                "apply",
                "--server-side",
                "--field-manager=other",
                "-f",
                path,
            ],
        )
        .await;
    assert!(!out.status.success(), "conflicting apply succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{err}"
    );
    let obj = k
        .json("sim-0", &["get", "deployment", "web", "-o", "json"])
        .await;
    assert_eq!(obj["spec"]["replicas"], 2);

    k.ok(
        "sim-0",
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            path,
        ],
    )
    .await;
    let obj = k
        .json(
            "sim-0",
            &[
                "get",
                "deployment",
                "web",
                "-o",
                "json",
                "--show-managed-fields",
            ],
        )
        .await;
    assert_eq!(obj["spec"]["replicas"], 5);
    let owners_of_replicas: Vec<&str> = obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["fieldsV1"]["f:spec"].get("f:replicas").is_some())
                .filter_map(|e| e["manager"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(owners_of_replicas, vec!["other"]);
    sim.shutdown().await;
}
