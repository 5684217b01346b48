//! The dashboard's live stream across a hub failover: a user signed in through the address a
//! load balancer gives three TLS hub nodes (here a forwarder on loopback) follows the fleet from
//! the leader; the leader is killed (SIGKILL) and the balancer sends new connections to a
//! survivor. The page says it is reconnecting, reconnects by itself to the survivor with the
//! same session (nothing of a session is stored on a node), starts again from a snapshot, and
//! shows what the new leader records — with no reload and no new sign-in. The survivor's
//! `/metrics` counts the leader change.

use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_hub::controller::first_admin::ADMIN_TOKEN_FILE;
use flotilla_hub::state::{Command, Timestamp};
use flotilla_testkit::binaries;
use flotilla_testkit::browser::Browser;
use flotilla_testkit::forward::Forwarder;
use flotilla_testkit::hub_group::HubGroup;

const PAGE: Duration = Duration::from_secs(30);

fn register(name: &str) -> Command {
    Command::RegisterCluster {
        name: name.to_owned(),
        labels: [("env".to_owned(), "dev".to_owned())].into(),
        at: Timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        ),
    }
}

/// The first admin token, from whichever node's data directory its creator wrote it to.
async fn admin_token(group: &HubGroup) -> Result<String> {
    let deadline = tokio::time::Instant::now() + PAGE;
    loop {
        for id in group.running() {
            if let Ok(token) = std::fs::read_to_string(group.data_dir(id).join(ADMIN_TOKEN_FILE)) {
                return Ok(token.trim().to_owned());
            }
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no node wrote the first admin token"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_the_fleet_across_a_leader_kill() -> Result<()> {
    let test = "the_page_follows_the_fleet_across_a_leader_kill";
    let Some(browser) =
        Browser::start_with_or_skip(test, 1280, 900, &["--ignore-certificate-errors"]).await?
    else {
        return Ok(());
    };
    let mut group = HubGroup::start(&binaries::HUB.path()?, 3, false)?;
    let leader = group.leader(PAGE).await?;
    let token = admin_token(&group).await?;
    let balancer = Forwarder::start(group.http(leader)).await?;
    browser
        .sign_in(&format!("https://{}/", balancer.address), &token, PAGE)
        .await?;
    browser
        .wait_for_text("#node", PAGE, |t| {
            t.starts_with(&format!("node {leader} ")) && t.ends_with(" · live")
        })
        .await?;
    group.propose(&register("before-failover")).await?;
    browser
        .wait_for_text("#stages", PAGE, |t| t.contains("before-failover"))
        .await?;

    // The leader dies; the balancer sends what comes next to a survivor.
    group.kill(leader)?;
    let survivor = *group.running().first().context("a survivor")?;
    balancer.point_at(group.http(survivor));
    // The stream broke: the page says so before it is back.
    browser
        .wait_for_text("#node", PAGE, |t| t.ends_with(" · reconnecting…"))
        .await?;
    let text = browser
        .wait_for_text("#node", PAGE, |t| {
            t.starts_with(&format!("node {survivor} ")) && t.ends_with(" · live")
        })
        .await?;
    let new_leader = group.leader(PAGE).await?;
    assert_ne!(new_leader, leader);
    // What the new leader records reaches the page through the new stream.
    group.propose(&register("after-failover")).await?;
    let clusters = browser
        .wait_for_text("#stages", PAGE, |t| t.contains("after-failover"))
        .await?;
    assert!(clusters.contains("before-failover"), "{clusters}");
    assert!(
        browser
            .client
            .find(flotilla_testkit::browser::Locator::Css("#signin[hidden]"))
            .await
            .is_ok(),
        "still signed in, with the same session, after the failover ({text})"
    );
    // The survivor's metrics, through the same address: it saw the leader change; if it now
    // leads, it says how far behind its one living follower is (the dead one, ever further).
    let metrics: serde_json::Value = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/metrics').then(r => r.text()).then(done);",
            vec![],
        )
        .await?;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    let value = |name: &str| -> Option<f64> {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    assert!(
        value("flotilla_raft_leader_changes_total").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    let leads = value("flotilla_raft_is_leader") == Some(1.0);
    assert_eq!(leads, survivor == new_leader, "{metrics}");
    if leads {
        assert_eq!(
            metrics
                .lines()
                .filter(|l| l.starts_with("flotilla_raft_follower_lag_entries{"))
                .count(),
            2,
            "{metrics}"
        );
    }
    assert!(
        metrics.contains("flotilla_cluster_info{cluster=\"after-failover\""),
        "{metrics}"
    );
    assert!(
        value("process_resident_memory_bytes").is_some_and(|b| b > 0.0),
        "{metrics}"
    );
    // The only errors the page logged are the stream's broken connection to the dead node.
    let errors = browser.console_errors().await?;
    assert!(
        errors.iter().all(|e| e.contains("api/watch")),
        "the page logged errors: {errors:#?}"
    );
    browser.close().await?;
    Ok(())
}
