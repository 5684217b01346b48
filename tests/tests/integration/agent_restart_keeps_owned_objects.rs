//! An agent restarted with its state directory, on the simulator and on a real cluster: without
//! hearing from the hub again it keeps what it owns (the same objects, not re-created), puts
//! back what was changed while it was down, and prunes from what it recorded before the restart
//! when the next revision drops objects. An agent on a fresh disk prunes from the inventory
//! kept in the cluster; one whose desired revision is refused enforces the last one applied.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_agent::{Event, HeldBundle};
use flotilla_testkit::on_sim_and_real;
use flotilla_testkit::real::Target;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::support::engine::{
    applied, config_map, deployment, engine_keeping_state, revision, wait_for,
};

on_sim_and_real!(Duration::from_millis(200);
    a_restarted_engine_keeps_its_objects_corrects_drift_and_prunes,
    a_replacement_without_local_state_prunes_what_the_cluster_inventory_records,
    after_a_restart_a_refused_revision_leaves_the_last_applied_one_enforced,
);

async fn a_restarted_engine_keeps_its_objects_corrects_drift_and_prunes(
    target: &Target,
) -> Result<()> {
    let ns = target.name("app");
    let state = tempfile::tempdir()?;
    let client = target.client();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    let (first, mut reports) = engine_keeping_state(target, Some(state.path()))?;
    let r1 = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        config_map("edited", "1"),
        config_map("deleted", "1"),
        config_map("untouched", "1"),
        deployment("web", 2),
    ];
    first.apply(revision(&ns, "shop", "r1", r1))?;
    applied(&mut reports, "shop", "r1").await?;
    first.shutdown().await;
    let before = identities(&config_maps, &deployments).await?;

    // While no agent runs, someone edits two objects and deletes a third.
    let someone = PatchParams::default();
    config_maps
        .patch(
            "edited",
            &someone,
            &Patch::Merge(json!({"data": {"key": "tampered"}})),
        )
        .await?;
    deployments
        .patch(
            "web",
            &someone,
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await?;
    config_maps.delete("deleted", &Default::default()).await?;
    let untouched_version = config_maps
        .get("untouched")
        .await?
        .metadata
        .resource_version;

    let (second, mut reports) = engine_keeping_state(target, Some(state.path()))?;
    assert_eq!(
        second.held(),
        [HeldBundle {
            name: "shop".into(),
            content_hash: "hash-r1".into()
        }],
        "the held revision is known from the state directory"
    );
    assert_eq!(
        applied(&mut reports, "shop", "r1").await?,
        (5, 0),
        "the persisted revision is enforced again, pruning nothing"
    );
    let after = identities(&config_maps, &deployments).await?;
    for name in ["ConfigMap edited", "ConfigMap untouched", "Deployment web"] {
        assert_eq!(
            before.get(name),
            after.get(name),
            "{name} is the same object, not re-created"
        );
    }
    assert_ne!(
        before.get("ConfigMap deleted"),
        after.get("ConfigMap deleted"),
        "the deleted ConfigMap is back, as a new object"
    );
    assert_eq!(
        config_maps
            .get("untouched")
            .await?
            .metadata
            .resource_version,
        untouched_version,
        "re-applying an unchanged object writes nothing"
    );
    let edited = config_maps.get("edited").await?;
    assert_eq!(
        edited
            .data
            .unwrap_or_default()
            .get("key")
            .map(String::as_str),
        Some("1")
    );
    let web = deployments.get("web").await?;
    assert_eq!(web.spec.and_then(|s| s.replicas), Some(2));

    let r2 = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        config_map("edited", "1"),
    ];
    second.apply(revision(&ns, "shop", "r2", r2))?;
    let pruned = wait_for(&mut reports, "shop", |r| match &r.event {
        Event::Pruned { objects, .. } if r.revision == "r2" => Some(objects.clone()),
        _ => None,
    })
    .await?;
    let mut pruned = pruned;
    pruned.sort();
    assert_eq!(
        pruned,
        [
            format!("ConfigMap {ns}/deleted"),
            format!("ConfigMap {ns}/untouched"),
            format!("apps/Deployment {ns}/web"),
        ]
    );
    assert_eq!(applied(&mut reports, "shop", "r2").await?, (2, 3));
    for name in ["deleted", "untouched"] {
        assert!(
            config_maps.get_opt(name).await?.is_none(),
            "{name} is pruned"
        );
    }
    let web = deployments.get_opt("web").await?;
    assert!(
        web.is_none_or(|w| w.metadata.deletion_timestamp.is_some()),
        "web is pruned"
    );
    assert_eq!(
        config_maps.get("edited").await?.metadata.uid,
        before.get("ConfigMap edited").cloned(),
        "what stays in the bundle is left in place"
    );
    second.shutdown().await;
    Ok(())
}

async fn a_replacement_without_local_state_prunes_what_the_cluster_inventory_records(
    target: &Target,
) -> Result<()> {
    let ns = target.name("app");
    let bundle = target.name("shop");
    let old_disk = tempfile::tempdir()?;
    let (old, mut reports) = engine_keeping_state(target, Some(old_disk.path()))?;
    let r1 = vec![config_map("a", "1"), config_map("b", "1")];
    old.apply(revision(&ns, &bundle, "r1", r1))?;
    applied(&mut reports, &bundle, "r1").await?;
    old.shutdown().await;

    let new_disk = tempfile::tempdir()?;
    let (replacement, mut reports) = engine_keeping_state(target, Some(new_disk.path()))?;
    assert!(replacement.held().is_empty());
    assert!(
        replacement.inventoried().await?.contains(&bundle),
        "the bundle's inventory is found in the cluster"
    );
    replacement.apply(revision(&ns, &bundle, "r2", vec![config_map("c", "1")]))?;
    assert_eq!(applied(&mut reports, &bundle, "r2").await?, (1, 2));
    let config_maps: Api<ConfigMap> = Api::namespaced(target.client(), &ns);
    for name in ["a", "b"] {
        assert!(config_maps.get_opt(name).await?.is_none(), "{name} leaked");
    }
    replacement.shutdown().await;
    Ok(())
}

async fn after_a_restart_a_refused_revision_leaves_the_last_applied_one_enforced(
    target: &Target,
) -> Result<()> {
    let ns = target.name("app");
    let state = tempfile::tempdir()?;
    let (first, mut reports) = engine_keeping_state(target, Some(state.path()))?;
    first.apply(revision(&ns, "shop", "r1", vec![config_map("a", "1")]))?;
    applied(&mut reports, "shop", "r1").await?;
    let mut refused = config_map("a", "2");
    refused["dataa"] = json!({});
    first.apply(revision(&ns, "shop", "r2", vec![refused]))?;
    wait_for(&mut reports, "shop", |r| {
        matches!(r.event, Event::ApplyFailed { .. }).then_some(())
    })
    .await?;
    first.shutdown().await;

    let (second, mut reports) = engine_keeping_state(target, Some(state.path()))?;
    assert_eq!(
        second.held()[0].content_hash,
        "hash-r2",
        "the desired revision is still r2"
    );
    applied(&mut reports, "shop", "r1").await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(target.client(), &ns);
    config_maps.delete("a", &Default::default()).await?;
    wait_for(&mut reports, "shop", |r| match &r.event {
        Event::DriftCorrected { objects } if r.revision == "r1" => Some(objects.clone()),
        _ => None,
    })
    .await?;
    let a = config_maps.get("a").await?;
    assert_eq!(
        a.data.unwrap_or_default().get("key").map(String::as_str),
        Some("1")
    );
    second.shutdown().await;
    Ok(())
}

/// The UID of every object of the bundle that exists, by kind and name.
async fn identities(
    config_maps: &Api<ConfigMap>,
    deployments: &Api<Deployment>,
) -> Result<BTreeMap<String, String>> {
    let mut uids = BTreeMap::new();
    for name in ["edited", "deleted", "untouched"] {
        if let Some(cm) = config_maps.get_opt(name).await? {
            let uid = cm.metadata.uid.context("a stored object has a UID")?;
            uids.insert(format!("ConfigMap {name}"), uid);
        }
    }
    let web = deployments.get("web").await?;
    uids.insert(
        "Deployment web".into(),
        web.metadata.uid.context("a stored object has a UID")?,
    );
    Ok(uids)
}
