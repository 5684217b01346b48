//! `flotilla clusters`, `cluster add|label|remove`, `revisions` and `status [--watch]`, run as the real
//! binary against a real hub process following a Git repository; a broken commit shows its file
//! and line in `revisions` and `status` while no cluster changes; an unreachable hub is an error
//! that names the address and how to set it.

use crate::support::hub as support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use serde_json::Value;
use support::{GitRepo, HubProcess};

const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: dev
    clusterSelector: {matchLabels: {env: dev}}
    track: {branch: main}
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    promoteFrom: dev
bundles:
  - name: app
    path: bundles/app
    namespace: app
    variables: {greeting: hello}
";

const CONFIG: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: app
data:
  cluster: ${cluster.name}
  greeting: ${greeting}
";

const INVENTORY: &str = "\
apiVersion: flotilla.dev/v1
kind: ClusterInventory
clusters:
  - name: dev-1
    labels: {env: dev, region: eu}
  - name: prod-1
    labels: {env: prod, region: us}
";

fn fleet() -> Result<(GitRepo, String, tempfile::TempDir)> {
    let repo = GitRepo::new()?;
    repo.write("flotilla.yaml", SPEC)?;
    repo.write("bundles/app/config.yaml", CONFIG)?;
    let first = repo.commit("fleet")?;
    let inventory = tempfile::tempdir()?;
    std::fs::write(inventory.path().join("clusters.yaml"), INVENTORY)?;
    Ok((repo, first, inventory))
}

fn cluster<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["clusters"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn desired(status: &Value, name: &str) -> Option<String> {
    cluster(status, name)?["bundles"][0]["desiredRevision"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn cluster_commands_and_status_against_a_hub_process() -> Result<()> {
    let (repo, first, inventory) = fleet()?;
    let hub = HubProcess::start(&repo, &inventory.path().join("clusters.yaml"))?;
    hub.wait_json("both clusters at the first commit", &["clusters"], |v| {
        v["clusters"].as_array().is_some_and(|c| {
            c.len() == 2 && c.iter().all(|c| c["assignedRevision"] == first.as_str())
        })
    })?;

    let added = hub.text(&["cluster", "add", "prod-2", "--labels", "env=prod,region=ap"])?;
    assert_eq!(
        added,
        "cluster prod-2 added with labels env=prod,region=ap\n"
    );
    let table = hub.text(&["clusters"])?;
    let header = table.lines().next().context("empty table")?;
    assert!(
        header.starts_with("NAME") && header.contains("STAGE"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("prod-2") && l.contains("env=prod,region=ap")),
        "{table}"
    );
    let failed = hub.flotilla(&["cluster", "add", "prod-2"])?;
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("already registered"), "{stderr}");

    // Every cluster with at least: name, stage, labels, online, and per bundle the desired and
    // applied revision and health.
    let status = hub.wait_json("prod-2 assigned", &["status"], |s| {
        desired(s, "prod-2").as_deref() == Some(first.as_str())
    })?;
    let prod2 = cluster(&status, "prod-2").context("prod-2 missing")?;
    assert_eq!(prod2["stage"], "prod");
    assert_eq!(prod2["labels"]["region"], "ap");
    assert_eq!(prod2["online"], false);
    let bundle = &prod2["bundles"][0];
    assert_eq!(bundle["name"], "app");
    assert_eq!(bundle["desiredRevision"], first.as_str());
    assert!(bundle["appliedRevision"].is_null(), "{bundle}");
    assert_eq!(bundle["health"], "Unknown");
    let yaml = hub.text(&["status", "-o", "yaml"])?;
    let parsed: Value = serde_saphyr::from_str(&yaml)?;
    assert_eq!(parsed["clusters"].as_array().map(Vec::len), Some(3));

    // A broken commit: failed in `revisions` and `status`, with file and line; nothing moves.
    repo.write(
        "bundles/app/config.yaml",
        &CONFIG.replace("${greeting}", "${farewell}"),
    )?;
    let broken = repo.commit("broken")?;
    let revisions = hub.wait_json("the broken commit failed", &["revisions"], |r| {
        r["revisions"][0]["commit"] == broken.as_str() && r["revisions"][0]["status"] == "failed"
    })?;
    let error = &revisions["revisions"][0]["error"];
    assert_eq!(error["file"], "bundles/app/config.yaml");
    assert_eq!(error["line"], 7);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("undefined variable `farewell`")),
        "{error}"
    );
    let table = hub.text(&["revisions"])?;
    let line = table
        .lines()
        .find(|l| l.starts_with(&broken[..12]))
        .context("broken commit not listed")?;
    assert!(
        line.contains("failed") && line.contains("bundles/app/config.yaml:7: "),
        "{table}"
    );
    let status = hub.json(&["status"])?;
    assert_eq!(status["latestRevision"]["status"], "failed");
    assert_eq!(
        status["latestRevision"]["error"]["file"],
        "bundles/app/config.yaml"
    );
    for name in ["dev-1", "prod-1", "prod-2"] {
        assert_eq!(
            desired(&status, name).as_deref(),
            Some(first.as_str()),
            "{name}"
        );
    }
    let table = hub.text(&["status"])?;
    assert!(
        table.contains(&format!(
            "LATEST   {} FAILED  bundles/app/config.yaml:7: ",
            &broken[..12]
        )),
        "{table}"
    );
    assert!(
        table.contains("nothing from it reaches any cluster"),
        "{table}"
    );

    let removed = hub.text(&["cluster", "remove", "prod-2"])?;
    assert_eq!(removed, "cluster prod-2 removed\n");
    let clusters = hub.json(&["clusters"])?;
    assert_eq!(clusters["clusters"].as_array().map(Vec::len), Some(2));
    Ok(())
}

#[test]
fn cluster_labels_move_a_cluster_between_stages_all_or_nothing() -> Result<()> {
    let (repo, first, inventory) = fleet()?;
    let hub = HubProcess::start(&repo, &inventory.path().join("clusters.yaml"))?;
    hub.text(&["cluster", "add", "edge-1", "--labels", "env=prod,region=ap"])?;
    hub.wait_json("edge-1 in prod", &["status"], |s| {
        cluster(s, "edge-1").is_some_and(|c| c["stage"] == "prod")
            && desired(s, "edge-1").as_deref() == Some(first.as_str())
    })?;

    let labelled = hub.text(&[
        "cluster",
        "label",
        "edge-1",
        "env=dev",
        "region-",
        "wave=canary",
    ])?;
    assert_eq!(labelled, "cluster edge-1 labels: env=dev,wave=canary\n");
    let status = hub.wait_json("edge-1 in dev", &["status"], |s| {
        cluster(s, "edge-1").is_some_and(|c| c["stage"] == "dev")
    })?;
    let edge = cluster(&status, "edge-1").context("edge-1 missing")?;
    assert_eq!(
        edge["labels"],
        serde_json::json!({"env": "dev", "wave": "canary"})
    );

    // Refused as a whole, each with what to do: the labels stay as they are.
    for (args, expected) in [
        (
            &["cluster", "label", "dev-1", "env=prod"][..],
            "is listed in this hub's clusters file",
        ),
        (
            &["cluster", "label", "edge-1", "env=prod", "region-"][..],
            "has no label `region` to remove",
        ),
        (
            &["cluster", "label", "edge-1", "env=prod", "bad key=x"][..],
            "bad key",
        ),
        (
            &["cluster", "label", "edge-1", "env=prod", "env-"][..],
            "is both set and removed",
        ),
        (
            &["cluster", "label", "nope", "a=b"][..],
            "is not registered",
        ),
        (
            &["cluster", "label", "edge-1", "region"][..],
            "neither KEY=VALUE",
        ),
    ] {
        let refused = hub.flotilla(args)?;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let json = hub.json(&["cluster", "label", "edge-1", "tier=gold"])?;
    assert_eq!(
        json,
        serde_json::json!({"name": "edge-1", "labels": {"env": "dev", "tier": "gold", "wave": "canary"}})
    );

    let audit = hub.json(&["audit"])?;
    let labels: Vec<(&str, &str)> = audit
        .as_array()
        .context("audit events")?
        .iter()
        .filter(|e| e["action"] == "cluster.label")
        .map(|e| {
            (
                e["target"].as_str().unwrap_or_default(),
                e["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        labels.contains(&("cluster/edge-1", "succeeded"))
            && labels.contains(&("cluster/dev-1", "failed")),
        "{labels:?}"
    );
    Ok(())
}

#[test]
fn status_watch_prints_each_change() -> Result<()> {
    let (repo, first, inventory) = fleet()?;
    let hub = HubProcess::start(&repo, &inventory.path().join("clusters.yaml"))?;
    hub.wait_json("the fleet assigned", &["clusters"], |v| {
        v["clusters"].as_array().is_some_and(|c| {
            c.len() == 2 && c.iter().all(|c| c["assignedRevision"] == first.as_str())
        })
    })?;
    let mut watch = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["status", "--watch", "-o", "json", "--hub", &hub.api])
        .env("FLOTILLA_CONFIG", "/nonexistent/flotilla/config.yaml")
        .env("FLOTILLA_INSECURE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = watch.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first_line = lines.next().context("watch printed nothing")??;
    let initial: Value = serde_json::from_str(&first_line)?;
    assert_eq!(initial["clusters"].as_array().map(Vec::len), Some(2));
    hub.text(&["cluster", "add", "qa-1", "--labels", "env=qa"])?;
    let mut seen = false;
    for line in lines.by_ref().take(20) {
        let status: Value = serde_json::from_str(&line?)?;
        if cluster(&status, "qa-1").is_some() {
            seen = true;
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen, "the watch never showed the added cluster");
    Ok(())
}

#[test]
fn an_unreachable_hub_is_named_with_how_to_set_it() -> Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?.to_string();
    drop(listener);
    let output = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["status", "--hub", &address])
        .env("FLOTILLA_CONFIG", "/nonexistent/flotilla/config.yaml")
        .env("FLOTILLA_INSECURE", "1")
        .output()?;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot reach the hub at {address}")),
        "{stderr}"
    );
    assert!(stderr.contains("FLOTILLA_HUB"), "{stderr}");
    Ok(())
}
