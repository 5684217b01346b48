//! `flotilla cluster get NAME` and `flotilla bundle get NAME` against a hub and agents applying
//! to simulated clusters, real processes end to end: every object of a cluster's bundles with
//! its own sync state and health, and one bundle across the fleet filtered by stage; an
//! unknown name is an error that says so.

use anyhow::{Context, Result};
use flotilla_testkit::fleet::{Fleet, FleetOptions};
use flotilla_testkit::small_fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_get_and_bundle_get_show_every_object() -> Result<()> {
    let (repo, first) = small_fleet::repository()?;
    let fleet = Fleet::start(&repo, small_fleet::INVENTORY, FleetOptions::default()).await?;
    fleet.wait_rolled_out(&first).await?;

    // Before -o, after it, and YAML: the same cluster.
    let detail = fleet.cli.json(&["cluster", "get", "prod-eu-1"]).await?;
    assert_eq!(detail["name"], "prod-eu-1", "{detail}");
    assert_eq!(detail["stage"], "prod");
    let objects = detail["objects"].as_array().context("objects")?;
    let names: Vec<&str> = objects
        .iter()
        .filter_map(|o| o["object"].as_str())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.contains("ConfigMap") && n.ends_with("app/app")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.contains("Deployment")), "{names:?}");
    for object in objects {
        assert_eq!(object["bundle"], "app", "{object}");
        assert_eq!(object["syncState"], "Synced", "{object}");
        assert_eq!(object["health"], "Healthy", "{object}");
    }
    let table = fleet.cli.text(&["cluster", "get", "prod-eu-1"]).await?;
    assert!(
        table.contains("CLUSTER  prod-eu-1") && table.contains("STAGE    prod"),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("app")
            && l.contains("ConfigMap")
            && l.contains("Synced")
            && l.contains("Healthy")),
        "{table}"
    );
    let yaml = fleet
        .cli
        .text(&["-o", "yaml", "cluster", "get", "dev-1"])
        .await?;
    assert!(
        yaml.contains("name: dev-1") && yaml.contains("syncState: Synced"),
        "{yaml}"
    );

    let bundle = fleet.cli.json(&["bundle", "get", "app"]).await?;
    assert_eq!(bundle["matched"], 3, "{bundle}");
    let prod = fleet
        .cli
        .json(&["bundle", "get", "app", "--stage", "prod"])
        .await?;
    let clusters: Vec<&str> = prod["clusters"]
        .as_array()
        .context("clusters")?
        .iter()
        .filter_map(|c| c["cluster"].as_str())
        .collect();
    assert_eq!(clusters, ["prod-eu-1", "prod-us-1"]);
    assert_eq!(
        prod["clusters"][0]["objects"].as_array().map(Vec::len),
        Some(3)
    );
    let healthy = fleet
        .cli
        .json(&["bundle", "get", "app", "--problems"])
        .await?;
    assert_eq!(
        healthy["matched"], 0,
        "every cluster is Synced and Healthy: {healthy}"
    );
    let table = fleet.cli.text(&["bundle", "get", "app"]).await?;
    assert!(table.starts_with("BUNDLE   app: 3 clusters\n"), "{table}");

    for (args, expected) in [
        (
            &["cluster", "get", "nowhere"][..],
            "cluster 'nowhere' is not registered",
        ),
        (
            &["bundle", "get", "nothing"],
            "no cluster you may view holds bundle 'nothing'",
        ),
    ] {
        let output = fleet.cli.run(args).await?;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    Ok(())
}
