//! A fetch that fails (the branch is gone) is recorded on the source with what to check, while
//! the head, the stages and every cluster stay as they were; the next good fetch clears it.

use crate::support::fleet as support;

use std::time::Duration;

use anyhow::Result;
use support::{FLEET_SPEC, TestHub, assigned};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fetch_is_recorded_and_changes_no_cluster() -> Result<()> {
    support::init_tracing();
    let (repo, first) = support::with_fleet()?;
    let hub = TestHub::start(&repo.url(), |_| {}).await?;
    hub.wait_for("the first commit everywhere", WAIT, |s| {
        assigned(s, "dev-1").as_deref() == Some(first.as_str())
            && assigned(s, "prod-1").as_deref() == Some(first.as_str())
    })
    .await?;
    let before = hub.hub.node().state().clusters.clone();

    // The branch disappears from the repository (renamed away).
    repo.repository()
        .find_branch("main", git2::BranchType::Local)?
        .rename("elsewhere", false)?;
    hub.wait_for("the fetch error recorded", WAIT, |s| {
        s.sources["origin"].last_error.is_some()
    })
    .await?;
    {
        let state = hub.hub.node().state();
        let source = &state.sources["origin"];
        let error = source.last_error.as_deref().unwrap_or_default();
        assert!(error.contains("cannot fetch branch `main`"), "{error}");
        assert!(error.contains("check the URL"), "{error}");
        assert_eq!(source.head.as_deref(), Some(first.as_str()));
        assert_eq!(state.clusters, before);
        assert_eq!(state.revisions.len(), 1);
    }

    // The branch comes back with a new commit: the error clears and the commit goes through.
    repo.repository()
        .find_branch("elsewhere", git2::BranchType::Local)?
        .rename("main", false)?;
    repo.repository().set_head("refs/heads/main")?;
    repo.write("flotilla.yaml", &FLEET_SPEC.replace("hello", "back"))?;
    let back = repo.commit("back")?;
    hub.wait_for("the error cleared and the commit assigned", WAIT, |s| {
        s.sources["origin"].last_error.is_none()
            && assigned(s, "dev-1").as_deref() == Some(back.as_str())
    })
    .await?;
    hub.hub.shutdown().await;
    Ok(())
}
