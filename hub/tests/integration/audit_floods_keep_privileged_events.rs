//! Nobody without a role can flush the audit trail: one signed webhook replayed thousands of
//! times fetches once and is audited once (the replays are answered "duplicate delivery,
//! ignored"), and thousands of refused calls from a viewer's token are recorded one by one only
//! up to the per-actor limit, the rest as aggregate events carrying their count. Earlier
//! privileged events — a token's creation, a forced promotion — are still listed afterwards.

use crate::support::admin::{admin_token, client, create, secured_hub};

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use flotilla_hub::audit::AuditLimits;
use flotilla_hub::http::webhook::sign;
use flotilla_proto::v1::{
    AdminAuditEvent, AdminListAuditRequest, AdminPromoteRequest, AdminStageActionRequest,
};
use tonic::Code;

use crate::support::fleet::{FLEET_SPEC, http};

const SECRET: &str = "s3cret";
const REPLAYS: usize = 2_000;
const REFUSALS: u64 = 3_000;
const LIMITS: AuditLimits = AuditLimits {
    window: Duration::from_secs(1),
    per_window: 10,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_webhooks_and_refused_calls_never_flush_privileged_audit_events() -> Result<()> {
    let (repo, hub, _) = secured_hub(|config| {
        config.webhook_secret = Some(SECRET.into());
        config.audit = LIMITS;
    })
    .await?;
    let mut admin = client(&hub, Some(&admin_token(&hub).await?)).await?;

    // Privileged events first: a token's creation and a forced promotion.
    let snoop = create(&mut admin, "snoop", "viewer", &["dev"], 0).await?;
    repo.write("flotilla.yaml", &FLEET_SPEC.replace("hello", "second"))?;
    let commit = repo.commit("second")?;
    hub.wait_for("dev at the second commit", Duration::from_secs(20), |s| {
        s.stages["dev"]
            .pinned
            .as_ref()
            .is_some_and(|p| p.commit == commit)
    })
    .await?;
    admin
        .promote(AdminPromoteRequest {
            stage: "prod".into(),
            revision: commit.clone(),
            force: true,
            reason: "release".into(),
        })
        .await?;

    // One signed delivery, replayed.
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{commit}"}}"#);
    let signature = sign(SECRET, body.as_bytes());
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("X-Hub-Signature-256", signature.as_str()),
    ];
    let address = hub.hub.http_address();
    let (status, answer) = http(address, "POST", "/webhook", &headers, body.as_bytes()).await?;
    assert_eq!(status, 202, "the first delivery fetches: {answer}");
    for _ in 1..REPLAYS {
        let (status, answer) = http(address, "POST", "/webhook", &headers, body.as_bytes()).await?;
        ensure!(
            status == 200 && answer.contains("duplicate delivery, ignored"),
            "a replay was answered {status}: {answer}"
        );
    }
    assert_eq!(hub.hub.node().state().sources["origin"].fetch_requests, 1);

    // A viewer of dev asks to pause prod, again and again.
    let mut snooping = client(&hub, Some(&snoop)).await?;
    for _ in 0..REFUSALS {
        let refused = snooping
            .pause(AdminStageActionRequest {
                stage: "prod".into(),
                reason: String::new(),
                rollout: 0,
            })
            .await
            .expect_err("a viewer cannot pause");
        ensure!(refused.code() == Code::PermissionDenied, "{refused:?}");
    }

    // Once the last window closes, the refusals not recorded one by one are counted in
    // aggregates: together with those recorded they account for every refusal.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let snooped = loop {
        let snooped = admin
            .list_audit(AdminListAuditRequest {
                actor: "token:snoop".into(),
                limit: 10_000,
                ..Default::default()
            })
            .await?
            .into_inner()
            .events;
        if snooped.iter().map(|e| e.count).sum::<u64>() == REFUSALS {
            break snooped;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the refusals are not all accounted for: {snooped:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        snooped
            .iter()
            .all(|e| e.action == "pause" && e.target == "stage/prod" && e.outcome == "denied"),
        "{snooped:#?}"
    );
    let aggregate = snooped
        .iter()
        .filter(|e| e.count > 1)
        .max_by_key(|e| e.count)
        .context("no aggregate event")?;
    assert!(
        aggregate
            .detail
            .starts_with(&format!("{} more between", aggregate.count)),
        "{aggregate:#?}"
    );
    // At most the limit one by one plus one aggregate per window the flood touched (a window
    // of a slow, loaded machine may hold the limit or fewer, and no aggregate): a few hundred
    // records at most, not thousands.
    let first = snooped.iter().map(|e| e.at_ms).min().unwrap_or_default();
    let last = snooped.iter().map(|e| e.at_ms).max().unwrap_or_default();
    let window_ms = i64::try_from(LIMITS.window.as_millis()).unwrap_or(i64::MAX);
    let windows = usize::try_from((last - first) / window_ms + 2).unwrap_or(usize::MAX);
    assert!(
        snooped.len() <= windows * (LIMITS.per_window as usize + 1),
        "{} records for {windows} windows",
        snooped.len()
    );
    assert!(
        (snooped.len() as u64) < REFUSALS / 5,
        "{} records for {REFUSALS} refusals",
        snooped.len()
    );

    let everything = admin
        .list_audit(AdminListAuditRequest {
            limit: 100_000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .events;
    let webhook_fetches: Vec<&AdminAuditEvent> = everything
        .iter()
        .filter(|e| e.actor == "webhook:github")
        .collect();
    assert_eq!(webhook_fetches.len(), 1, "{webhook_fetches:#?}");
    let kept = |actor: &str, action: &str, target: &str| {
        everything
            .iter()
            .any(|e| e.actor == actor && e.action == action && e.target == target)
    };
    assert!(
        kept("token:initial-admin", "token.create", "token/snoop"),
        "{everything:#?}"
    );
    assert!(
        kept("token:initial-admin", "force-promote", "stage/prod"),
        "{everything:#?}"
    );
    let sequence: Vec<u64> = everything.iter().map(|e| e.seq).collect();
    assert!(
        sequence.windows(2).all(|pair| pair[0] > pair[1]),
        "listed newest first by sequence number across classes"
    );
    hub.hub.shutdown().await;
    Ok(())
}
