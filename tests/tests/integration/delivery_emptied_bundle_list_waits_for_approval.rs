//! A commit replacing `bundles:` with `bundles: []` is held by the deletion guard in every
//! stage, though both stages approve automatically: `flotilla status -o json` and `flotilla
//! rollout status` say why, no cluster loses an object, and only `flotilla approve dev` lets dev
//! prune — prod keeps everything until approved on its own. Real processes end to end.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use flotilla_testkit::fleet::{Fleet, FleetOptions};
use flotilla_testkit::small_fleet;
use flotilla_testkit::wait::{self, PATIENCE, Probe};

/// The small fleet's objects, as (apiVersion, kind, namespace, name).
const OBJECTS: [(&str, &str, Option<&str>, &str); 3] = [
    ("v1", "Namespace", None, "app"),
    ("v1", "ConfigMap", Some("app"), "app"),
    ("apps/v1", "Deployment", Some("app"), "app"),
];

/// Which of the small fleet's objects `cluster` still holds.
async fn objects_on(fleet: &Fleet, cluster: &str) -> Result<Vec<&'static str>> {
    let mut held = Vec::new();
    for (api_version, kind, namespace, name) in OBJECTS {
        if fleet
            .sim()
            .get(cluster, api_version, kind, namespace, name)
            .await?
            .is_some()
        {
            held.push(kind);
        }
    }
    Ok(held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_bundle_list_waits_for_approval_and_prunes_only_once_approved() -> Result<()> {
    let (repo, first) = small_fleet::repository()?;
    let fleet = Fleet::start(&repo, small_fleet::INVENTORY, FleetOptions::default()).await?;
    fleet.wait_rolled_out(&first).await?;
    for name in fleet.names() {
        ensure!(objects_on(&fleet, &name).await?.len() == 3, "{name}");
    }

    let bundles = small_fleet::SPEC
        .find("bundles:")
        .context("the small fleet declares bundles")?;
    repo.write(
        "flotilla.yaml",
        &format!("{}bundles: []\n", &small_fleet::SPEC[..bundles]),
    )?;
    let emptied = repo.commit("bundles: []")?;
    fleet.wait_revision(&emptied, "rendered").await?;

    let held = fleet.wait_held("dev", &emptied).await?;
    let why = held["deletionHold"].as_str().unwrap_or_default();
    assert!(
        why.contains("would leave the stage's only cluster with no bundle at all"),
        "{why}"
    );
    assert!(
        why.contains("would prune more than 50% of the objects of 1 cluster: dev-1 3 of 3"),
        "{why}"
    );
    let prod = fleet.wait_held("prod", &emptied).await?;
    let why = prod["deletionHold"].as_str().unwrap_or_default();
    assert!(
        why.contains("would remove bundle `app` from 2 of 2 clusters (more than 1)"),
        "{why}"
    );

    let dev = fleet.cli.json(&["rollout", "status", "dev"]).await?;
    assert_eq!(dev["status"], "awaitingApproval", "{dev}");
    let id = dev["id"].as_u64().context("a rollout id")?.to_string();
    let reason = dev["statusReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("held by the deletion guard")
            && reason.contains(&format!("`flotilla approve dev --rollout {id}`")),
        "{reason}"
    );
    let hold = &dev["deletionHold"];
    assert_eq!(hold["noBundles"], true, "{hold}");
    assert_eq!(hold["pruning"][0]["cluster"], "dev-1", "{hold}");
    assert_eq!(
        (&hold["pruning"][0]["pruned"], &hold["pruning"][0]["of"]),
        (&3.into(), &3.into()),
        "{hold}"
    );
    let table = fleet.cli.text(&["rollout", "status", "dev"]).await?;
    assert!(
        table.contains(&format!(
            "DELETION GUARD holds it until `flotilla approve dev --rollout {id}`"
        )),
        "{table}"
    );

    // Held means untouched: give the agents time to act on anything they were given.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = fleet.cli.status().await?;
    for cluster in status["clusters"].as_array().context("no clusters")? {
        assert_eq!(cluster["assignedRevision"], first.as_str(), "{cluster}");
    }
    for name in fleet.names() {
        assert_eq!(
            objects_on(&fleet, &name).await?.len(),
            3,
            "{name} lost objects"
        );
    }

    // An approval names what was reviewed: prod's rollout is not dev's.
    let wrong = fleet
        .cli
        .run(&["approve", "prod", "--rollout", &id])
        .await?;
    let refusal = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success() && refusal.contains("the stage's awaiting approval rollout is"),
        "{refusal}"
    );
    let approved = fleet
        .cli
        .text(&[
            "approve",
            "dev",
            "--rollout",
            &id,
            "--reason",
            "the bundles moved to another repo",
        ])
        .await?;
    assert!(
        approved.contains("releasing the deletion guard's hold"),
        "{approved}"
    );
    wait::until("dev-1 pruned", PATIENCE, || async {
        let left = objects_on(&fleet, "dev-1").await?;
        Ok(if left.is_empty() {
            Probe::Done(())
        } else {
            Probe::NotYet(format!("still there: {left:?}"))
        })
    })
    .await?;
    for name in ["prod-eu-1", "prod-us-1"] {
        assert_eq!(
            objects_on(&fleet, name).await?.len(),
            3,
            "{name}: prod waits for its own approval"
        );
    }
    let prod = fleet.cli.json(&["rollout", "status", "prod"]).await?;
    assert_eq!(prod["status"], "awaitingApproval", "{prod}");
    let audit = fleet.cli.text(&["audit"]).await?;
    assert!(audit.contains("rollout.hold"), "{audit}");
    Ok(())
}
