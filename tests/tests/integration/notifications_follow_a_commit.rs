//! What a hub following a repository tells its receivers as commits go through a simulated
//! fleet (dev, then prod), real processes end to end:
//! - a broken commit: `renderFailed` with the file, and on GitHub an `error` status
//!   (`flotilla/render`) on that commit;
//! - the fixed commit: per stage `rolloutStarted` then `rolloutCompleted`, and on GitHub a
//!   `pending` then a `success` status per stage (`flotilla/dev`, `flotilla/prod`), posted with
//!   the token to the repository's statuses;
//! - a prod agent killed and started again: `clusterOffline` then `clusterBack`, with the stage
//!   the cluster is in;
//! - a Slack receiver filtered to prod gets prod's notices and nothing of dev's, nor the render
//!   (which belongs to no stage).

use std::time::Duration;

use anyhow::Result;
use flotilla_testkit::fleet::{Fleet, FleetOptions};
use flotilla_testkit::receiver::{Received, ReceiverServer};
use flotilla_testkit::small_fleet;

const PATIENCE: Duration = Duration::from_secs(90);

/// `(type, stage)` of the webhook notices about `commit`, in order.
fn about_commit(received: &[Received], commit: &str) -> Vec<(String, String)> {
    received
        .iter()
        .map(Received::json)
        .filter(|b| b["commit"] == commit)
        .map(|b| {
            (
                b["type"].as_str().unwrap_or_default().to_owned(),
                b["stage"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// `(context, state)` of the GitHub statuses posted for `commit`, in order.
fn statuses(received: &[Received], commit: &str) -> Vec<(String, String)> {
    received
        .iter()
        .filter(|r| r.path == format!("/repos/acme/fleet/statuses/{commit}"))
        .map(|r| {
            let body = r.json();
            (
                body["context"].as_str().unwrap_or_default().to_owned(),
                body["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn has(list: &[(String, String)], first: &str, second: &str) -> bool {
    list.iter().any(|(a, b)| a == first && b == second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_hear_of_renders_rollouts_and_clusters() -> Result<()> {
    let webhook = ReceiverServer::start(false).await?;
    let chat = ReceiverServer::start(false).await?;
    let github = ReceiverServer::start(false).await?;
    let dir = tempfile::tempdir()?;
    let token = dir.path().join("token");
    std::fs::write(&token, "ghp_test_token\n")?;
    let config = format!(
        "notifications:\n\
         - {{name: all, type: webhook, url: '{}', dashboardUrl: 'https://flotilla.example'}}\n\
         - {{name: prod-chat, type: slack, url: '{}', stages: [prod]}}\n\
         - {{name: github, type: github, url: '{}', repository: acme/fleet, tokenFile: '{}'}}\n",
        webhook.url,
        chat.url,
        github.url.trim_end_matches("/hook"),
        token.display(),
    );
    let (repo, good) = small_fleet::repository()?;
    let options = FleetOptions {
        hub_config: Some(config),
        ..FleetOptions::default()
    };
    let mut fleet = Fleet::start(&repo, small_fleet::INVENTORY, options).await?;
    fleet.wait_rolled_out(&good).await?;

    // A broken commit.
    repo.write(
        "bundles/app/config.yaml",
        &small_fleet::CONFIG.replace("data:\n", "data: [unclosed\n"),
    )?;
    let broken = repo.commit("broken")?;
    fleet.wait_revision(&broken, "failed").await?;
    let received = webhook
        .wait_for(PATIENCE, "renderFailed", |r| {
            !about_commit(r, &broken).is_empty()
        })
        .await?;
    let render = received
        .iter()
        .map(Received::json)
        .find(|b| b["commit"] == broken.as_str())
        .unwrap_or_default();
    assert_eq!(render["type"], "renderFailed", "{render}");
    assert!(
        render["message"]
            .as_str()
            .is_some_and(|m| m.contains("bundles/app/config.yaml")),
        "the file is named: {render}"
    );
    assert_eq!(
        render["url"],
        format!("https://flotilla.example/#/commit/{broken}")
    );
    let posted = github
        .wait_for(PATIENCE, "the render's status", |r| {
            !statuses(r, &broken).is_empty()
        })
        .await?;
    assert_eq!(
        statuses(&posted, &broken),
        [("flotilla/render".to_owned(), "error".to_owned())]
    );
    let status = posted
        .iter()
        .find(|r| r.path.ends_with(&broken))
        .expect("found above");
    assert_eq!(
        status.header("authorization"),
        Some("Bearer ghp_test_token")
    );
    assert_eq!(status.header("accept"), Some("application/vnd.github+json"));

    // The fix goes through dev and prod.
    repo.write("bundles/app/config.yaml", small_fleet::CONFIG)?;
    repo.edit("flotilla.yaml", "greeting: hello", "greeting: fixed")?;
    let fixed = repo.commit("fixed")?;
    fleet.wait_rolled_out(&fixed).await?;
    let received = webhook
        .wait_for(PATIENCE, "both stages completed", |r| {
            let seen = about_commit(r, &fixed);
            has(&seen, "rolloutCompleted", "dev") && has(&seen, "rolloutCompleted", "prod")
        })
        .await?;
    let seen = about_commit(&received, &fixed);
    for stage in ["dev", "prod"] {
        let kinds: Vec<&str> = seen
            .iter()
            .filter(|(_, s)| s == stage)
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            kinds,
            ["rolloutStarted", "rolloutCompleted"],
            "{stage}: {seen:?}"
        );
    }
    let posted = github
        .wait_for(PATIENCE, "both stages' success", |r| {
            let seen = statuses(r, &fixed);
            has(&seen, "flotilla/dev", "success") && has(&seen, "flotilla/prod", "success")
        })
        .await?;
    for stage in ["dev", "prod"] {
        let states: Vec<String> = statuses(&posted, &fixed)
            .into_iter()
            .filter(|(c, _)| *c == format!("flotilla/{stage}"))
            .map(|(_, s)| s)
            .collect();
        assert_eq!(states, ["pending", "success"], "{stage}");
    }

    // A prod agent goes away and comes back.
    fleet.agents[1].process().kill();
    let cluster = fleet.agents[1].cluster().to_owned();
    assert_eq!(cluster, "prod-eu-1");
    let about_cluster = |r: &[Received], kind: &str| {
        r.iter()
            .map(Received::json)
            .any(|b| b["type"] == kind && b["cluster"] == cluster.as_str() && b["stage"] == "prod")
    };
    webhook
        .wait_for(PATIENCE, "clusterOffline", |r| {
            about_cluster(r, "clusterOffline")
        })
        .await?;
    let hub = &fleet.hub;
    fleet.agents[1].restart(hub)?;
    webhook
        .wait_for(PATIENCE, "clusterBack", |r| about_cluster(r, "clusterBack"))
        .await?;

    // The prod chat: prod's notices only.
    let messages = chat
        .wait_for(PATIENCE, "prod's notices on the chat", |r| {
            let texts: Vec<String> = r.iter().map(|r| r.json()["text"].to_string()).collect();
            texts.iter().any(|t| t.contains("*cluster back*"))
        })
        .await?;
    let texts: Vec<String> = messages
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        texts.iter().all(|t| t.contains("stage `prod`")),
        "only prod: {texts:#?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("*rollout completed*")
            && t.contains(&format!("commit `{}`", &fixed[..12]))),
        "{texts:#?}"
    );
    assert!(
        texts.iter().all(|t| !t.contains(&broken[..12])),
        "a render belongs to no stage: {texts:#?}"
    );
    // Every receiver got each notice once: no delivery id twice.
    for (name, receiver) in [("all", &webhook), ("prod-chat", &chat), ("github", &github)] {
        let mut ids: Vec<String> = receiver
            .received()
            .iter()
            .map(|r| r.delivery().to_owned())
            .collect();
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "{name}: a notice sent twice");
    }
    Ok(())
}
