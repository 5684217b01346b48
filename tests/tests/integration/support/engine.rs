//! The agent's engine on a [`Target`], simulated or real, and the waits and objects its tests
//! share.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use flotilla_agent::engine::{Engine, EngineConfig};
use flotilla_agent::health::BundleHealth;
use flotilla_agent::retry::RetryPolicy;
use flotilla_agent::{BundleRevision, DriftMode, Event, Report, SystemClock};
use flotilla_testkit::real::Target;
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Longest a single wait may take: a real Deployment past a 10 s progress deadline included,
/// with room for control-plane components starved of CPU on a busy machine (each test passes
/// in about a second otherwise).
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);

/// An engine on the target, with quick retries, in an agent namespace of this test's own.
pub(crate) fn engine(target: &Target) -> Result<(Engine, broadcast::Receiver<Report>)> {
    engine_keeping_state(target, None)
}

/// [`engine`], keeping its desired state in `state_dir` across restarts.
pub(crate) fn engine_keeping_state(
    target: &Target,
    state_dir: Option<&Path>,
) -> Result<(Engine, broadcast::Receiver<Report>)> {
    let config = EngineConfig {
        state_dir: state_dir.map(Path::to_path_buf),
        ..quick_config(target.name("flotilla"))
    };
    engine_with(target.client(), config)
}

/// An engine on `client`: one with other credentials than the target's own.
pub(crate) fn engine_with(
    client: kube::Client,
    config: EngineConfig,
) -> Result<(Engine, broadcast::Receiver<Report>)> {
    let engine = Engine::start(client, config, std::sync::Arc::new(SystemClock))?;
    let reports = engine.subscribe();
    Ok((engine, reports))
}

/// Quick retries and debouncing, inventories in `agent_namespace`.
pub(crate) fn quick_config(agent_namespace: String) -> EngineConfig {
    EngineConfig {
        agent_namespace,
        drift_debounce: Duration::from_millis(200),
        retry: RetryPolicy {
            attempts: 3,
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
            request_timeout: Duration::from_secs(10),
        },
        revision_retry_initial: Duration::from_millis(300),
        revision_retry_max: Duration::from_secs(2),
        establish_timeout: Duration::from_secs(20),
        ..EngineConfig::default()
    }
}

/// A revision of bundle `name` in `namespace`, hashed by its revision name.
pub(crate) fn revision(
    namespace: &str,
    name: &str,
    revision: &str,
    objects: Vec<Value>,
) -> BundleRevision {
    BundleRevision {
        allow: Default::default(),
        name: name.into(),
        revision: revision.into(),
        content_hash: format!("hash-{revision}"),
        namespace: namespace.into(),
        drift: DriftMode::Correct,
        objects,
    }
}

/// Waits for a report about `bundle` that `pick` accepts; every report seen is printed.
pub(crate) async fn wait_for<T>(
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

/// Waits until `revision` of `bundle` is applied, failing if it fails for good.
pub(crate) async fn applied(
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

/// Waits for a health report about `bundle` that `accept` accepts.
pub(crate) async fn health_until(
    reports: &mut broadcast::Receiver<Report>,
    bundle: &str,
    accept: impl Fn(&BundleHealth) -> bool,
) -> Result<BundleHealth> {
    wait_for(reports, bundle, |r| match &r.event {
        Event::HealthChanged(h) if accept(h) => Some(h.clone()),
        _ => None,
    })
    .await
}

/// A namespaced object as JSON, or `None`; `plural` saves a discovery call.
pub(crate) async fn get(
    client: &kube::Client,
    api_version: &str,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>> {
    let api = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        namespace,
        &resource(api_version, plural),
    );
    Ok(api
        .get_opt(name)
        .await?
        .map(serde_json::to_value)
        .transpose()?)
}

/// A cluster-scoped object as JSON, or `None`.
pub(crate) async fn get_cluster(
    client: &kube::Client,
    api_version: &str,
    plural: &str,
    name: &str,
) -> Result<Option<Value>> {
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource(api_version, plural));
    Ok(api
        .get_opt(name)
        .await?
        .map(serde_json::to_value)
        .transpose()?)
}

/// The resource at `api_version` and `plural`, without a discovery call.
pub(crate) fn resource(api_version: &str, plural: &str) -> kube::discovery::ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    kube::discovery::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: String::new(),
        plural: plural.into(),
    }
}

/// A ConfigMap holding `key: value`.
pub(crate) fn config_map(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"key": value}})
}

/// A Deployment of `replicas` Pods labelled `app: name`.
pub(crate) fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": format!("example/{name}:1")}]}
            }
        }
    })
}
