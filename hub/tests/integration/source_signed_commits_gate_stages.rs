//! A stage that `requireSignedBy` a key takes only commits that key signed: real signed commits
//! (sshsig over the commit object, stored in its `gpgsig` header by git2, as `git commit -S`
//! with `gpg.format=ssh` does), read back from the hub's mirror. An unsigned commit, and one
//! signed by another key that also rewrites the key list, never reach the stage — not by
//! tracking, not by a forced promotion — and status says why; the next commit the key signed
//! goes through. A stage without the requirement takes every commit.

use crate::support::fleet as support;

use std::time::Duration;

use anyhow::Result;
use flotilla_proto::v1::admin_client::AdminClient;
use flotilla_proto::v1::{AdminFleetStatusRequest, AdminListRevisionsRequest, AdminPromoteRequest};
use git2::{Oid, Signature};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use support::{APP_CONFIG, GitRepo, TestHub, assigned, rendered};
use tonic::Code;

/// dev and prod both track main; prod takes only commits the listed key signed.
fn spec(key: &PrivateKey) -> Result<String> {
    let public = key.public_key().to_openssh()?;
    Ok(format!(
        "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: dev
    clusterSelector: {{matchLabels: {{env: dev}}}}
    track: {{branch: main}}
    rollout: {{supersede: immediate}}
  - name: prod
    clusterSelector: {{matchLabels: {{env: prod}}}}
    track: {{branch: main}}
    rollout: {{supersede: immediate}}
    requireSignedBy:
      - name: release
        ssh: {public}
bundles:
  - name: app
    path: bundles/app
    namespace: app
    variables: {{greeting: hello}}
"
    ))
}

/// Commits the working tree on `main`, signed by `key` as git signs with an SSH key.
fn commit_signed(repo: &GitRepo, message: &str, key: &PrivateKey) -> Result<String> {
    let git = repo.repository();
    let mut index = git.index()?;
    index.add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = git.find_tree(index.write_tree()?)?;
    let author = Signature::now("Release Manager", "release@flotilla.dev")?;
    let parent = git.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let buffer = git.commit_create_buffer(&author, &author, message, &tree, &parents)?;
    let payload = std::str::from_utf8(&buffer)?;
    let signature = key
        .sign("git", ssh_key::HashAlg::Sha512, payload.as_bytes())?
        .to_pem(LineEnding::LF)?;
    let oid: Oid = git.commit_signed(payload, &signature, None)?;
    git.reference("refs/heads/main", oid, true, message)?;
    Ok(oid.to_string())
}

fn pinned(state: &flotilla_hub::state::State, stage: &str) -> Option<String> {
    state
        .stages
        .get(stage)
        .and_then(|s| s.pinned.as_ref())
        .map(|r| r.commit.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_commits_signed_by_the_listed_key_reach_the_stage() -> Result<()> {
    let release = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?;
    let intruder = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?;
    let repo = GitRepo::new()?;
    repo.write("flotilla.yaml", &spec(&release)?)?;
    repo.write("bundles/app/config.yaml", APP_CONFIG)?;
    let first = commit_signed(&repo, "signed fleet", &release)?;
    let hub = TestHub::start(&repo.url(), |_| {}).await?;
    let wait = Duration::from_secs(30);
    hub.wait_for("both stages at the signed first commit", wait, |s| {
        pinned(s, "dev").as_deref() == Some(&first)
            && pinned(s, "prod").as_deref() == Some(&first)
            && assigned(s, "prod-1").as_deref() == Some(&first)
    })
    .await?;

    // An unsigned commit: dev takes it, prod does not.
    repo.write(
        "bundles/app/config.yaml",
        &format!("{APP_CONFIG}  extra: unsigned\n"),
    )?;
    let unsigned = repo.commit("unsigned change")?;
    hub.wait_for("dev at the unsigned commit", wait, |s| {
        rendered(s, &unsigned) && pinned(s, "dev").as_deref() == Some(&unsigned)
    })
    .await?;
    let state = hub.hub.node().state();
    assert_eq!(pinned(&state, "prod").as_deref(), Some(first.as_str()));
    assert_eq!(assigned(&state, "prod-1").as_deref(), Some(first.as_str()));
    drop(state);
    let mut admin = AdminClient::connect(format!("http://{}", hub.hub.api_address())).await?;
    let status = admin
        .fleet_status(AdminFleetStatusRequest::default())
        .await?
        .into_inner();
    let prod = status
        .stages
        .iter()
        .find(|s| s.name == "prod")
        .expect("prod");
    assert!(
        prod.blocked.contains(&unsigned[..12]) && prod.blocked.contains("not signed"),
        "{prod:?}"
    );
    let revisions = admin
        .list_revisions(AdminListRevisionsRequest {})
        .await?
        .into_inner()
        .revisions;
    let listed = revisions
        .iter()
        .find(|r| r.commit == unsigned)
        .expect("listed");
    assert!(
        listed.signature_refusals.len() == 1
            && listed.signature_refusals[0].starts_with("prod: the commit is not signed"),
        "{listed:?}"
    );
    // Not even an admin's forced promotion takes it there.
    let forced = admin
        .promote(AdminPromoteRequest {
            stage: "prod".into(),
            revision: unsigned.clone(),
            force: true,
            reason: "try anyway".into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(forced.code(), Code::FailedPrecondition);
    assert!(
        forced.message().contains("may not enter stage 'prod'")
            && forced.message().contains("not signed"),
        "{}",
        forced.message()
    );

    // Signed by another key, with a flotilla.yaml that lists that key instead: the keys of the
    // revision prod runs decide, so it is refused too.
    repo.write("flotilla.yaml", &spec(&intruder)?)?;
    let hostile = commit_signed(&repo, "my key now", &intruder)?;
    hub.wait_for("dev at the intruder's commit", wait, |s| {
        pinned(s, "dev").as_deref() == Some(&hostile)
    })
    .await?;
    let status = admin
        .fleet_status(AdminFleetStatusRequest::default())
        .await?
        .into_inner();
    let prod = status
        .stages
        .iter()
        .find(|s| s.name == "prod")
        .expect("prod");
    assert!(
        prod.blocked
            .contains("not among the keys the stage requires"),
        "{prod:?}"
    );
    assert_eq!(
        pinned(&hub.hub.node().state(), "prod").as_deref(),
        Some(first.as_str())
    );

    // The release key signs the next commit (restoring its own key): prod takes it.
    repo.write("flotilla.yaml", &spec(&release)?)?;
    let good = commit_signed(&repo, "signed again", &release)?;
    hub.wait_for("prod at the next signed commit", wait, |s| {
        pinned(s, "prod").as_deref() == Some(&good)
            && assigned(s, "prod-1").as_deref() == Some(&good)
    })
    .await?;
    let status = admin
        .fleet_status(AdminFleetStatusRequest::default())
        .await?
        .into_inner();
    let prod = status
        .stages
        .iter()
        .find(|s| s.name == "prod")
        .expect("prod");
    assert!(prod.blocked.is_empty(), "{prod:?}");
    hub.hub.shutdown().await;
    Ok(())
}
