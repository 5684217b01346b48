//! kubectl's typed `create` generators send protobuf bodies; the simulator decodes the
//! kinds they produce.

use crate::support::harness as support;

use support::{Kubectl, kubectl_or_skip, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_generators_work() {
    if !kubectl_or_skip("kubectl_create_generators_work") {
        return;
    }
    let sim = start(1).await;
    let k = Kubectl::new(&sim);
    k.ok("sim-0", &["create", "namespace", "team-a"]).await;
    k.ok(
        "sim-0",
        &[
            "create",
            "configmap",
            "c1",
            "--from-literal=a=b",
            "-n",
            "team-a",
        ],
    )
    .await;
    k.ok(
        "sim-0",
        &[
            "create",
            "secret",
            "generic",
            "s1",
            "--from-literal=pw=x",
            "-n",
            "team-a",
        ],
    )
    .await;
    k.ok(
        "sim-0",
        &["create", "serviceaccount", "bot", "-n", "team-a"],
    )
    .await;
    k.ok(
        "sim-0",
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=80",
            "-n",
            "team-a",
        ],
    )
    .await;

    let ns = k
        .json("sim-0", &["get", "namespace", "team-a", "-o", "json"])
        .await;
    assert_eq!(ns["status"]["phase"], "Active");
    let cm = k
        .json(
            "sim-0",
            &["get", "configmap", "c1", "-n", "team-a", "-o", "json"],
        )
        .await;
    assert_eq!(cm["data"]["a"], "b");
    let secret = k
        .json(
            "sim-0",
            &["get", "secret", "s1", "-n", "team-a", "-o", "json"],
        )
        .await;
    assert_eq!(secret["data"]["pw"], "eA==");
    assert_eq!(secret["type"], "Opaque");
    let d = k
        .json(
            "sim-0",
            &["get", "deployment", "web", "-n", "team-a", "-o", "json"],
        )
        .await;
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"],
        "TCP"
    );
    let out = k
        .ok(
            "sim-0",
            &[
                "wait",
                "--for=condition=Available",
                "deployment/web",
                "-n",
                "team-a",
                "--timeout=20s",
            ],
        )
        .await;
    assert!(out.contains("condition met"), "{out}");

    // Kinds whose protobuf form is not decoded are refused with a clear 415.
    let out = k
        .run(
            "sim-0",
            &[
                "create",
                "role",
                "r",
                "--verb=get",
                "--resource=pods",
                "-n",
                "team-a",
            ],
        )
        .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("send JSON or YAML"));
    sim.shutdown().await;
}
