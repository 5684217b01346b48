//! The Admin API checks bearer tokens: a hub that checks them creates its first admin token in
//! `<data-dir>/admin-token` (mode 0600); missing, unknown, revoked and expired tokens are
//! refused as unauthenticated; roles are scoped per stage (a deployer of `dev` cannot touch
//! `prod`, forcing needs admin); tokens are created, listed (never their secrets) and revoked;
//! every mutating call — refused ones too — is an audit event, listed per stage and actor. A
//! hub with authentication off lets anyone in, and the audit says so.

use crate::support::admin::{admin_token, client, create, secured_hub};
use crate::support::fleet as support;

use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_hub::api::caller::INSECURE_ACTOR;
use flotilla_hub::controller::first_admin::ADMIN_TOKEN_FILE;
use flotilla_proto::v1::{
    AdminAddClusterRequest, AdminCreateTokenRequest, AdminFleetStatusRequest,
    AdminListAuditRequest, AdminListClustersRequest, AdminListTokensRequest, AdminPromoteRequest,
    AdminRevokeTokenRequest, AdminStageActionRequest, AdminStageHistoryRequest,
};
use support::TestHub;
use tonic::{Code, Status};

fn stage_request(stage: &str) -> AdminStageActionRequest {
    AdminStageActionRequest {
        stage: stage.into(),
        reason: String::new(),
        rollout: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_token_is_written_once_owner_only_and_works() -> Result<()> {
    let (_repo, hub, _) = secured_hub(|_| {}).await?;
    let secret = admin_token(&hub).await?;
    assert!(secret.starts_with("flt_"), "{secret}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(hub.data.path().join(ADMIN_TOKEN_FILE))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "admin-token mode {mode:o}");
    }
    let state = hub.hub.node().state();
    let (_, token) = state
        .access
        .token_named("initial-admin")
        .context("initial-admin")?;
    assert!(
        !token.secret_hash.contains(&secret[secret.len() - 64..]),
        "only the hash is stored"
    );
    drop(state);
    let mut admin = client(&hub, Some(&secret)).await?;
    let tokens = admin
        .list_tokens(AdminListTokensRequest {})
        .await?
        .into_inner()
        .tokens;
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        (tokens[0].name.as_str(), tokens[0].role.as_str()),
        ("initial-admin", "admin")
    );
    assert!(tokens[0].stages.is_empty(), "admin of every stage");
    hub.hub.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_garbage_unknown_revoked_and_expired_tokens_are_unauthenticated() -> Result<()> {
    let (_repo, hub, _) = secured_hub(|_| {}).await?;
    let root = admin_token(&hub).await?;
    let mut admin = client(&hub, Some(&root)).await?;

    let refusal = |token: Option<String>| {
        let hub = &hub;
        async move {
            let mut caller = client(hub, token.as_deref()).await?;
            let status = caller
                .list_clusters(AdminListClustersRequest {})
                .await
                .expect_err("refused");
            anyhow::Ok(status)
        }
    };
    let none = refusal(None).await?;
    assert_eq!(none.code(), Code::Unauthenticated);
    assert!(
        none.message().contains("--token or FLOTILLA_TOKEN"),
        "{}",
        none.message()
    );

    let garbage = refusal(Some("hunter2".into())).await?;
    assert_eq!(garbage.code(), Code::Unauthenticated);
    assert!(
        garbage.message().contains("flt_<id>_<secret>"),
        "{}",
        garbage.message()
    );

    let unknown = format!("flt_{}_{}", "0".repeat(16), "a".repeat(64));
    let unknown = refusal(Some(unknown)).await?;
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert!(
        unknown.message().contains("unknown"),
        "{}",
        unknown.message()
    );

    let revoked = create(&mut admin, "leaver", "viewer", &[], 0).await?;
    client(&hub, Some(&revoked))
        .await?
        .list_clusters(AdminListClustersRequest {})
        .await?;
    admin
        .revoke_token(AdminRevokeTokenRequest {
            name: "leaver".into(),
        })
        .await?;
    let status = refusal(Some(revoked)).await?;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("was revoked"),
        "{}",
        status.message()
    );

    let expiring = create(&mut admin, "brief", "viewer", &[], 1).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let status = refusal(Some(expiring)).await?;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("has expired"),
        "{}",
        status.message()
    );

    // A wrong secret for a real id is as good as none.
    let id = &root["flt_".len().."flt_".len() + 16];
    let status = refusal(Some(format!("flt_{id}_{}", "b".repeat(64)))).await?;
    assert_eq!(status.code(), Code::Unauthenticated);
    hub.hub.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_scoped_per_stage_and_refusals_are_audited() -> Result<()> {
    let (_repo, hub, commit) = secured_hub(|_| {}).await?;
    let root = admin_token(&hub).await?;
    let mut admin = client(&hub, Some(&root)).await?;
    let dev_deployer = create(&mut admin, "dev-deployer", "deployer", &["dev"], 0).await?;
    let prod_deployer = create(&mut admin, "prod-deployer", "deployer", &["prod"], 0).await?;
    let viewer = create(&mut admin, "dev-viewer", "viewer", &["dev"], 0).await?;
    let mut dev = client(&hub, Some(&dev_deployer)).await?;
    let mut prod = client(&hub, Some(&prod_deployer)).await?;
    let mut watcher = client(&hub, Some(&viewer)).await?;

    // A deployer of dev cannot promote, pause or read prod.
    let promote_prod = AdminPromoteRequest {
        stage: "prod".into(),
        revision: commit.clone(),
        force: false,
        reason: String::new(),
    };
    let status = dev.promote(promote_prod.clone()).await.expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains("token:dev-deployer may not promote on stage `prod`")
            && status.message().contains("deployer on dev"),
        "{}",
        status.message()
    );
    let status = dev.pause(stage_request("prod")).await.expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = dev
        .stage_history(AdminStageHistoryRequest {
            stage: "prod".into(),
        })
        .await
        .expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied);
    // ... but may act on dev (allowed; the rollout state decides what happens).
    let paused = dev.pause(stage_request("dev")).await;
    assert_ne!(
        paused.as_ref().err().map(Status::code),
        Some(Code::PermissionDenied)
    );
    dev.stage_history(AdminStageHistoryRequest {
        stage: "dev".into(),
    })
    .await?;

    // A viewer reads its stage and changes nothing.
    let status = watcher
        .pause(stage_request("dev"))
        .await
        .expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("needs the deployer role"),
        "{}",
        status.message()
    );

    // Forcing past the upstream gate needs admin, even for the stage's deployer.
    let forced = AdminPromoteRequest {
        force: true,
        ..promote_prod.clone()
    };
    let status = prod.promote(forced.clone()).await.expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("needs the admin role"),
        "{}",
        status.message()
    );
    let status = prod.promote(promote_prod).await.expect_err("gate");
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    // The admin is allowed; whether prod can take it yet is the rollout state's business.
    let by_admin = admin.promote(forced).await;
    assert_ne!(
        by_admin.err().map(|s| s.code()),
        Some(Code::PermissionDenied)
    );

    // Fleet-wide actions need an admin of every stage.
    let status = prod
        .add_cluster(AdminAddClusterRequest {
            name: "sneaky".into(),
            labels: Default::default(),
        })
        .await
        .expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = prod
        .create_token(AdminCreateTokenRequest {
            name: "mine".into(),
            role: "admin".into(),
            stages: vec![],
            expires_in_ms: 0,
        })
        .await
        .expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(!hub.hub.node().state().clusters.contains_key("sneaky"));

    // A stage viewer's status shows its stage's clusters only.
    let status = watcher
        .fleet_status(AdminFleetStatusRequest::default())
        .await?
        .into_inner();
    let names: Vec<&str> = status.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["dev-1"]);

    // The audit log has the refusals, who tried, and the forced promotion.
    let events = admin
        .list_audit(AdminListAuditRequest {
            since_ms: 0,
            actor: String::new(),
            stage: "prod".into(),
            limit: 0,
        })
        .await?
        .into_inner()
        .events;
    let denied = |actor: &str, action: &str| {
        events.iter().any(|e| {
            e.actor == actor
                && e.action == action
                && e.outcome == "denied"
                && e.target == "stage/prod"
        })
    };
    assert!(denied("token:dev-deployer", "promote"), "{events:#?}");
    assert!(denied("token:dev-deployer", "pause"), "{events:#?}");
    assert!(
        denied("token:prod-deployer", "force-promote"),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| e.actor == "token:prod-deployer"
            && e.action == "promote"
            && e.outcome == "failed"),
        "the gate's refusal is audited: {events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.actor == "token:initial-admin" && e.action == "force-promote"),
        "{events:#?}"
    );
    let all = admin
        .list_audit(AdminListAuditRequest {
            actor: "token:initial-admin".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .events;
    for (name, action) in [
        ("dev-deployer", "token.create"),
        ("dev-viewer", "token.create"),
    ] {
        assert!(
            all.iter()
                .any(|e| e.target == format!("token/{name}") && e.action == action),
            "{all:#?}"
        );
    }
    assert!(all.iter().all(|e| e.actor == "token:initial-admin"));
    // The viewer of dev sees none of prod's events.
    let seen = watcher
        .list_audit(AdminListAuditRequest::default())
        .await?
        .into_inner()
        .events;
    assert!(seen.iter().all(|e| e.target == "stage/dev"), "{seen:#?}");
    let status = watcher
        .list_audit(AdminListAuditRequest {
            stage: "prod".into(),
            ..Default::default()
        })
        .await
        .expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied);
    hub.hub.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_without_secrets_and_names_are_unique() -> Result<()> {
    let (_repo, hub, _) = secured_hub(|_| {}).await?;
    let root = admin_token(&hub).await?;
    let mut admin = client(&hub, Some(&root)).await?;
    let secret = create(
        &mut admin,
        "ci",
        "deployer",
        &["dev", "prod"],
        30 * 86_400_000,
    )
    .await?;
    let status = admin
        .create_token(AdminCreateTokenRequest {
            name: "ci".into(),
            role: "viewer".into(),
            ..Default::default()
        })
        .await
        .expect_err("taken");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("'ci' already exists"),
        "{}",
        status.message()
    );
    let status = admin
        .create_token(AdminCreateTokenRequest {
            name: "Bad Name".into(),
            role: "viewer".into(),
            ..Default::default()
        })
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = admin
        .create_token(AdminCreateTokenRequest {
            name: "x".into(),
            role: "root".into(),
            ..Default::default()
        })
        .await
        .expect_err("invalid");
    assert!(
        status.message().contains("viewer, deployer or admin"),
        "{}",
        status.message()
    );

    let listed = admin
        .list_tokens(AdminListTokensRequest {})
        .await?
        .into_inner();
    let text = format!("{listed:?}");
    assert!(
        !text.contains(&secret[secret.len() - 64..]),
        "no secret in the list"
    );
    let ci = listed
        .tokens
        .iter()
        .find(|t| t.name == "ci")
        .context("ci listed")?;
    assert_eq!(ci.stages, ["dev", "prod"]);
    assert!(ci.expires_at_ms > ci.created_at_ms + 29 * 86_400_000);
    assert_eq!(ci.created_by, "token:initial-admin");

    admin
        .revoke_token(AdminRevokeTokenRequest { name: "ci".into() })
        .await?;
    let status = admin
        .revoke_token(AdminRevokeTokenRequest { name: "ci".into() })
        .await
        .expect_err("gone");
    assert_eq!(status.code(), Code::NotFound);
    // The name is free again once revoked.
    create(&mut admin, "ci", "viewer", &[], 0).await?;
    hub.hub.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authentication_everyone_is_an_anonymous_admin_and_the_audit_says_so() -> Result<()>
{
    let (repo, _) = support::with_fleet()?;
    let hub = TestHub::start(&repo.url(), |config| config.authenticate = false).await?;
    let mut anyone = client(&hub, None).await?;
    anyone
        .add_cluster(AdminAddClusterRequest {
            name: "lab-1".into(),
            labels: Default::default(),
        })
        .await?;
    assert!(
        !hub.data.path().join(ADMIN_TOKEN_FILE).exists(),
        "no token on an open hub"
    );
    let events = anyone
        .list_audit(AdminListAuditRequest::default())
        .await?
        .into_inner()
        .events;
    let added = events
        .iter()
        .find(|e| e.action == "cluster.add")
        .context("cluster.add audited")?;
    assert_eq!(added.actor, INSECURE_ACTOR);
    assert_eq!(
        (added.target.as_str(), added.outcome.as_str()),
        ("cluster/lab-1", "succeeded")
    );
    hub.hub.shutdown().await;
    Ok(())
}
