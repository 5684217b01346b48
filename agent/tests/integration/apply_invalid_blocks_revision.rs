//! One invalid object blocks its whole revision: nothing of it is written, nothing is pruned,
//! and the report names every failing object with the API server's message.

use crate::support::sim as support;

use std::time::Duration;

use anyhow::Result;
use flotilla_agent::Event;
use serde_json::json;
use support::*;

#[tokio::test]
async fn an_invalid_object_blocks_the_revision_with_nothing_written() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let (engine, mut reports) = engine(&sim, None)?;

    engine.apply(revision("shop", "r1", vec![config_map("old", "1")]))?;
    applied(&mut reports, "shop", "r1").await?;

    let mut bad_replicas = deployment("web", 1, json!({}));
    bad_replicas["spec"]["replicas"] = json!("many");
    let mut unknown_field = config_map("typo", "1");
    unknown_field["dataa"] = json!({"x": "y"});
    let r2 = vec![
        config_map("new", "1"),
        bad_replicas,
        unknown_field,
        deployment("api", 1, json!({})),
    ];
    engine.apply(revision("shop", "r2", r2))?;
    let (errors, nothing_written, retry_in) = wait_for(&mut reports, "shop", |r| match &r.event {
        Event::ApplyFailed {
            errors,
            nothing_written,
            retry_in,
        } if r.revision == "r2" => Some((errors.clone(), *nothing_written, *retry_in)),
        _ => None,
    })
    .await?;
    assert!(nothing_written);
    assert_eq!(
        retry_in, None,
        "a rejected object needs a new revision, not a retry"
    );
    let failing: Vec<&str> = errors.iter().map(|e| e.object.as_str()).collect();
    assert_eq!(
        failing,
        ["ConfigMap app/typo", "apps/Deployment app/web"],
        "{errors:?}"
    );
    assert!(errors.iter().all(|e| !e.message.is_empty()), "{errors:?}");

    for name in ["new", "typo"] {
        assert!(
            get(&client, "v1", "ConfigMap", Some("app"), name)
                .await?
                .is_none(),
            "{name} was written"
        );
    }
    for name in ["web", "api"] {
        assert!(
            get(&client, "apps/v1", "Deployment", Some("app"), name)
                .await?
                .is_none(),
            "{name} was written"
        );
    }
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "old")
            .await?
            .is_some(),
        "the previous revision's objects are not pruned"
    );
    let status = engine.status();
    assert_eq!(status[0].applied_revision.as_deref(), Some("r1"));
    assert_eq!(status[0].errors.len(), 2);
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_object_of_an_unknown_kind_is_named_before_anything_is_written() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let (engine, mut reports) = engine(&sim, None)?;
    let gadget =
        json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}});
    engine.apply(revision("shop", "r1", vec![config_map("a", "1"), gadget]))?;
    let errors = wait_for(&mut reports, "shop", |r| match &r.event {
        Event::ApplyFailed {
            errors,
            nothing_written: true,
            ..
        } => Some(errors.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].message.contains("does not serve kind Gadget"),
        "{errors:?}"
    );
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "a")
            .await?
            .is_none()
    );
    engine.shutdown().await;
    Ok(())
}
