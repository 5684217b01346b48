//! `flotilla-agent run --source-dir`, run as a real process against the simulator: each
//! subfolder is kept applied as a bundle, edits are applied, a removed subfolder is pruned.

use crate::support::sim as support;

use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::Value;
use support::*;

/// Polls until `check` holds for the object, or fails after `PATIENCE`.
async fn eventually(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    check: impl Fn(Option<&Value>) -> bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let live = get(client, "v1", "ConfigMap", Some(namespace), name).await?;
        if check(live.as_ref()) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("ConfigMap {namespace}/{name} never reached the expected state: {live:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn manifest(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: \"{value}\"\n"
    )
}

#[tokio::test]
async fn subfolders_are_kept_applied_as_they_change() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let source = dir.path().join("bundles");
    std::fs::create_dir_all(source.join("web"))?;
    std::fs::write(source.join("web/settings.yaml"), manifest("settings", "1"))?;

    let mut agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla-agent"))
        .args(["run", "--context", CLUSTER])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--source-dir")
        .arg(&source)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .kill_on_drop(true)
        .spawn()?;

    // Objects without a namespace go to the namespace named after the bundle.
    eventually(&client, "web", "settings", |o| {
        o.is_some_and(|o| o["data"]["key"] == "1")
    })
    .await?;
    std::fs::write(source.join("web/settings.yaml"), manifest("settings", "2"))?;
    eventually(&client, "web", "settings", |o| {
        o.is_some_and(|o| o["data"]["key"] == "2")
    })
    .await?;

    std::fs::create_dir_all(source.join("db"))?;
    std::fs::write(source.join("db/config.yaml"), manifest("config", "x"))?;
    eventually(&client, "db", "config", |o| o.is_some()).await?;

    std::fs::remove_dir_all(source.join("web"))?;
    eventually(&client, "web", "settings", |o| o.is_none()).await?;
    assert!(
        get(&client, "v1", "ConfigMap", Some("db"), "config")
            .await?
            .is_some(),
        "db is untouched"
    );

    agent.start_kill()?;
    agent.wait().await?;
    Ok(())
}
