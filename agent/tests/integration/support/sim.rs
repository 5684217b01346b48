//! Shared set-up for the agent's tests against the simulator: a simulated cluster, an engine
//! on it, waiting for reports, and small object builders.

#![allow(unreachable_pub)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_agent::engine::{Engine, EngineConfig};
use flotilla_agent::retry::RetryPolicy;
use flotilla_agent::{BundleRevision, DriftMode, Event, Report, SystemClock};
use flotilla_sim::{Sim, SimConfig};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// The simulated cluster every test uses.
pub const CLUSTER: &str = "sim-0";
/// Longest any single wait in a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A simulator with one cluster whose controllers take `rollout_delay`.
pub async fn sim(rollout_delay: Duration) -> Result<Sim> {
    Ok(Sim::start(SimConfig {
        clusters: 1,
        rollout_delay,
        ..SimConfig::default()
    })
    .await?)
}

/// A client for the simulated cluster.
pub fn client(sim: &Sim) -> Result<kube::Client> {
    let url = sim.cluster_url(CLUSTER).parse().context("cluster url")?;
    Ok(kube::Client::try_from(kube::Config::new(url))?)
}

/// Engine settings fit for tests: quick retries and a short debounce.
pub fn config(state_dir: Option<&Path>) -> EngineConfig {
    EngineConfig {
        state_dir: state_dir.map(Path::to_path_buf),
        agent_namespace: "flotilla-system".into(),
        drift_debounce: Duration::from_millis(200),
        retry: RetryPolicy {
            attempts: 3,
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
            request_timeout: Duration::from_secs(2),
        },
        revision_retry_initial: Duration::from_millis(300),
        revision_retry_max: Duration::from_secs(2),
        establish_timeout: Duration::from_secs(10),
        ..EngineConfig::default()
    }
}

/// An engine on the simulated cluster, with its report stream.
pub fn engine(
    sim: &Sim,
    state_dir: Option<&Path>,
) -> Result<(Engine, broadcast::Receiver<Report>)> {
    engine_with(sim, config(state_dir))
}

/// An engine with the given settings.
pub fn engine_with(
    sim: &Sim,
    config: EngineConfig,
) -> Result<(Engine, broadcast::Receiver<Report>)> {
    let engine = Engine::start(client(sim)?, config, Arc::new(SystemClock))?;
    let reports = engine.subscribe();
    Ok((engine, reports))
}

/// Waits for a report about `bundle` that `pick` accepts, failing on a timeout. Every report
/// seen is printed, so a failing test shows what the engine said.
pub async fn wait_for<T>(
    reports: &mut broadcast::Receiver<Report>,
    bundle: &str,
    mut pick: impl FnMut(&Report) -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let report = match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Ok(report)) => report,
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => bail!("missed {n} reports"),
            Ok(Err(broadcast::error::RecvError::Closed)) => bail!("report stream closed"),
            Err(_) => bail!("no matching report for bundle {bundle} within {PATIENCE:?}"),
        };
        eprintln!("{report}");
        if report.bundle == bundle
            && let Some(found) = pick(&report)
        {
            return Ok(found);
        }
    }
}

/// Waits until `revision` of `bundle` is applied; fails if applying it fails for good.
pub async fn applied(
    reports: &mut broadcast::Receiver<Report>,
    bundle: &str,
    revision: &str,
) -> Result<(usize, usize)> {
    let outcome = wait_for(reports, bundle, |r| match &r.event {
        Event::Applied { applied, pruned } if r.revision == revision => {
            Some(Ok((*applied, *pruned)))
        }
        Event::ApplyFailed {
            errors,
            retry_in: None,
            ..
        } if r.revision == revision => Some(Err(format!("{errors:?}"))),
        _ => None,
    })
    .await?;
    outcome.map_err(|e| anyhow::anyhow!("revision {revision} of {bundle} failed: {e}"))
}

/// A bundle revision in namespace `app`.
pub fn revision(name: &str, revision: &str, objects: Vec<Value>) -> BundleRevision {
    BundleRevision {
        allow: Default::default(),
        name: name.into(),
        revision: revision.into(),
        content_hash: format!("hash-{revision}"),
        namespace: "app".into(),
        drift: DriftMode::Correct,
        objects,
    }
}

/// A ConfigMap with one key.
pub fn config_map(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"key": value}})
}

/// A Deployment with `replicas` replicas and extra annotations.
pub fn deployment(name: &str, replicas: i64, annotations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": format!("example/{name}:1")}]}
            }
        }
    })
}

/// The live object, or `None`.
pub async fn get(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: kube::Api<kube::api::DynamicObject> = match namespace {
        Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
            kube::Api::namespaced_with(client.clone(), ns, &resource)
        }
        _ => kube::Api::all_with(client.clone(), &resource),
    };
    Ok(api
        .get_opt(name)
        .await?
        .map(|o| serde_json::to_value(o).unwrap_or(Value::Null)))
}

/// Creates an object directly, as someone other than Flotilla would.
pub async fn create(client: &kube::Client, namespace: &str, object: Value) -> Result<()> {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1").to_owned();
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, &kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(client.clone(), namespace, &resource);
    let object: kube::api::DynamicObject = serde_json::from_value(object)?;
    api.create(&kube::api::PostParams::default(), &object)
        .await?;
    Ok(())
}

/// Runs kubectl against the simulator; `None` when kubectl is not installed and the test
/// should skip (it fails instead under `CI=true`).
pub async fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<Option<String>> {
    // Asynchronous, because the simulator serves kubectl from this test's own runtime.
    let output = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--context", CLUSTER])
        .args(args)
        .output()
        .await;
    let output = match output {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                bail!("kubectl is not installed, and CI=true requires it");
            }
            eprintln!("SKIPPED: kubectl is not installed; install it to run this test");
            return Ok(None);
        }
        Err(error) => return Err(error.into()),
    };
    if !output.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned()))
}
