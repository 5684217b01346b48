//! A bundle carrying a CRD and its custom resources applies in one go: the CRD is applied and
//! established first, then its resources are checked and applied. Namespaces a bundle creates
//! work the same way.

use crate::support::sim as support;

use std::time::Duration;

use anyhow::Result;
use flotilla_agent::Event;
use flotilla_agent::health::Health;
use flotilla_sim::Fault;
use serde_json::{Value, json};
use support::*;

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                }}}
            }]
        }
    })
}

fn widget(name: &str, size: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": {"size": size}})
}

#[tokio::test]
async fn a_crd_and_its_resources_apply_together() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let (engine, mut reports) = engine(&sim, None)?;

    let objects = vec![
        widget("w1", json!(3)),
        config_map("settings", "x"),
        widget_crd(),
    ];
    engine.apply(revision("widgets", "r1", objects))?;
    assert_eq!(applied(&mut reports, "widgets", "r1").await?, (3, 0));
    let w1 = get(&client, "example.com/v1", "Widget", Some("app"), "w1")
        .await?
        .expect("widget exists");
    assert_eq!(w1["spec"]["size"], 3);
    assert_eq!(w1["metadata"]["labels"]["flotilla.dev/bundle"], "widgets");
    let health = wait_for(&mut reports, "widgets", |r| match &r.event {
        Event::HealthChanged(h) if h.health == Health::Healthy => Some(h.clone()),
        _ => None,
    })
    .await?;
    assert!(health.unhealthy.is_empty());
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_invalid_custom_resource_leaves_only_its_crd_written() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let (engine, mut reports) = engine(&sim, None)?;

    let objects = vec![
        widget_crd(),
        widget("w1", json!("huge")),
        config_map("settings", "x"),
    ];
    engine.apply(revision("widgets", "r1", objects))?;
    let (errors, nothing_written) = wait_for(&mut reports, "widgets", |r| match &r.event {
        Event::ApplyFailed {
            errors,
            nothing_written,
            ..
        } => Some((errors.clone(), *nothing_written)),
        _ => None,
    })
    .await?;
    assert!(
        !nothing_written,
        "the CRD was written before its resources could be checked"
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].object, "example.com/Widget app/w1");
    assert!(
        get(
            &client,
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "widgets.example.com"
        )
        .await?
        .is_some()
    );
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "settings")
            .await?
            .is_none()
    );
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn objects_in_a_namespace_the_bundle_creates_are_checked_once_it_exists() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let (engine, mut reports) = engine(&sim, None)?;

    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "store"}});
    let mut settings = config_map("settings", "x");
    settings["metadata"]["namespace"] = json!("store");
    engine.apply(revision("store", "r1", vec![settings, namespace]))?;
    assert_eq!(applied(&mut reports, "store", "r1").await?, (2, 0));
    assert!(
        get(&client, "v1", "ConfigMap", Some("store"), "settings")
            .await?
            .is_some()
    );

    // A namespace neither the cluster nor the bundle has is an error, before anything is written.
    let mut stray = config_map("stray", "x");
    stray["metadata"]["namespace"] = json!("nowhere");
    engine.apply(revision(
        "stray",
        "r1",
        vec![stray, config_map("fine", "1")],
    ))?;
    let errors = wait_for(&mut reports, "stray", |r| match &r.event {
        Event::ApplyFailed {
            errors,
            nothing_written: true,
            ..
        } => Some(errors.clone()),
        _ => None,
    })
    .await?;
    assert!(
        errors[0]
            .message
            .contains("namespace nowhere does not exist"),
        "{errors:?}"
    );
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "fine")
            .await?
            .is_none()
    );
    engine.shutdown().await;
    Ok(())
}

/// On a control plane of several API servers, the one answering may not serve a CRD's
/// resources yet when the CRD is established: those 404s mean "not yet" and are tried again.
#[tokio::test]
async fn custom_resources_are_tried_again_until_the_api_server_serves_their_kind() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    sim.set_fault(
        CLUSTER,
        Fault::LaggingCustomResources(Duration::from_millis(1500)),
    );
    let client = client(&sim)?;
    let (engine, mut reports) = engine(&sim, None)?;

    let objects = vec![
        widget_crd(),
        widget("w1", json!(3)),
        config_map("settings", "x"),
    ];
    engine.apply(revision("widgets", "r1", objects))?;
    assert_eq!(applied(&mut reports, "widgets", "r1").await?, (3, 0));
    let w1 = get(&client, "example.com/v1", "Widget", Some("app"), "w1").await?;
    assert_eq!(w1.map(|w| w["spec"]["size"].clone()), Some(json!(3)));
    engine.shutdown().await;
    Ok(())
}

/// The 404s are tried again for the establish timeout only: a kind still not served after it
/// fails the revision, naming the object, and nothing but the CRD is written.
#[tokio::test]
async fn custom_resources_never_served_fail_once_the_establish_timeout_has_passed() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    sim.set_fault(
        CLUSTER,
        Fault::LaggingCustomResources(Duration::from_secs(600)),
    );
    let client = client(&sim)?;
    let mut config = config(None);
    config.establish_timeout = Duration::from_secs(1);
    let (engine, mut reports) = engine_with(&sim, config)?;

    let objects = vec![
        widget_crd(),
        widget("w1", json!(3)),
        config_map("settings", "x"),
    ];
    let started = std::time::Instant::now();
    engine.apply(revision("widgets", "r1", objects))?;
    let (errors, nothing_written, retry_in) =
        wait_for(&mut reports, "widgets", |r| match &r.event {
            Event::ApplyFailed {
                errors,
                nothing_written,
                retry_in,
            } => Some((errors.clone(), *nothing_written, *retry_in)),
            _ => None,
        })
        .await?;
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "gave up at once"
    );
    assert!(!nothing_written);
    assert_eq!(retry_in, None, "{errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].object, "example.com/Widget app/w1");
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "settings")
            .await?
            .is_none()
    );
    engine.shutdown().await;
    Ok(())
}
