//! A push webhook brings a commit to every cluster without waiting for the poll: the hub
//! process polls once an hour, a new commit stays unseen until a signed GitHub-style push
//! webhook arrives at its HTTP listener, then reaches every agent and cluster.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_testkit::fleet::{Fleet, FleetOptions};
use flotilla_testkit::small_fleet;

const SECRET: &str = "e2e-webhook-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_brings_a_commit_to_every_cluster_without_the_poll() -> Result<()> {
    let (repo, first) = small_fleet::repository()?;
    let options = FleetOptions {
        poll_interval: "1h".into(),
        webhook_secret: Some(SECRET.into()),
        ..FleetOptions::default()
    };
    // The hub fetches once when its source controller starts: that brings the first commit.
    let fleet = Fleet::start(&repo, small_fleet::INVENTORY, options).await?;
    fleet.wait_rolled_out(&first).await?;

    repo.edit("flotilla.yaml", "greeting: hello", "greeting: pushed")?;
    let second = repo.commit("greeting pushed")?;
    // Without a webhook, the next fetch is an hour away.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let revisions = fleet.cli.revisions().await?;
    let listed = revisions["revisions"]
        .as_array()
        .context("no revisions list")?
        .iter()
        .any(|r| r["commit"] == second.as_str());
    assert!(!listed, "the hub fetched without a webhook: {revisions}");

    let body = br#"{"ref":"refs/heads/main","after":"0000000000000000000000000000000000000000"}"#;
    let ca_file = &fleet.hub.credentials().context("a hub with TLS")?.ca_file;
    let answer = flotilla_testkit::http::request_tls(
        ca_file,
        "POST",
        &format!("https://{}/webhook", fleet.hub.http()),
        &[
            ("content-type", "application/json"),
            ("x-github-event", "push"),
            (
                "x-hub-signature-256",
                &flotilla_testkit::http::github_signature(SECRET, body)?,
            ),
        ],
        body.to_vec(),
    )
    .await?;
    if answer.status != 202 {
        bail!("the webhook was refused: {} {}", answer.status, answer.body);
    }

    fleet.wait_rolled_out(&second).await?;
    for name in fleet.names() {
        let config = fleet
            .sim()
            .get(&name, "v1", "ConfigMap", Some("app"), "app")
            .await?
            .with_context(|| format!("no ConfigMap in {name}"))?;
        assert_eq!(config["data"]["greeting"], "pushed", "{name}");
    }
    Ok(())
}
