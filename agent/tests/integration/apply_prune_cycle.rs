//! Applying, changing and shrinking a bundle: changed objects are updated, objects that left
//! the bundle are pruned, and the inventory in the cluster follows.

use crate::support::sim as support;

use std::time::Duration;

use anyhow::Result;
use support::*;

#[tokio::test]
async fn apply_change_and_prune_follow_the_bundle() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let (engine, mut reports) = engine(&sim, None)?;

    let v1 = vec![
        config_map("a", "1"),
        config_map("b", "1"),
        deployment("web", 1, serde_json::json!({})),
    ];
    engine.apply(revision("shop", "r1", v1))?;
    assert_eq!(applied(&mut reports, "shop", "r1").await?, (3, 0));
    let a = get(&client, "v1", "ConfigMap", Some("app"), "a")
        .await?
        .expect("a exists");
    assert_eq!(a["data"]["key"], "1");
    assert_eq!(a["metadata"]["labels"]["flotilla.dev/bundle"], "shop");
    assert!(
        get(&client, "apps/v1", "Deployment", Some("app"), "web")
            .await?
            .is_some()
    );

    let v2 = vec![
        config_map("a", "2"),
        config_map("c", "1"),
        deployment("web", 1, serde_json::json!({})),
    ];
    engine.apply(revision("shop", "r2", v2))?;
    assert_eq!(applied(&mut reports, "shop", "r2").await?, (3, 1));
    let a = get(&client, "v1", "ConfigMap", Some("app"), "a")
        .await?
        .expect("a exists");
    assert_eq!(a["data"]["key"], "2");
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "b")
            .await?
            .is_none(),
        "b was pruned"
    );
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "c")
            .await?
            .is_some()
    );

    let inventory = get(
        &client,
        "v1",
        "ConfigMap",
        Some("flotilla-system"),
        "flotilla-bundle-shop",
    )
    .await?
    .expect("inventory exists");
    let objects = inventory["data"]["objects"].as_str().unwrap_or_default();
    assert!(
        objects.contains("\"name\":\"c\"") && !objects.contains("\"name\":\"b\""),
        "{objects}"
    );
    assert_eq!(inventory["data"]["revision"], "r2");

    engine.apply(revision("shop", "r3", vec![]))?;
    assert_eq!(applied(&mut reports, "shop", "r3").await?, (0, 3));
    for name in ["a", "c"] {
        assert!(
            get(&client, "v1", "ConfigMap", Some("app"), name)
                .await?
                .is_none()
        );
    }
    assert!(
        get(&client, "apps/v1", "Deployment", Some("app"), "web")
            .await?
            .is_none()
    );
    // The default namespace was created for the bundle but is not the bundle's to delete.
    assert!(
        get(&client, "v1", "Namespace", None, "app")
            .await?
            .is_some()
    );
    engine.shutdown().await;
    Ok(())
}
