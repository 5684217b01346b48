//! `flotilla-agent apply --dir`, run as a real process against the simulator: exit 0 when
//! applied (and Healthy with `--wait`), 1 with the errors printed when refused, 3 on timeout.

use crate::support::sim as support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use anyhow::Result;
use support::*;

const WEB: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: example/web:1
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
";

async fn agent(kubeconfig: &Path, dir: &Path, extra: &[&str]) -> Result<Output> {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla-agent"))
        .args(["apply", "--bundle", "web", "--context", CLUSTER])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .output()
        .await?;
    eprintln!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

#[tokio::test]
async fn apply_waits_for_health_and_exits_zero() -> Result<()> {
    let sim = sim(Duration::from_millis(300)).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests)?;
    std::fs::write(manifests.join("web.yaml"), WEB)?;

    let output = agent(
        &kubeconfig,
        &manifests,
        &["--namespace", "shop", "--wait", "--timeout", "30s"],
    )
    .await?;
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("applied 2 objects, pruned 0"), "{stdout}");
    assert!(stdout.contains("health Healthy"), "{stdout}");
    let client = client(&sim)?;
    assert!(
        get(&client, "apps/v1", "Deployment", Some("shop"), "web")
            .await?
            .is_some()
    );

    // A second run with one object fewer prunes it, from the inventory the first run left.
    std::fs::write(
        manifests.join("web.yaml"),
        WEB.split("---").next().unwrap_or_default(),
    )?;
    let output = agent(&kubeconfig, &manifests, &["--namespace", "shop"]).await?;
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("pruned 1"));
    assert!(
        get(&client, "v1", "ConfigMap", Some("shop"), "settings")
            .await?
            .is_none()
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_bundle_exits_one_with_each_error() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    std::fs::write(
        dir.path().join("web.yaml"),
        WEB.replace("replicas: 2", "replicas: two"),
    )?;
    let output = agent(&kubeconfig, dir.path(), &[]).await?;
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("apply failed, nothing written"), "{stdout}");
    assert!(stdout.contains("apps/Deployment default/web: "), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn a_manifest_error_names_the_file_and_line() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests)?;
    std::fs::write(
        manifests.join("web.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [x}\n",
    )?;
    let output = agent(&kubeconfig, &manifests, &[]).await?;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("error: web.yaml:3"));
    Ok(())
}

#[tokio::test]
async fn waiting_for_a_bundle_that_never_gets_healthy_times_out_with_three() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let stuck = WEB.replace(
        "  name: web\nspec:",
        "  name: web\n  annotations: {sim.flotilla.dev/fail: \"true\"}\nspec:",
    );
    std::fs::write(dir.path().join("web.yaml"), stuck)?;
    let output = agent(&kubeconfig, dir.path(), &["--wait", "--timeout", "2s"]).await?;
    assert_eq!(output.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("health Degraded"), "{stdout}");
    assert!(stdout.contains("timed out"), "{stdout}");
    Ok(())
}
