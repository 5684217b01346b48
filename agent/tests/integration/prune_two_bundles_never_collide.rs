//! Two bundles in one namespace: neither can take the other's objects, and pruning or removing
//! one never deletes the other's.

use crate::support::sim as support;

use std::time::Duration;

use anyhow::Result;
use flotilla_agent::Event;
use support::*;

#[tokio::test]
async fn bundles_keep_to_their_own_objects() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let (engine, mut reports) = engine(&sim, None)?;

    engine.apply(revision(
        "front",
        "f1",
        vec![config_map("front-only", "1"), config_map("shared", "front")],
    ))?;
    applied(&mut reports, "front", "f1").await?;
    engine.apply(revision("back", "b1", vec![config_map("back-only", "1")]))?;
    applied(&mut reports, "back", "b1").await?;

    // The back bundle may not take an object the front bundle owns.
    engine.apply(revision(
        "back",
        "b2",
        vec![config_map("back-only", "1"), config_map("shared", "back")],
    ))?;
    let errors = wait_for(&mut reports, "back", |r| match &r.event {
        Event::ApplyFailed {
            errors,
            nothing_written: true,
            ..
        } if r.revision == "b2" => Some(errors.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].object, "ConfigMap app/shared");
    assert!(
        errors[0]
            .message
            .contains("already belongs to bundle front"),
        "{errors:?}"
    );
    let shared = get(&client, "v1", "ConfigMap", Some("app"), "shared")
        .await?
        .expect("exists");
    assert_eq!(shared["data"]["key"], "front");

    // Pruning the front bundle down to nothing leaves the back bundle's objects alone.
    engine.apply(revision("front", "f2", vec![]))?;
    assert_eq!(applied(&mut reports, "front", "f2").await?, (0, 2));
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "back-only")
            .await?
            .is_some()
    );

    // Now free, the object can move to the back bundle.
    engine.apply(revision(
        "back",
        "b3",
        vec![config_map("back-only", "1"), config_map("shared", "back")],
    ))?;
    applied(&mut reports, "back", "b3").await?;

    // Removing the front bundle entirely touches nothing of the back bundle's.
    engine.remove("front").await?;
    wait_for(&mut reports, "front", |r| {
        matches!(r.event, Event::Removed { .. }).then_some(())
    })
    .await?;
    for name in ["back-only", "shared"] {
        assert!(
            get(&client, "v1", "ConfigMap", Some("app"), name)
                .await?
                .is_some(),
            "{name} survived"
        );
    }
    assert!(
        get(
            &client,
            "v1",
            "ConfigMap",
            Some("flotilla-system"),
            "flotilla-bundle-front"
        )
        .await?
        .is_none()
    );
    assert_eq!(engine.held().len(), 1);
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn ownership_survives_a_restart_through_the_inventories() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let (first, mut reports) = engine(&sim, None)?;
    first.apply(revision("front", "f1", vec![config_map("shared", "front")]))?;
    applied(&mut reports, "front", "f1").await?;
    first.shutdown().await;

    // A new agent that holds nothing still knows, from the cluster, who owns what.
    let (second, mut reports) = engine(&sim, None)?;
    second.apply(revision("back", "b1", vec![config_map("shared", "back")]))?;
    let errors = wait_for(&mut reports, "back", |r| match &r.event {
        Event::ApplyFailed { errors, .. } => Some(errors.clone()),
        _ => None,
    })
    .await?;
    assert!(
        errors[0]
            .message
            .contains("already belongs to bundle front"),
        "{errors:?}"
    );
    second.shutdown().await;
    Ok(())
}
