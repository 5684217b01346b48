//! A push webhook makes the leader fetch at once, without waiting for the poll; a webhook with a
//! bad signature is refused with 401 and fetches nothing; pushes to other branches are ignored.

use crate::support::fleet as support;

use std::time::Duration;

use anyhow::Result;
use flotilla_hub::http::webhook::sign;
use support::{FLEET_SPEC, TestHub, http, rendered};

const SECRET: &str = "s3cret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_webhook_fetches_without_waiting_for_the_poll() -> Result<()> {
    support::init_tracing();
    let (repo, first) = support::with_fleet()?;
    let hub = TestHub::start(&repo.url(), |config| {
        config.webhook_secret = Some(SECRET.into());
        if let Some(source) = &mut config.source {
            source.poll_interval = Duration::from_secs(3600);
        }
    })
    .await?;
    // A new leader fetches once when its controllers start; after that only webhooks will.
    hub.wait_for("the first commit", Duration::from_secs(15), |s| {
        rendered(s, &first)
    })
    .await?;
    repo.write("flotilla.yaml", &FLEET_SPEC.replace("hello", "pushed"))?;
    let pushed = repo.commit("pushed")?;
    let address = hub.hub.http_address();
    let body = br#"{"ref":"refs/heads/main","after":"ignored"}"#;

    let (status, answer) = http(
        address,
        "POST",
        "/webhook",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sign("wrong", body)),
        ],
        body,
    )
    .await?;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = http(
        address,
        "POST",
        "/webhook",
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "nope")],
        body,
    )
    .await?;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = http(
        address,
        "POST",
        "/webhook",
        &[
            ("X-GitHub-Event", "push"),
            (
                "X-Hub-Signature-256",
                &sign(SECRET, br#"{"ref":"refs/heads/other"}"#),
            ),
        ],
        br#"{"ref":"refs/heads/other"}"#,
    )
    .await?;
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains("ignored"), "{answer}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let state = hub.hub.node().state();
        assert_eq!(
            state.sources["origin"].head.as_deref(),
            Some(first.as_str()),
            "refused or ignored webhooks fetched"
        );
        assert_eq!(state.sources["origin"].fetch_requests, 0);
    }

    let (status, answer) = http(
        address,
        "POST",
        "/webhook",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sign(SECRET, body)),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await?;
    assert_eq!(status, 202, "{answer}");
    hub.wait_for("the pushed commit", Duration::from_secs(10), |s| {
        rendered(s, &pushed)
    })
    .await?;

    // GitLab's token and a generic signed POST trigger fetches too.
    repo.write("flotilla.yaml", &FLEET_SPEC.replace("hello", "gitlab"))?;
    let from_gitlab = repo.commit("gitlab")?;
    let (status, answer) = http(
        address,
        "POST",
        "/webhook",
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", SECRET)],
        body,
    )
    .await?;
    assert_eq!(status, 202, "{answer}");
    hub.wait_for(
        "the commit announced by GitLab",
        Duration::from_secs(10),
        |s| rendered(s, &from_gitlab),
    )
    .await?;
    repo.write("flotilla.yaml", &FLEET_SPEC.replace("hello", "generic"))?;
    let generic = repo.commit("generic")?;
    let (status, answer) = http(
        address,
        "POST",
        "/webhook",
        &[("X-Flotilla-Signature", &sign(SECRET, b""))],
        b"",
    )
    .await?;
    assert_eq!(status, 202, "{answer}");
    hub.wait_for(
        "the commit announced generically",
        Duration::from_secs(10),
        |s| rendered(s, &generic),
    )
    .await?;
    assert_eq!(hub.hub.node().state().sources["origin"].fetch_requests, 3);
    hub.hub.shutdown().await;
    Ok(())
}
