//! A bundle removed from the repository is pruned from every cluster — its objects and the
//! namespace it created — while the other bundle, whose render did not change, is not touched.
//! In prod, where it leaves both clusters, the deletion guard holds the revision until
//! `flotilla approve prod`; dev, one cluster losing half its objects, takes it by itself. Real
//! processes end to end.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use flotilla_testkit::fleet::{Fleet, FleetOptions};
use flotilla_testkit::small_fleet;
use flotilla_testkit::wait::{self, PATIENCE, Probe};

const EXTRA_BUNDLE: &str = concat!(
    "  - name: extra\n",
    "    path: bundles/extra\n",
    "    namespace: extra\n",
);

const EXTRA_OBJECTS: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: extra
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: extra
data:
  cluster: ${cluster.name}
---
apiVersion: v1
kind: Service
metadata:
  name: extra
spec:
  ports:
    - port: 80
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_removed_from_the_repository_is_pruned_from_every_cluster() -> Result<()> {
    let (repo, _) = small_fleet::repository()?;
    repo.write(
        "flotilla.yaml",
        &format!("{}{EXTRA_BUNDLE}", small_fleet::SPEC),
    )?;
    repo.write("bundles/extra/objects.yaml", EXTRA_OBJECTS)?;
    let with_extra = repo.commit("extra bundle")?;
    let fleet = Fleet::start(&repo, small_fleet::INVENTORY, FleetOptions::default()).await?;
    fleet.wait_rolled_out(&with_extra).await?;

    let mut app_versions = BTreeMap::new();
    for name in fleet.names() {
        for (kind, object) in [("ConfigMap", "extra"), ("Service", "extra")] {
            let found = fleet
                .sim()
                .get(&name, "v1", kind, Some("extra"), object)
                .await?;
            assert!(found.is_some(), "{name} has no {kind} extra/{object}");
        }
        let app = fleet
            .sim()
            .get(&name, "v1", "ConfigMap", Some("app"), "app")
            .await?
            .with_context(|| format!("{name} has no app ConfigMap"))?;
        app_versions.insert(name.clone(), app["metadata"]["resourceVersion"].clone());
    }

    repo.write("flotilla.yaml", small_fleet::SPEC)?;
    repo.remove("bundles/extra")?;
    let without = repo.commit("extra bundle removed")?;
    let held = fleet.wait_held("prod", &without).await?;
    let why = held["deletionHold"].as_str().unwrap_or_default();
    assert!(
        why.contains("would remove bundle `extra` from 2 of 2 clusters"),
        "{why}"
    );
    fleet.cli.text(&["approve", "prod"]).await?;
    // Rolled out: every desired bundle at the new commit, and `extra` neither desired nor
    // applied anywhere (the status may still list it from the agent's removal report).
    let status = fleet.wait_rolled_out(&without).await?;
    for cluster in status["clusters"].as_array().context("no clusters")? {
        for bundle in cluster["bundles"].as_array().context("no bundles")? {
            if bundle["name"] == "extra" {
                assert!(bundle["desiredRevision"].is_null(), "{bundle}");
                assert!(bundle["appliedHash"].is_null(), "{bundle}");
            } else {
                assert_eq!(bundle["name"], "app", "{bundle}");
            }
        }
    }

    for name in fleet.names() {
        wait::until(&format!("extra pruned from {name}"), PATIENCE, || async {
            let mut left = Vec::new();
            for (kind, namespace, object) in [
                ("ConfigMap", Some("extra"), "extra"),
                ("Service", Some("extra"), "extra"),
                ("Namespace", None, "extra"),
            ] {
                if fleet
                    .sim()
                    .get(&name, "v1", kind, namespace, object)
                    .await?
                    .is_some()
                {
                    left.push(kind);
                }
            }
            Ok(if left.is_empty() {
                Probe::Done(())
            } else {
                Probe::NotYet(format!("still there: {left:?}"))
            })
        })
        .await?;
        let app = fleet
            .sim()
            .get(&name, "v1", "ConfigMap", Some("app"), "app")
            .await?
            .with_context(|| format!("{name} lost the app ConfigMap"))?;
        assert_eq!(
            app["metadata"]["resourceVersion"], app_versions[&name],
            "{name}: the app bundle was rewritten though its render did not change"
        );
    }
    Ok(())
}
