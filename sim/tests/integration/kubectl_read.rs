//! kubectl reading from the simulator: get -o json, get -w, label selectors, delete,
//! api-resources and wait.

use crate::support::harness as support;

use std::time::Duration;

use support::{Kubectl, kubectl_or_skip, start};
use tokio::io::AsyncReadExt;

fn config_map(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {labels}\ndata:\n  k: v\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_json_and_label_selectors() {
    if !kubectl_or_skip("kubectl_get_json_and_label_selectors") {
        return;
    }
    let sim = start(1).await;
    let k = Kubectl::new(&sim);
    for (name, labels) in [
        ("a", "{app: web, env: prod}"),
        ("b", "{app: web, env: dev}"),
        ("c", "{app: db}"),
    ] {
        let f = k.file(&format!("{name}.yaml"), &config_map(name, labels));
        k.ok(
            "sim-0",
            &[
                "apply",
                "--server-side",
                "-f",
                f.to_str().unwrap_or_default(),
            ],
        )
        .await;
    }
    let one = k
        .json("sim-0", &["get", "configmap", "a", "-o", "json"])
        .await;
    assert_eq!(one["kind"], "ConfigMap");
    assert_eq!(one["data"]["k"], "v");
    assert!(
        one["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );

    let names = |v: serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        names(
            k.json("sim-0", &["get", "cm", "-l", "app=web", "-o", "json"])
                .await
        ),
        vec!["a", "b"]
    );
    assert_eq!(
        names(
            k.json(
                "sim-0",
                &["get", "cm", "-l", "app=web,env!=prod", "-o", "json"]
            )
            .await
        ),
        vec!["b"]
    );
    assert_eq!(
        names(
            k.json(
                "sim-0",
                &["get", "cm", "-l", "env in (prod,dev)", "-o", "json"]
            )
            .await
        ),
        vec!["a", "b"]
    );
    assert_eq!(
        names(
            k.json("sim-0", &["get", "cm", "-l", "!env", "-o", "json"])
                .await
        ),
        vec!["c"]
    );
    let table = k.ok("sim-0", &["get", "cm", "-l", "app=db"]).await;
    assert!(
        table.contains("NAME") && table.contains("DATA") && table.contains('c'),
        "{table}"
    );

    let out = k.ok("sim-0", &["delete", "configmap", "a"]).await;
    assert!(out.contains("configmap \"a\" deleted"), "{out}");
    assert_eq!(
        names(k.json("sim-0", &["get", "cm", "-o", "json"]).await),
        vec!["b", "c"]
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_watch_sees_changes() {
    if !kubectl_or_skip("kubectl_get_watch_sees_changes") {
        return;
    }
    let sim = start(1).await;
    let k = Kubectl::new(&sim);
    let mut watch = k
        .command(
            "sim-0",
            &[
                "get",
                "configmaps",
                "-w",
                "--output-watch-events",
                "-o",
                "custom-columns=EVENT:.type,NAME:.object.metadata.name,V:.object.data.k",
                "--no-headers",
                "--request-timeout=4s",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning kubectl get -w: {e}"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let f = k.file("w.yaml", &config_map("watched", "{a: b}"));
    k.ok(
        "sim-0",
        &[
            "apply",
            "--server-side",
            "-f",
            f.to_str().unwrap_or_default(),
        ],
    )
    .await;
    let f2 = k.file(
        "w2.yaml",
        &config_map("watched", "{a: b}").replace("k: v", "k: changed"),
    );
    k.ok(
        "sim-0",
        &[
            "apply",
            "--server-side",
            "-f",
            f2.to_str().unwrap_or_default(),
        ],
    )
    .await;
    k.ok("sim-0", &["delete", "configmap", "watched"]).await;

    let mut out = String::new();
    let mut stdout = watch.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let read = tokio::time::timeout(Duration::from_secs(10), stdout.read_to_string(&mut out)).await;
    assert!(read.is_ok(), "kubectl get -w did not end; saw: {out}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(lines.contains(&vec!["ADDED", "watched", "v"]), "{out}");
    assert!(
        lines.contains(&vec!["MODIFIED", "watched", "changed"]),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.first() == Some(&"DELETED") && l.get(1) == Some(&"watched")),
        "{out}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_api_resources_lists_builtins() {
    if !kubectl_or_skip("kubectl_api_resources_lists_builtins") {
        return;
    }
    let sim = start(1).await;
    let k = Kubectl::new(&sim);
    let out = k.ok("sim-0", &["api-resources"]).await;
    for (name, short, version, kind) in [
        ("deployments", "deploy", "apps/v1", "Deployment"),
        ("namespaces", "ns", "v1", "Namespace"),
        (
            "customresourcedefinitions",
            "crd,crds",
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
        ),
        (
            "horizontalpodautoscalers",
            "hpa",
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
        ),
    ] {
        assert!(
            out.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.first() == Some(&name)
                    && cols.contains(&short)
                    && cols.contains(&version)
                    && cols.last() == Some(&kind)
            }),
            "{name} missing from:\n{out}"
        );
    }
    let namespaced = k
        .ok(
            "sim-0",
            &["api-resources", "--namespaced=false", "-o", "name"],
        )
        .await;
    assert!(
        namespaced
            .lines()
            .any(|l| l == "clusterroles.rbac.authorization.k8s.io"),
        "{namespaced}"
    );
    assert!(
        !namespaced.lines().any(|l| l == "configmaps"),
        "{namespaced}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_for_deployment_available() {
    if !kubectl_or_skip("kubectl_wait_for_deployment_available") {
        return;
    }
    let sim = start(1).await;
    let k = Kubectl::new(&sim);
    let f = k.file("d.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec: {containers: [{name: x, image: busybox}]}\n");
    k.ok(
        "sim-0",
        &[
            "apply",
            "--server-side",
            "-f",
            f.to_str().unwrap_or_default(),
        ],
    )
    .await;
    let out = k
        .ok(
            "sim-0",
            &[
                "wait",
                "--for=condition=Available",
                "deployment/x",
                "--timeout=20s",
            ],
        )
        .await;
    assert!(out.contains("deployment.apps/x condition met"), "{out}");
    let obj = k
        .json("sim-0", &["get", "deployment", "x", "-o", "json"])
        .await;
    assert_eq!(obj["status"]["availableReplicas"], 3);
    assert_eq!(obj["status"]["observedGeneration"], 1);
    let out = k
        .ok(
            "sim-0",
            &["rollout", "status", "deployment/x", "--timeout=20s"],
        )
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    sim.shutdown().await;
}
