//! Pruning deletes only what Flotilla created for the bundle: objects someone else created in
//! the same namespace, objects Flotilla adopted, objects marked `flotilla.dev/prune: "false"`,
//! and namespaces still holding any of those, all survive.

use crate::support::sim as support;

use std::time::Duration;

use anyhow::Result;
use flotilla_agent::Event;
use serde_json::json;
use support::*;

#[tokio::test]
async fn foreign_adopted_and_protected_objects_survive_every_prune() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let (engine, mut reports) = engine(&sim, None)?;

    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}});
    let mut keep = config_map("keep", "1");
    keep["metadata"]["annotations"] = json!({"flotilla.dev/prune": "false"});
    engine.apply(revision(
        "shop",
        "r1",
        vec![namespace.clone(), config_map("ours", "1"), keep.clone()],
    ))?;
    applied(&mut reports, "shop", "r1").await?;

    // Someone else's objects in the same namespace: one left alone, one the bundle takes over.
    create(&client, "app", config_map("theirs", "x")).await?;
    create(&client, "app", config_map("adopted", "x")).await?;
    let r2 = vec![
        namespace.clone(),
        config_map("ours", "1"),
        keep,
        config_map("adopted", "2"),
    ];
    engine.apply(revision("shop", "r2", r2))?;
    applied(&mut reports, "shop", "r2").await?;
    let adopted = get(&client, "v1", "ConfigMap", Some("app"), "adopted")
        .await?
        .expect("exists");
    assert_eq!(
        adopted["data"]["key"], "2",
        "the bundle manages an adopted object"
    );

    // Dropping everything but the namespace: only "ours" goes.
    engine.apply(revision("shop", "r3", vec![namespace]))?;
    let kept = wait_for(&mut reports, "shop", |r| match &r.event {
        Event::Pruned { objects, kept, .. } if r.revision == "r3" => {
            Some((objects.clone(), kept.clone()))
        }
        _ => None,
    })
    .await?;
    assert_eq!(kept.0, ["ConfigMap app/ours"]);
    let kept_names: Vec<&str> = kept.1.iter().map(|m| m.object.as_str()).collect();
    assert_eq!(
        kept_names,
        ["ConfigMap app/adopted", "ConfigMap app/keep"],
        "{:?}",
        kept.1
    );
    assert!(kept.1[0].message.contains("existed before"), "{:?}", kept.1);
    assert!(
        kept.1[1].message.contains("flotilla.dev/prune"),
        "{:?}",
        kept.1
    );
    applied(&mut reports, "shop", "r3").await?;
    for name in ["theirs", "adopted", "keep"] {
        assert!(
            get(&client, "v1", "ConfigMap", Some("app"), name)
                .await?
                .is_some(),
            "{name} survives"
        );
    }
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "ours")
            .await?
            .is_none()
    );

    // Removing the bundle would delete its namespace, but that holds others' objects.
    engine.remove("shop").await?;
    let kept = wait_for(&mut reports, "shop", |r| match &r.event {
        Event::Pruned { kept, .. } => Some(kept.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].object, "Namespace app");
    assert!(
        kept[0]
            .message
            .contains("holds objects Flotilla does not own"),
        "{kept:?}"
    );
    wait_for(&mut reports, "shop", |r| {
        matches!(r.event, Event::Removed { .. }).then_some(())
    })
    .await?;
    let namespace = get(&client, "v1", "Namespace", None, "app")
        .await?
        .expect("namespace survives");
    assert!(
        namespace["metadata"]
            .get("deletionTimestamp")
            .is_none_or(serde_json::Value::is_null)
    );
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "theirs")
            .await?
            .is_some()
    );
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_empty_namespace_of_a_removed_bundle_is_deleted() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let (engine, mut reports) = engine(&sim, None)?;
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}});
    engine.apply(revision(
        "shop",
        "r1",
        vec![namespace, config_map("ours", "1")],
    ))?;
    applied(&mut reports, "shop", "r1").await?;
    engine.remove("shop").await?;
    let pruned = wait_for(&mut reports, "shop", |r| match &r.event {
        Event::Removed { pruned } => Some(*pruned),
        _ => None,
    })
    .await?;
    assert_eq!(pruned, 2);
    let namespace = get(&client, "v1", "Namespace", None, "app").await?;
    assert!(
        namespace.is_none_or(|ns| !ns["metadata"]["deletionTimestamp"].is_null()),
        "the namespace is gone or going"
    );
    engine.shutdown().await;
    Ok(())
}
