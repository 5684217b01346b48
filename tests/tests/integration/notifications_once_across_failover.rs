//! Notifications from a three-node TLS hub group to receivers in the test, across a leader
//! killed (SIGKILL) in the middle of a delivery:
//! - an HTTPS webhook receiver (its own CA, given as `caFile`) gets every notice as JSON,
//!   HMAC-signed, in order; it holds the second notice's request unanswered, the leader dies,
//!   and the new leader sends that notice again with the same delivery id — and nothing the old
//!   leader had delivered: each notice is answered exactly once, none is lost;
//! - a Slack-style receiver filtered to `clusterUnreachable` answers 503 twice: the notice is
//!   tried again with backoff and delivered on the third try, and no other kind reaches it;
//! - the survivor's `/metrics` counts what it delivered.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_hub::state::fleet::ApiReachability;
use flotilla_hub::state::{Command, Timestamp};
use flotilla_testkit::binaries;
use flotilla_testkit::hub_group::HubGroup;
use flotilla_testkit::receiver::{Answer, Received, ReceiverServer};

const PATIENCE: Duration = Duration::from_secs(60);

fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

fn api(reachable: bool) -> Command {
    Command::SetClusterApi {
        cluster: "east".into(),
        api: ApiReachability {
            reachable,
            since: now(),
            error: if reachable {
                String::new()
            } else {
                "dial tcp 10.0.0.1:6443: connect: connection refused".into()
            },
        },
    }
}

/// A delivery id (`GROUP-EPOCH-SEQ`) without its epoch: `flotilla-2`.
fn short_id(received: &Received) -> String {
    let id = received.delivery();
    let parts: Vec<&str> = id.rsplitn(3, '-').collect();
    match parts.as_slice() {
        [seq, epoch, group] if epoch.parse::<u64>().is_ok() => format!("{group}-{seq}"),
        _ => format!("malformed id `{id}`"),
    }
}

/// Requests answered with a 2xx, by delivery id.
fn answered(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
        .map(short_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_notice_is_delivered_once_across_a_leader_kill() -> Result<()> {
    // The webhook holds the first request of the second notice: the leader sending it dies.
    let webhook = ReceiverServer::with_policy(
        true,
        Arc::new(|received: &Received, before: usize| {
            if short_id(received) == "flotilla-2" && before == 0 {
                Answer::Hold
            } else {
                Answer::Status(200)
            }
        }),
    )
    .await?;
    let slack = ReceiverServer::with_policy(
        false,
        Arc::new(|_: &Received, before: usize| {
            if before < 2 {
                Answer::Status(503)
            } else {
                Answer::Status(200)
            }
        }),
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let (secret, ca) = (dir.path().join("secret"), dir.path().join("ca.pem"));
    std::fs::write(&secret, "notify-key\n")?;
    std::fs::write(&ca, webhook.ca_pem.as_deref().context("an HTTPS receiver")?)?;
    let config = format!(
        "notifications:\n\
         - {{name: ops, type: webhook, url: '{}', caFile: '{}', secretFile: '{}', maxAttempts: 20}}\n\
         - {{name: chat, type: slack, url: '{}', events: [clusterUnreachable], maxAttempts: 5}}\n",
        webhook.url,
        ca.display(),
        secret.display(),
        slack.url,
    );
    let mut group = HubGroup::start_with_config(&binaries::HUB.path()?, 3, false, Some(&config))?;
    let leader = group.leader(PATIENCE).await?;
    // Both receivers start after the notices recorded before they were first seen: wait until
    // the leader has recorded where they start.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let done = group.state(leader).await?.notices.done;
        if done.contains_key("ops") && done.contains_key("chat") {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "receivers never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    group
        .propose(&Command::RegisterCluster {
            name: "east".into(),
            labels: Default::default(),
            at: now(),
        })
        .await?;

    // Notice 1: unreachable. Both receivers take it; the chat one only on its third try.
    group.propose(&api(false)).await?;
    let first = webhook
        .wait_for(PATIENCE, "notice 1", |r| answered(r) == ["flotilla-1"])
        .await?;
    let body = first[0].json();
    assert_eq!(body["type"], "clusterUnreachable", "{body}");
    assert_eq!(body["cluster"], "east");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("connection refused")),
        "{body}"
    );
    assert!(first[0].signed_with(b"notify-key"), "signed with the key");
    assert!(!first[0].signed_with(b"another-key"));
    let chat = slack
        .wait_for(PATIENCE, "notice 1 after two 503s", |r| {
            r.iter().any(|r| r.answered == Some(200))
        })
        .await?;
    let statuses: Vec<Option<u16>> = chat.iter().map(|r| r.answered).collect();
    assert_eq!(statuses, [Some(503), Some(503), Some(200)]);
    assert!(chat.iter().all(|r| short_id(r) == "flotilla-1"));
    let text = chat[2].json()["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        text.contains("*cluster API unreachable* (cluster `east`)"),
        "{text}"
    );

    // Notice 2: back. The webhook holds its request; the leader dies with it in flight.
    group.propose(&api(true)).await?;
    webhook
        .wait_for(PATIENCE, "notice 2 held", |r| {
            r.iter().any(|r| short_id(r) == "flotilla-2")
        })
        .await?;
    group.kill(leader)?;
    let new_leader = group.leader(PATIENCE).await?;
    assert_ne!(new_leader, leader);
    webhook
        .wait_for(PATIENCE, "notice 2 from the new leader", |r| {
            answered(r) == ["flotilla-1", "flotilla-2"]
        })
        .await?;

    // Notice 3, from the new leader.
    group.propose(&api(false)).await?;
    let received = webhook
        .wait_for(PATIENCE, "notice 3", |r| {
            answered(r) == ["flotilla-1", "flotilla-2", "flotilla-3"]
        })
        .await?;
    // Each notice answered once; the only repeat is the one in flight at the kill.
    let ids: Vec<String> = received.iter().map(short_id).collect();
    let epochs: std::collections::BTreeSet<&str> = received
        .iter()
        .filter_map(|r| r.delivery().split('-').nth(1))
        .collect();
    assert_eq!(epochs.len(), 1, "one group, one epoch: {epochs:?}");
    assert_eq!(
        ids,
        ["flotilla-1", "flotilla-2", "flotilla-2", "flotilla-3"],
        "no notice the old leader delivered was sent again"
    );
    assert!(received.iter().all(|r| r.signed_with(b"notify-key")));
    let kinds: Vec<String> = received
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "clusterUnreachable",
            "clusterBack",
            "clusterBack",
            "clusterUnreachable"
        ]
    );
    // The chat receiver takes only unreachable notices: 1, then 3 (on its first try now).
    let chat = slack
        .wait_for(PATIENCE, "notice 3 on chat", |r| {
            r.iter().any(|r| short_id(r) == "flotilla-3")
        })
        .await?;
    let ids: Vec<String> = chat.iter().map(short_id).collect();
    assert_eq!(
        ids,
        ["flotilla-1", "flotilla-1", "flotilla-1", "flotilla-3"]
    );

    // The new leader's metrics count what it delivered; the state records both receivers done.
    // (The record follows the answer: wait for it.)
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while group.state(new_leader).await?.notices.done.get("ops") != Some(&3) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "notice 3 never recorded done for ops"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = metrics(&group, new_leader).await?;
    assert!(
        metrics.contains("flotilla_notifications_total{receiver=\"ops\",result=\"delivered\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flotilla_notifications_pending{receiver=\"ops\"} 0"),
        "{metrics}"
    );
    drop(dir);
    Ok(())
}

/// `/metrics` of node `id` (HTTPS with the group's CA).
async fn metrics(group: &HubGroup, id: u64) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, group.ca_pem().context("a TLS group")?)?;
    let url = format!("https://{}/metrics", group.http(id));
    let answer = flotilla_testkit::http::request_tls(&ca, "GET", &url, &[], Vec::new()).await?;
    anyhow::ensure!(answer.status == 200, "{url}: {}", answer.status);
    Ok(answer.body)
}
