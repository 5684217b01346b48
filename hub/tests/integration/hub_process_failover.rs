//! SIGKILL of the leader process: a new leader is elected within two election timeouts, no
//! acknowledged write is lost, and every replica converges to the same state.
//!
//! "Within two election timeouts" is measured in raft ticks of the surviving processes (their
//! logical clock), not wall time, so a loaded machine cannot make the test flaky: an election
//! timeout is at most 2 × election_ticks ticks (raft randomises it in [n, 2n)).

use crate::support::process as support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Result, bail};
use support::{ELECTION_TICKS, ProcessGroup, missing, register, write_all};

async fn leader_kill_loses_nothing(size: u64) -> Result<()> {
    let mut group = ProcessGroup::start(size).await?;
    let within = Duration::from_secs(20);
    let leader = group.leader(within).await?;
    let mut acked = write_all(&group, (0..40).map(|i| format!("before-{i}"))).await;
    assert_eq!(acked.len(), 40, "a healthy group refused writes");

    // Writes keep flowing through a follower while the leader dies.
    let survivor = *group
        .addresses
        .keys()
        .find(|id| **id != leader)
        .unwrap_or(&1);
    let client_address = group.addresses[&survivor].clone();
    let writer = tokio::spawn(async move {
        let mut acked = BTreeSet::new();
        for i in 0..60 {
            let name = format!("during-{i}");
            let Ok(mut client) = flotilla_hub::node::GroupClient::new(&client_address) else {
                continue;
            };
            if client.propose(&register(&name)).await.is_ok() {
                acked.insert(name);
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut ticks_at_kill = Vec::new();
    for id in group.running().into_iter().filter(|id| *id != leader) {
        ticks_at_kill.push((id, group.status(id).await?.ticks));
    }
    group.kill(leader)?;
    let new_leader = group.leader_other_than(leader, within).await?;
    let ticks_now = group.status(new_leader).await?.ticks;
    let ticks_then = ticks_at_kill
        .iter()
        .find(|(id, _)| *id == new_leader)
        .map(|(_, t)| *t)
        .unwrap_or(0);
    let elapsed_ticks = ticks_now - ticks_then;
    let two_election_timeouts = 2 * (2 * ELECTION_TICKS);
    assert!(
        elapsed_ticks <= two_election_timeouts,
        "new leader after {elapsed_ticks} ticks, more than two election timeouts ({two_election_timeouts} ticks)"
    );

    acked.extend(writer.await?);
    acked.extend(write_all(&group, (0..20).map(|i| format!("after-{i}"))).await);
    assert!(
        acked.len() >= 60,
        "too few writes acknowledged around the kill: {}",
        acked.len()
    );

    group.spawn(leader)?;
    let state = group.converged(within).await?;
    let lost = missing(&state, &acked);
    if !lost.is_empty() {
        bail!("acknowledged writes lost: {lost:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_of_three_elects_a_new_one_and_loses_no_acknowledged_write()
-> Result<()> {
    leader_kill_loses_nothing(3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_of_five_elects_a_new_one_and_loses_no_acknowledged_write()
-> Result<()> {
    leader_kill_loses_nothing(5).await
}
