//! A hub group elects a leader, commits proposals made on any node, serves linearizable reads,
//! and keeps every replica identical.

use crate::support::group as support;

use std::time::Duration;

use anyhow::Result;
use flotilla_hub::node::ProposeError;
use flotilla_hub::state::CommandError;
use support::{TestGroup, register};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_group_commits_and_answers_rejections() -> Result<()> {
    support::init_tracing();
    let group = TestGroup::start(1, 1, 1000).await?;
    let node = group.node(1)?;
    group.leader(Duration::from_secs(5)).await?;
    let applied = node.propose(&register("a")).await?;
    assert!(node.state().clusters.contains_key("a"));
    assert!(node.state().applied() >= applied.index);
    let err = node
        .propose(&register("a"))
        .await
        .expect_err("duplicate accepted");
    assert!(
        matches!(
            err,
            ProposeError::Rejected {
                error: CommandError::ClusterExists(_),
                ..
            }
        ),
        "{err}"
    );
    let index = node.read_index().await?;
    assert!(index >= applied.index);
    group.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_on_any_node_of_three_commit_everywhere() -> Result<()> {
    support::init_tracing();
    let group = TestGroup::start(3, 2, 1000).await?;
    let leader = group.leader(Duration::from_secs(5)).await?;
    for (i, node) in group.live().iter().enumerate() {
        let name = format!("c{i}");
        node.propose(&register(&name)).await?;
        // Answered only once applied on the proposing node itself.
        assert!(
            node.state().clusters.contains_key(&name),
            "node {} lacks {name}",
            node.id()
        );
    }
    let follower = group
        .live()
        .into_iter()
        .find(|n| n.id() != leader)
        .expect("follower");
    let seen = follower.linearizable(|s| s.clusters.len()).await?;
    assert_eq!(seen, 3);
    group.converged(Duration::from_secs(5)).await?;
    group.shutdown().await;
    Ok(())
}

/// A follower's forward whose answer is lost after the leader appended the write: the follower
/// sends it again, and its caller learns that its one write applied — not "cluster exists"
/// for its own write (the second copy applies as the first's duplicate, changing nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_was_lost_applies_once_and_its_caller_learns_so() -> Result<()> {
    support::init_tracing();
    let group = TestGroup::start(3, 3, 1000).await?;
    let leader = group.leader(Duration::from_secs(5)).await?;
    let follower = group
        .live()
        .into_iter()
        .find(|n| n.id() != leader)
        .expect("follower");
    for round in 0..5 {
        let name = format!("lost-{round}");
        group.faults.lose_forward_answers(1 + round % 2);
        let outcome = follower.propose(&register(&name)).await;
        assert!(outcome.is_ok(), "round {round}: {outcome:?}");
        group.converged(Duration::from_secs(5)).await?;
        assert!(follower.state().clusters.contains_key(&name));
    }
    // A write that really is a duplicate is still refused as one.
    let again = follower.propose(&register("lost-0")).await;
    assert!(
        matches!(
            again,
            Err(ProposeError::Rejected {
                error: CommandError::ClusterExists(_),
                ..
            })
        ),
        "{again:?}"
    );
    group.shutdown().await;
    Ok(())
}
