//! The agent's engine against a real Kubernetes API server (scripts/k8s-up: kube-apiserver,
//! controller-manager, scheduler, kwok) and against the simulator, one body each: a revision
//! applies as a unit behind its dry-run, a CRD and its resources apply in one bundle, pruning
//! spares what Flotilla does not own, drift is corrected, and health follows the real
//! Deployment, ReplicaSet and Job controllers. Every test keeps to its own namespaces, agent
//! namespace and CRD group, so the tests of this binary share one real cluster.

use std::time::Duration;

use anyhow::Result;
use flotilla_agent::Event;
use flotilla_agent::health::Health;
use flotilla_testkit::on_sim_and_real;
use flotilla_testkit::real::Target;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::engine::{
    applied, config_map, deployment, engine, get, get_cluster, health_until, revision, wait_for,
};

on_sim_and_real!(Duration::from_millis(200);
    an_invalid_object_blocks_the_revision_with_nothing_written,
    a_crd_and_its_resources_apply_together,
    an_invalid_custom_resource_leaves_only_its_crd_written,
    a_new_crd_version_serves_its_resources_in_the_same_revision,
    foreign_and_protected_objects_survive_a_prune,
    a_removed_bundle_deletes_its_namespace_only_when_nothing_foreign_is_left,
    edits_and_deletes_are_corrected,
    an_available_deployment_is_healthy,
    every_workload_kind_becomes_healthy,
    a_stuck_deployment_and_a_failed_job_degrade_the_bundle,
);

async fn an_invalid_object_blocks_the_revision_with_nothing_written(target: &Target) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let ns = target.name("app");
    engine.apply(revision(&ns, "shop", "r1", vec![config_map("old", "1")]))?;
    applied(&mut reports, "shop", "r1").await?;

    let mut bad_replicas = deployment("web", 1);
    bad_replicas["spec"]["replicas"] = json!("many");
    let mut unknown_field = config_map("typo", "1");
    unknown_field["dataa"] = json!({"x": "y"});
    let r2 = vec![
        config_map("new", "1"),
        bad_replicas,
        unknown_field,
        deployment("api", 1),
    ];
    engine.apply(revision(&ns, "shop", "r2", r2))?;
    let (errors, nothing_written, retry_in) = wait_for(&mut reports, "shop", |r| match &r.event {
        Event::ApplyFailed {
            errors,
            nothing_written,
            retry_in,
        } if r.revision == "r2" => Some((errors.clone(), *nothing_written, *retry_in)),
        _ => None,
    })
    .await?;
    assert!(nothing_written, "{errors:?}");
    assert_eq!(retry_in, None, "a rejected object needs a new revision");
    let failing: Vec<&str> = errors.iter().map(|e| e.object.as_str()).collect();
    assert_eq!(
        failing,
        [
            format!("ConfigMap {ns}/typo"),
            format!("apps/Deployment {ns}/web")
        ],
        "{errors:?}"
    );
    let client = target.client();
    for name in ["new", "typo"] {
        assert!(get(&client, "v1", "configmaps", &ns, name).await?.is_none());
    }
    for name in ["web", "api"] {
        assert!(
            get(&client, "apps/v1", "deployments", &ns, name)
                .await?
                .is_none()
        );
    }
    assert!(
        get(&client, "v1", "configmaps", &ns, "old")
            .await?
            .is_some(),
        "the previous revision's objects stay"
    );
    engine.shutdown().await;
    Ok(())
}

async fn a_crd_and_its_resources_apply_together(target: &Target) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let ns = target.name("app");
    let group = format!("{}.example.com", target.name("g"));
    let objects = vec![
        widget(&group, "v1", "w1", json!(3)),
        config_map("settings", "x"),
        widget_crd(&group, &["v1"]),
    ];
    engine.apply(revision(&ns, "widgets", "r1", objects))?;
    assert_eq!(applied(&mut reports, "widgets", "r1").await?, (3, 0));
    let w1 = get(
        &target.client(),
        &format!("{group}/v1"),
        "widgets",
        &ns,
        "w1",
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("widget w1 was not written"))?;
    assert_eq!(w1["spec"]["size"], 3);
    assert_eq!(w1["metadata"]["labels"]["flotilla.dev/bundle"], "widgets");
    health_until(&mut reports, "widgets", |h| h.health == Health::Healthy).await?;
    engine.shutdown().await;
    Ok(())
}

async fn an_invalid_custom_resource_leaves_only_its_crd_written(target: &Target) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let ns = target.name("app");
    let group = format!("{}.example.com", target.name("g"));
    let objects = vec![
        widget_crd(&group, &["v1"]),
        widget(&group, "v1", "w1", json!("huge")),
        config_map("settings", "x"),
    ];
    engine.apply(revision(&ns, "widgets", "r1", objects))?;
    let (errors, nothing_written) = wait_for(&mut reports, "widgets", |r| match &r.event {
        Event::ApplyFailed {
            errors,
            nothing_written,
            ..
        } => Some((errors.clone(), *nothing_written)),
        _ => None,
    })
    .await?;
    assert!(!nothing_written, "the CRD is written before its resources");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].object, format!("{group}/Widget {ns}/w1"));
    let client = target.client();
    let crd = format!("widgets.{group}");
    let crds = "customresourcedefinitions";
    assert!(
        get_cluster(&client, "apiextensions.k8s.io/v1", crds, &crd)
            .await?
            .is_some()
    );
    assert!(
        get(&client, "v1", "configmaps", &ns, "settings")
            .await?
            .is_none()
    );
    engine.shutdown().await;
    Ok(())
}

/// A revision that adds a version to its CRD and uses it at once: the CRD is long established,
/// but the API server serves the new version only a moment after the CRD's update.
async fn a_new_crd_version_serves_its_resources_in_the_same_revision(
    target: &Target,
) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let ns = target.name("app");
    let group = format!("{}.example.com", target.name("g"));
    let r1 = vec![
        widget_crd(&group, &["v1"]),
        widget(&group, "v1", "w1", json!(1)),
    ];
    engine.apply(revision(&ns, "widgets", "r1", r1))?;
    applied(&mut reports, "widgets", "r1").await?;

    let r2 = vec![
        widget_crd(&group, &["v1", "v2"]),
        widget(&group, "v2", "w1", json!(2)),
    ];
    engine.apply(revision(&ns, "widgets", "r2", r2))?;
    applied(&mut reports, "widgets", "r2").await?;
    let w1 = get(
        &target.client(),
        &format!("{group}/v2"),
        "widgets",
        &ns,
        "w1",
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("widget w1 is gone"))?;
    assert_eq!(w1["spec"]["size"], 2);
    engine.shutdown().await;
    Ok(())
}

async fn foreign_and_protected_objects_survive_a_prune(target: &Target) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let ns = target.name("app");
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    let mut keep = config_map("keep", "1");
    keep["metadata"]["annotations"] = json!({"flotilla.dev/prune": "false"});
    let r1 = vec![namespace.clone(), config_map("ours", "1"), keep];
    engine.apply(revision(&ns, "shop", "r1", r1))?;
    applied(&mut reports, "shop", "r1").await?;
    let client = target.client();
    let config_maps: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::discovery::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
    );
    let theirs: DynamicObject = serde_json::from_value(config_map("theirs", "x"))?;
    config_maps.create(&Default::default(), &theirs).await?;

    engine.apply(revision(&ns, "shop", "r2", vec![namespace]))?;
    let (pruned, kept) = wait_for(&mut reports, "shop", |r| match &r.event {
        Event::Pruned { objects, kept, .. } if r.revision == "r2" => {
            Some((objects.clone(), kept.clone()))
        }
        _ => None,
    })
    .await?;
    assert_eq!(pruned, [format!("ConfigMap {ns}/ours")]);
    let kept: Vec<&str> = kept.iter().map(|m| m.object.as_str()).collect();
    assert_eq!(kept, [format!("ConfigMap {ns}/keep")]);
    applied(&mut reports, "shop", "r2").await?;
    for name in ["theirs", "keep"] {
        assert!(
            get(&client, "v1", "configmaps", &ns, name).await?.is_some(),
            "{name} survives"
        );
    }
    assert!(
        get(&client, "v1", "configmaps", &ns, "ours")
            .await?
            .is_none()
    );
    engine.shutdown().await;
    Ok(())
}

/// A real namespace always holds what Kubernetes puts there (the `default` ServiceAccount, the
/// `kube-root-ca.crt` ConfigMap): those do not keep it, someone else's ConfigMap does.
async fn a_removed_bundle_deletes_its_namespace_only_when_nothing_foreign_is_left(
    target: &Target,
) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let client = target.client();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for (bundle, foreign) in [("empty", false), ("shared", true)] {
        let ns = target.name(bundle);
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        let objects = vec![namespace, config_map("ours", "1")];
        engine.apply(revision(&ns, bundle, "r1", objects))?;
        applied(&mut reports, bundle, "r1").await?;
        if foreign {
            let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
                Api::namespaced(client.clone(), &ns);
            let theirs = serde_json::from_value(config_map("theirs", "x"))?;
            config_maps.create(&Default::default(), &theirs).await?;
        }
        engine.remove(bundle).await?;
        let kept = wait_for(&mut reports, bundle, |r| match &r.event {
            Event::Pruned { kept, .. } => Some(kept.clone()),
            _ => None,
        })
        .await?;
        wait_for(&mut reports, bundle, |r| {
            matches!(r.event, Event::Removed { .. }).then_some(())
        })
        .await?;
        let live = namespaces.get_opt(&ns).await?;
        let deleting = live
            .as_ref()
            .is_none_or(|n| n.metadata.deletion_timestamp.is_some());
        if foreign {
            assert_eq!(kept.len(), 1, "{kept:?}");
            assert_eq!(kept[0].object, format!("Namespace {ns}"));
            assert!(!deleting, "a namespace holding others' objects is kept");
        } else {
            assert!(kept.is_empty(), "{kept:?}");
            assert!(deleting, "the bundle's empty namespace is deleted");
        }
    }
    engine.shutdown().await;
    Ok(())
}

async fn edits_and_deletes_are_corrected(target: &Target) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let ns = target.name("app");
    let objects = vec![
        config_map("a", "1"),
        config_map("b", "1"),
        deployment("web", 2),
    ];
    engine.apply(revision(&ns, "shop", "r1", objects))?;
    applied(&mut reports, "shop", "r1").await?;

    let client = target.client();
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &ns);
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    let someone = PatchParams::default();
    config_maps
        .patch(
            "a",
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
    config_maps.delete("b", &Default::default()).await?;

    let mut corrected = Vec::new();
    while corrected.len() < 3 {
        let objects = wait_for(&mut reports, "shop", |r| match &r.event {
            Event::DriftCorrected { objects } => Some(objects.clone()),
            _ => None,
        })
        .await?;
        corrected.extend(objects);
    }
    corrected.sort();
    assert_eq!(
        corrected,
        [
            format!("ConfigMap {ns}/a"),
            format!("ConfigMap {ns}/b"),
            format!("apps/Deployment {ns}/web"),
        ]
    );
    let a = config_maps.get("a").await?;
    assert_eq!(
        a.data.unwrap_or_default().get("key").map(String::as_str),
        Some("1")
    );
    assert!(config_maps.get_opt("b").await?.is_some(), "b is recreated");
    let web = deployments.get("web").await?;
    assert_eq!(web.spec.and_then(|s| s.replicas), Some(2));
    engine.shutdown().await;
    Ok(())
}

async fn an_available_deployment_is_healthy(target: &Target) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let ns = target.name("app");
    engine.apply(revision(&ns, "web", "r1", vec![deployment("web", 2)]))?;
    applied(&mut reports, "web", "r1").await?;
    let healthy = health_until(&mut reports, "web", |h| h.health == Health::Healthy).await?;
    assert!(healthy.unhealthy.is_empty(), "{healthy:?}");
    let web = get(&target.client(), "apps/v1", "deployments", &ns, "web")
        .await?
        .ok_or_else(|| anyhow::anyhow!("web is gone"))?;
    assert_eq!(web["status"]["availableReplicas"], 2, "{web}");
    engine.shutdown().await;
    Ok(())
}

async fn every_workload_kind_becomes_healthy(target: &Target) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let ns = target.name("app");
    let template = |name: &str| {
        json!({"metadata": {"labels": {"app": name}},
               "spec": {"containers": [{"name": "main", "image": "example/app:1"}]}})
    };
    let selector = |name: &str| json!({"matchLabels": {"app": name}});
    let mut job_template = template("migrate");
    job_template["spec"]["restartPolicy"] = json!("Never");
    let objects = vec![
        deployment("web", 2),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
               "spec": {"replicas": 2, "serviceName": "db", "selector": selector("db"),
                        "template": template("db")}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node"},
               "spec": {"selector": selector("node"), "template": template("node")}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
               "spec": {"replicas": 1, "selector": selector("rs"), "template": template("rs")}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
               "spec": {"template": job_template}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo"},
               "spec": {"containers": [{"name": "main", "image": "example/app:1"}]}}),
    ];
    engine.apply(revision(&ns, "kinds", "r1", objects))?;
    applied(&mut reports, "kinds", "r1").await?;
    let healthy = health_until(&mut reports, "kinds", |h| h.health == Health::Healthy).await?;
    assert!(healthy.unhealthy.is_empty(), "{healthy:?}");
    engine.shutdown().await;
    Ok(())
}

async fn a_stuck_deployment_and_a_failed_job_degrade_the_bundle(target: &Target) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let ns = target.name("app");
    let objects = vec![
        deployment("web", 1),
        stuck_deployment("stuck"),
        failing_job("migrate"),
    ];
    engine.apply(revision(&ns, "broken", "r1", objects))?;
    applied(&mut reports, "broken", "r1").await?;
    let degraded = health_until(&mut reports, "broken", |h| {
        h.unhealthy.len() == 2
            && h.unhealthy
                .iter()
                .all(|(_, o)| o.health == Health::Degraded)
    })
    .await?;
    assert_eq!(degraded.health, Health::Degraded);
    let message = |kind: &str| {
        degraded
            .unhealthy
            .iter()
            .find(|(id, _)| id.kind == kind)
            .map(|(id, h)| (id.name.clone(), h.message.clone()))
            .unwrap_or_default()
    };
    let (name, stuck) = message("Deployment");
    assert_eq!(name, "stuck");
    assert!(stuck.contains("progress deadline"), "{degraded:?}");
    let (name, job) = message("Job");
    assert_eq!(name, "migrate");
    assert!(job.contains("BackoffLimitExceeded"), "{degraded:?}");
    engine.shutdown().await;
    Ok(())
}

/// A Deployment whose Pods never become Ready: kwok's `never-ready` label on a real cluster,
/// the simulator's fail annotation there. It passes its 10 s progress deadline.
fn stuck_deployment(name: &str) -> Value {
    let mut stuck = deployment(name, 1);
    stuck["metadata"]["annotations"] = json!({(flotilla_sim::FAIL_ANNOTATION): "true"});
    stuck["spec"]["progressDeadlineSeconds"] = json!(10);
    stuck["spec"]["template"]["metadata"]["labels"]["flotilla.dev/kwok"] = json!("never-ready");
    stuck
}

/// A Job whose one Pod fails, with no retries.
fn failing_job(name: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "annotations": {(flotilla_sim::FAIL_ANNOTATION): "true"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"flotilla.dev/kwok": "fail"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "example/migrate:1"}]
                }
            }
        }
    })
}

fn widget_crd(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .enumerate()
        .map(|(i, version)| {
            json!({
                "name": version, "served": true, "storage": i == 0,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                }}}
            })
        })
        .collect();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "versions": versions,
        }
    })
}

fn widget(group: &str, version: &str, name: &str, size: Value) -> Value {
    json!({
        "apiVersion": format!("{group}/{version}"), "kind": "Widget",
        "metadata": {"name": name}, "spec": {"size": size}
    })
}
