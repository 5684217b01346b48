//! `flotilla promote`, `pause`, `resume`, `rollout status [--watch]`, `history`, `rollback` and
//! `approve`, run as the real binary against a real hub process, with a real simulator process
//! and a real agent process per cluster reporting health: a revision the upstream stage has not
//! passed is refused, `--force` promotes it and is audited, a paused rollout gives no further
//! cluster the revision until resumed, and a stage rolls back — ending its active rollout — to
//! any earlier revision it ran (but not to one it never ran).

use crate::support::fleet as sim_fleet;
use crate::support::hub as support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sim_fleet::SimFleet;
use support::{GitRepo, HubProcess};

/// dev never passes anything within the test (its soak is an hour), so promoting to prod needs
/// `--force`; each new head replaces dev's soaking rollout.
const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: dev
    clusterSelector: {matchLabels: {env: dev}}
    track: {branch: main}
    rollout: {soak: 1h, supersede: immediate}
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    promoteFrom: dev
    rollout:
      waves:
        - {name: canary, clusterSelector: {matchLabels: {canary: 'yes'}}, soak: 2s}
      maxUnavailable: 1
bundles:
  - name: app
    path: bundles/app
    namespace: app
    variables: {release: \"1\"}
";

const APP: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: app
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - {name: web, image: \"example/web:${release}\"}
";

const INVENTORY: &str = "\
apiVersion: flotilla.dev/v1
kind: ClusterInventory
clusters:
  - name: sim-0
    labels: {env: dev}
  - name: sim-1
    labels: {env: prod, canary: 'yes'}
  - name: sim-2
    labels: {env: prod}
  - name: sim-3
    labels: {env: prod}
";

fn release(repo: &GitRepo, release: &str) -> Result<String> {
    repo.write(
        "flotilla.yaml",
        &SPEC.replace("release: \"1\"", &format!("release: \"{release}\"")),
    )?;
    repo.commit(&format!("release {release}"))
}

/// Every cluster's assigned revision and whether all its bundles are Healthy, from `status`.
fn clusters(hub: &HubProcess) -> Result<Vec<(String, String, bool)>> {
    let status = hub.json(&["status"])?;
    let clusters = status["clusters"].as_array().context("clusters")?;
    Ok(clusters
        .iter()
        .map(|c| {
            let healthy = c["bundles"]
                .as_array()
                .is_some_and(|b| !b.is_empty() && b.iter().all(|b| b["health"] == "Healthy"));
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["assignedRevision"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                healthy,
            )
        })
        .collect())
}

fn assigned(hub: &HubProcess, cluster: &str) -> Result<String> {
    clusters(hub)?
        .into_iter()
        .find(|(name, _, _)| name == cluster)
        .map(|(_, revision, _)| revision)
        .context("no such cluster")
}

fn wait(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !check()? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Runs `flotilla ARGS` expecting failure; returns its stderr.
fn refused(hub: &HubProcess, args: &[&str]) -> Result<String> {
    let output = hub.flotilla(args)?;
    if output.status.success() {
        bail!(
            "flotilla {args:?} succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    Ok(String::from_utf8(output.stderr)?)
}

#[test]
fn promote_pause_resume_watch_history_and_rollback_drive_a_real_fleet() -> Result<()> {
    let repo = GitRepo::new()?;
    repo.write("flotilla.yaml", SPEC)?;
    repo.write("bundles/app/app.yaml", APP)?;
    let first = repo.commit("release 1")?;
    let inventory = tempfile::tempdir()?;
    let clusters_file = inventory.path().join("clusters.yaml");
    std::fs::write(&clusters_file, INVENTORY)?;
    let hub = HubProcess::start(&repo, &clusters_file)?;
    let _fleet = SimFleet::start(4, &hub.api)?;
    wait("every cluster Healthy at release 1", || {
        let all = clusters(&hub)?;
        Ok(all.len() == 4 && all.iter().all(|(_, r, healthy)| *r == first && *healthy))
    })?;

    let second = release(&repo, "2")?;
    wait("dev given release 2", || {
        Ok(assigned(&hub, "sim-0")? == second)
    })?;
    let prefix = &second[..8];

    // dev has not passed release 2 (it soaks for an hour): prod refuses it.
    let error = refused(&hub, &["promote", "prod", "--revision", prefix])?;
    assert!(
        error.contains("has not passed stage `dev`") && error.contains("--force"),
        "{error}"
    );

    let promoted = hub.json(&[
        "promote",
        "prod",
        "--revision",
        prefix,
        "--force",
        "--reason",
        "hotfix",
    ])?;
    assert_eq!(promoted["pinnedRevision"], second.as_str());
    assert_eq!(promoted["rollout"]["change"], "forcePromote");
    assert_eq!(promoted["rollout"]["status"], "running");

    let paused = hub.json(&["pause", "prod", "--reason", "looking"])?;
    assert_eq!(paused["rollout"]["status"], "paused");
    // Longer than the canary's soak: a running rollout would have moved on by now.
    std::thread::sleep(Duration::from_secs(4));
    let status = hub.json(&["rollout", "status", "prod"])?;
    assert_eq!(status["status"], "paused");
    assert_eq!(
        status["statusReason"],
        "looking (by anonymous (insecure hub))"
    );
    let remaining = &status["waves"][1];
    assert_eq!(remaining["name"], "remaining");
    assert_eq!(remaining["counts"]["waiting"], 2, "{status:#}");
    for cluster in ["sim-2", "sim-3"] {
        assert_eq!(assigned(&hub, cluster)?, first, "{cluster} while paused");
    }
    let table = hub.text(&["rollout", "status", "prod"])?;
    assert!(
        table.contains("WAVE") && table.contains("canary") && table.contains("paused"),
        "{table}"
    );

    let resumed = hub.json(&["resume", "prod"])?;
    assert_eq!(resumed["rollout"]["status"], "running");
    // Not a terminal: one plain line per change, ending when the rollout does.
    let watch = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["rollout", "status", "prod", "--watch"])
        .env("FLOTILLA_CONFIG", "/nonexistent/flotilla/config.yaml")
        .env("FLOTILLA_HUB", &hub.api)
        .env("FLOTILLA_INSECURE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let output = watch.wait_with_output()?;
    let lines = String::from_utf8(output.stdout)?;
    assert!(
        output.status.success(),
        "{lines}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = lines.lines().last().unwrap_or_default();
    // Each line starts with the time it was printed, RFC 3339 in UTC.
    let (at, last) = last.split_once(' ').unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(at).is_ok() && at.ends_with('Z'),
        "{lines}"
    );
    assert!(
        last.starts_with("rollout ")
            && last.contains(": completed")
            && last.contains("remaining done 2/2"),
        "{lines}"
    );
    for cluster in ["sim-1", "sim-2", "sim-3"] {
        assert_eq!(assigned(&hub, cluster)?, second, "{cluster}");
    }

    let history = hub.json(&["history", "prod"])?;
    let pin = &history["pins"][0];
    assert_eq!(pin["change"], "forcePromote");
    assert_eq!(pin["by"], "anonymous (insecure hub)");
    assert_eq!(pin["reason"], "hotfix");
    assert_eq!(pin["rolloutStatus"], "completed");
    let actions: Vec<&str> = history["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    // The promotion refused by the gate is in the history too, as a failed attempt.
    assert_eq!(
        actions,
        ["resume", "pause", "force-promote", "promote"],
        "newest first"
    );
    assert_eq!(history["events"][3]["outcome"], "failed", "{history:#}");

    // Not to release 3, which prod never ran; then, with release 3 forced into prod and rolling
    // out, back past release 2 to release 1.
    let third = release(&repo, "3")?;
    wait("dev given release 3", || {
        Ok(assigned(&hub, "sim-0")? == third)
    })?;
    let error = refused(&hub, &["rollback", "prod", "--to", &third[..8]])?;
    assert!(error.contains("never ran revision"), "{error}");
    let promoted = hub.json(&["promote", "prod", "--revision", &third[..8], "--force"])?;
    assert_eq!(promoted["rollout"]["toRevision"], third.as_str());
    let rolled = hub.json(&[
        "rollback",
        "prod",
        "--to",
        &first[..10],
        "--reason",
        "bad 3",
    ])?;
    assert_eq!(rolled["pinnedRevision"], first.as_str());
    assert_eq!(rolled["rollout"]["status"], "rolledBack");
    for cluster in ["sim-1", "sim-2", "sim-3"] {
        assert_eq!(assigned(&hub, cluster)?, first, "{cluster}");
    }
    wait("prod Healthy at release 1 again", || {
        Ok(clusters(&hub)?
            .iter()
            .filter(|(name, _, _)| name != "sim-0")
            .all(|(_, r, healthy)| *r == first && *healthy))
    })?;
    let history = hub.json(&["history", "prod"])?;
    assert_eq!(history["pins"][0]["change"], "rollback");
    assert_eq!(history["pins"][0]["reason"], "bad 3");
    assert_eq!(history["pins"][0]["rolloutStatus"], "rolledBack");
    assert_eq!(
        history["failedRevisions"],
        serde_json::json!([third]),
        "what prod was moved away from"
    );

    let error = refused(&hub, &["approve", "prod"])?;
    assert!(error.contains("no rollout is awaiting approval"), "{error}");
    Ok(())
}
