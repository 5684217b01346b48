//! A broken commit — YAML syntax, an undefined variable, a link or a path leaving the repository
//! — is recorded as failed with the file and line of the problem, and nothing changes for any
//! stage or cluster; the next good commit goes through.

use crate::support::fleet as support;

use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_hub::state::source::RevisionStatus;
use support::{APP_CONFIG, FLEET_SPEC, GitRepo, TestHub, assigned, failed, revision};

const WAIT: Duration = Duration::from_secs(15);

struct Breakage {
    what: &'static str,
    apply: fn(&GitRepo) -> Result<()>,
    file: &'static str,
    line: Option<u32>,
    says: &'static str,
}

fn breakages() -> Vec<Breakage> {
    vec![
        Breakage {
            what: "YAML syntax error",
            apply: |repo| {
                repo.write(
                    "bundles/app/config.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata: [unclosed\n",
                )
            },
            file: "bundles/app/config.yaml",
            line: None,
            says: "",
        },
        Breakage {
            what: "undefined variable",
            apply: |repo| {
                repo.write(
                    "bundles/app/config.yaml",
                    &APP_CONFIG.replace("${greeting}", "${farewell}"),
                )
            },
            file: "bundles/app/config.yaml",
            line: Some(8),
            says: "undefined variable `farewell`",
        },
        Breakage {
            what: "link leaving the repository",
            apply: |repo| {
                repo.symlink(
                    std::path::Path::new("/etc/hostname"),
                    "bundles/app/secrets.yaml",
                )
            },
            file: "bundles/app/secrets.yaml",
            line: None,
            says: "leads outside the repository",
        },
        Breakage {
            what: "bundle path leaving the repository",
            apply: |repo| {
                repo.write(
                    "flotilla.yaml",
                    &FLEET_SPEC.replace("path: bundles/app", "path: ../../etc"),
                )
            },
            file: "flotilla.yaml",
            line: Some(13),
            says: "",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_commit_is_recorded_with_its_location_and_changes_no_cluster() -> Result<()> {
    support::init_tracing();
    let (repo, good) = support::with_fleet()?;
    let hub = TestHub::start(&repo.url(), |_| {}).await?;
    hub.wait_for("the good commit everywhere", WAIT, |s| {
        assigned(s, "dev-1").as_deref() == Some(good.as_str())
            && assigned(s, "prod-1").as_deref() == Some(good.as_str())
    })
    .await?;
    let before = {
        let state = hub.hub.node().state();
        (
            state.stages.clone(),
            state.clusters.clone(),
            state.desired_bundles("dev-1"),
            state.desired_bundles("prod-1"),
        )
    };

    for breakage in breakages() {
        repo.reset_hard(&good)?;
        (breakage.apply)(&repo)?;
        let broken = repo.commit(breakage.what)?;
        hub.wait_for(breakage.what, WAIT, |s| failed(s, &broken))
            .await?;
        let state = hub.hub.node().state();
        let RevisionStatus::Failed { error, .. } = &state.revisions[&revision(&broken)].status
        else {
            unreachable!("waited for a failure");
        };
        assert_eq!(error.file, breakage.file, "{}: {error:?}", breakage.what);
        match breakage.line {
            Some(line) => assert_eq!(error.line, Some(line), "{}: {error:?}", breakage.what),
            None if breakage.file.ends_with("config.yaml") => {
                assert!(
                    error.line.is_some(),
                    "{}: no line in {error:?}",
                    breakage.what
                )
            }
            None => {}
        }
        assert!(
            error.message.contains(breakage.says),
            "{}: {error:?}",
            breakage.what
        );
        assert_eq!(
            state.sources["origin"].head.as_deref(),
            Some(broken.as_str())
        );
        assert_eq!(state.stages, before.0, "{}: a stage moved", breakage.what);
        assert_eq!(
            state.clusters, before.1,
            "{}: a cluster changed",
            breakage.what
        );
        assert_eq!(state.desired_bundles("dev-1"), before.2);
        assert_eq!(state.desired_bundles("prod-1"), before.3);
    }

    // Fixing the repository lets the next commit through.
    repo.reset_hard(&good)?;
    repo.write("flotilla.yaml", &FLEET_SPEC.replace("hello", "fixed"))?;
    let fixed = repo.commit("fixed")?;
    hub.wait_for("the fixed commit on dev", WAIT, |s| {
        assigned(s, "dev-1").as_deref() == Some(fixed.as_str())
    })
    .await?;
    let state = hub.hub.node().state();
    let app = support::desired_app(&hub.hub, &state, "dev-1")?;
    assert_eq!(
        app["objects"][0]["data"]["greeting"]
            .as_str()
            .context("no greeting")?,
        "fixed"
    );
    drop(state);
    hub.hub.shutdown().await;
    Ok(())
}
