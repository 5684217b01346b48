//! Health follows the simulated controllers: every kind goes from Progressing to Healthy as it
//! rolls out, and the simulator's failures (ProgressDeadlineExceeded, a failed Job,
//! CrashLoopBackOff) make the bundle Degraded with each failing object named.

use crate::support::sim as support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use flotilla_agent::Event;
use flotilla_agent::health::{BundleHealth, Health};
use serde_json::{Value, json};
use support::*;

fn fail() -> Value {
    json!({"sim.flotilla.dev/fail": "true"})
}

fn template(name: &str) -> Value {
    json!({"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "main", "image": "example/app:1"}]}})
}

fn stateful_set(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "annotations": annotations},
           "spec": {"replicas": 1, "serviceName": name, "selector": {"matchLabels": {"app": name}}, "template": template(name)}})
}

fn daemon_set(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "annotations": annotations},
           "spec": {"selector": {"matchLabels": {"app": name}}, "template": template(name)}})
}

fn replica_set(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template(name)}})
}

fn job(name: &str, annotations: Value) -> Value {
    let mut template = template(name);
    template["spec"]["restartPolicy"] = json!("Never");
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "annotations": annotations},
           "spec": {"template": template}})
}

fn pod(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations},
           "spec": {"containers": [{"name": "main", "image": "example/app:1"}]}})
}

fn claim(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

fn load_balancer(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 80}]}})
}

/// Waits for a health report that `accept` takes.
async fn health_until(
    reports: &mut tokio::sync::broadcast::Receiver<flotilla_agent::Report>,
    bundle: &str,
    accept: impl Fn(&BundleHealth) -> bool,
) -> Result<BundleHealth> {
    wait_for(reports, bundle, |r| match &r.event {
        Event::HealthChanged(h) if accept(h) => Some(h.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn every_kind_progresses_then_becomes_healthy() -> Result<()> {
    let sim = sim(Duration::from_millis(300)).await?;
    let (engine, mut reports) = engine(&sim, None)?;
    let objects = vec![
        deployment("web", 2, json!({})),
        stateful_set("db", json!({})),
        daemon_set("agent", json!({})),
        replica_set("rs"),
        job("migrate", json!({})),
        pod("solo", json!({})),
        claim("data"),
        load_balancer("front"),
    ];
    engine.apply(revision("kinds", "r1", objects))?;
    applied(&mut reports, "kinds", "r1").await?;

    let first = health_until(&mut reports, "kinds", |_| true).await?;
    assert_eq!(
        first.health,
        Health::Progressing,
        "nothing is rolled out right after applying"
    );
    let progressing: Vec<&str> = first
        .unhealthy
        .iter()
        .map(|(id, _)| id.kind.as_str())
        .collect();
    assert_eq!(
        progressing.len(),
        5,
        "the first five are listed: {progressing:?}"
    );

    let healthy = health_until(&mut reports, "kinds", |h| h.health == Health::Healthy).await?;
    assert!(healthy.unhealthy.is_empty());
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn simulated_failures_degrade_the_bundle_naming_each_object() -> Result<()> {
    let sim = sim(Duration::from_millis(200)).await?;
    let (engine, mut reports) = engine(&sim, None)?;
    let objects = vec![
        deployment("web", 1, fail()),
        stateful_set("db", fail()),
        daemon_set("agent", fail()),
        job("migrate", fail()),
        pod("solo", fail()),
        config_map("fine", "1"),
    ];
    engine.apply(revision("broken", "r1", objects))?;
    applied(&mut reports, "broken", "r1").await?;

    let degraded = health_until(&mut reports, "broken", |h| {
        h.unhealthy.len() == 5
            && h.unhealthy
                .iter()
                .all(|(_, o)| o.health == Health::Degraded)
    })
    .await?;
    assert_eq!(degraded.health, Health::Degraded);
    let messages: BTreeMap<String, String> = degraded
        .unhealthy
        .iter()
        .map(|(id, h)| (id.kind.clone(), h.message.clone()))
        .collect();
    assert!(
        messages["Deployment"].contains("exceeded its progress deadline"),
        "{messages:?}"
    );
    assert!(
        messages["StatefulSet"].contains("exceeded its progress deadline"),
        "{messages:?}"
    );
    assert!(
        messages["DaemonSet"].contains("exceeded its progress deadline"),
        "{messages:?}"
    );
    assert!(
        messages["Job"].contains("BackoffLimitExceeded"),
        "{messages:?}"
    );
    assert!(messages["Pod"].contains("CrashLoopBackOff"), "{messages:?}");
    let status = engine.status();
    assert_eq!(
        status[0].health.as_ref().map(|h| h.health),
        Some(Health::Degraded)
    );
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_deleted_object_is_missing_until_it_is_recreated() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let (engine, mut reports) = engine(&sim, None)?;
    let mut bundle = revision("shop", "r1", vec![config_map("a", "1")]);
    bundle.drift = flotilla_agent::DriftMode::Report;
    engine.apply(bundle)?;
    applied(&mut reports, "shop", "r1").await?;
    health_until(&mut reports, "shop", |h| h.health == Health::Healthy).await?;

    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client, "app");
    api.delete("a", &Default::default()).await?;
    let missing = health_until(&mut reports, "shop", |h| h.health == Health::Missing).await?;
    assert_eq!(missing.unhealthy[0].0.to_string(), "ConfigMap app/a");
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn health_is_reported_after_every_new_revision_even_when_the_verdict_is_unchanged()
-> Result<()> {
    let sim = sim(Duration::from_millis(0)).await?;
    let (engine, mut reports) = engine(&sim, None)?;
    engine.apply(revision("settings", "r1", vec![config_map("a", "1")]))?;
    applied(&mut reports, "settings", "r1").await?;
    health_until(&mut reports, "settings", |h| h.health == Health::Healthy).await?;

    // The hub forgets a bundle's health when its applied content changes; it learns r2's only
    // if the agent says it again, although r2 is as Healthy as r1 was.
    engine.apply(revision("settings", "r2", vec![config_map("a", "2")]))?;
    applied(&mut reports, "settings", "r2").await?;
    let verdict = wait_for(&mut reports, "settings", |r| match &r.event {
        Event::HealthChanged(h) if r.revision == "r2" => Some(h.health),
        _ => None,
    })
    .await?;
    assert_eq!(verdict, Health::Healthy);
    Ok(())
}
