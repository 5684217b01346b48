//! Membership changes one node at a time while proposals flow: a single node grows to three
//! (the newcomers catch up by snapshot), a dead node is removed, and the leader removes itself.

use crate::support::group as support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_hub::node::NodeHandle;
use support::{TestGroup, register};
use tokio::task::JoinHandle;

/// Proposes `count` registrations named `{prefix}{i}` on `node`; returns the acknowledged names.
fn writer(node: NodeHandle, prefix: &'static str, count: usize) -> JoinHandle<BTreeSet<String>> {
    tokio::spawn(async move {
        let mut acked = BTreeSet::new();
        for i in 0..count {
            let name = format!("{prefix}{i}");
            if node.propose(&register(&name)).await.is_ok() {
                acked.insert(name);
            }
        }
        acked
    })
}

fn assert_has_all(node: &NodeHandle, acked: &BTreeSet<String>) {
    let state = node.state();
    let missing: Vec<_> = acked
        .iter()
        .filter(|n| !state.clusters.contains_key(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "node {} lost acknowledged writes {missing:?}",
        node.id()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_grows_and_shrinks_one_member_at_a_time_while_proposals_flow() -> Result<()> {
    support::init_tracing();
    let within = Duration::from_secs(10);
    let mut group = TestGroup::start(1, 7, 20).await?;
    let first = group.node(1)?.clone();
    group.leader(within).await?;
    let mut acked = writer(first.clone(), "before-", 30).await?;
    assert_eq!(acked.len(), 30, "a healthy single node refused writes");

    // Grow to three while writes keep arriving on node 1.
    let during = writer(first.clone(), "grow-", 30);
    for id in [2, 3] {
        group.start_joiner(id).await?;
        let address = group.addresses[&id].clone();
        first
            .add_member(id, &address)
            .await
            .with_context(|| format!("adding node {id}"))?;
    }
    acked.extend(during.await?);
    group.converged(within).await?;
    for id in [2, 3] {
        let status = group.node(id)?.status().await?;
        assert!(
            status.first_index > 2,
            "node {id} replayed the whole log instead of catching up by snapshot: {status:?}"
        );
        assert_eq!(status.voters, vec![1, 2, 3]);
        assert_has_all(group.node(id)?, &acked);
    }

    // A dead node is removed through a follower while writes go on.
    group.crash(3).await?;
    let second = group.node(2)?.clone();
    let during = writer(second.clone(), "shrink-", 20);
    second
        .remove_member(3)
        .await
        .context("removing dead node 3")?;
    acked.extend(during.await?);
    assert_eq!(second.status().await?.voters, vec![1, 2]);
    assert!(!second.state().members.contains_key(&3));

    // The leader removes itself: leadership moves first, then the change commits.
    let leader_id = group.leader(within).await?;
    let survivor_id = if leader_id == 1 { 2 } else { 1 };
    let survivor = group.node(survivor_id)?.clone();
    let during = writer(survivor.clone(), "last-", 20);
    group
        .node(leader_id)?
        .remove_member(leader_id)
        .await
        .context("removing the leader")?;
    acked.extend(during.await?);
    let after = writer(survivor.clone(), "alone-", 5).await?;
    assert_eq!(after.len(), 5, "the remaining single voter cannot commit");
    acked.extend(after);
    assert_eq!(survivor.status().await?.voters, vec![survivor_id]);
    assert_has_all(&survivor, &acked);
    group.shutdown().await;
    Ok(())
}
