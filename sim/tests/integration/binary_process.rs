//! The `flotilla-sim` binary: it writes the kubeconfig only once serving, kubectl works
//! against it at once, and SIGTERM shuts it down cleanly.

use crate::support::harness as support;

use std::process::Stdio;
use std::time::Duration;

use support::kubectl_or_skip;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_kubeconfig_contexts_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let kubeconfig = dir.path().join("k");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla-sim"))
        .args(["--clusters", "3", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning flotilla-sim: {e}"));

    support::eventually(30, "the kubeconfig", || async {
        kubeconfig.exists().then_some(())
    })
    .await;
    let text = std::fs::read_to_string(&kubeconfig).unwrap_or_default();
    assert!(text.contains("current-context: sim-0"), "{text}");
    for n in ["sim-0", "sim-1", "sim-2"] {
        assert!(text.contains(&format!("/clusters/{n}")), "{text}");
    }
    assert!(!text.contains("sim-3"));

    // Any client can use it the moment the file exists.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = kube::config::KubeConfigOptions {
        context: Some("sim-2".to_string()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig)
            .unwrap_or_else(|e| panic!("reading kubeconfig: {e}")),
        &options,
    )
    .await
    .unwrap_or_else(|e| panic!("kubeconfig: {e}"));
    let client = kube::Client::try_from(config).unwrap_or_else(|e| panic!("client: {e}"));
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    let names: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("listing namespaces: {e}"))
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(
        names,
        vec!["default", "kube-node-lease", "kube-public", "kube-system"]
    );

    if kubectl_or_skip("binary_serves_kubeconfig_contexts_and_stops_on_sigterm (kubectl part)") {
        let out = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--context", "sim-2", "--cache-dir"])
            .arg(dir.path().join("cache"))
            .args(["get", "ns"])
            .output()
            .await
            .unwrap_or_else(|e| panic!("kubectl: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(stdout.contains(ns), "{stdout}");
        }
    }

    let pid = child.id().unwrap_or_else(|| panic!("child has no pid"));
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()));
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap_or_else(|_| panic!("flotilla-sim did not exit within 10 s of SIGTERM"))
        .unwrap_or_else(|e| panic!("waiting: {e}"));
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
