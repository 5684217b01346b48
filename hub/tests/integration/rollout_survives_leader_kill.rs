//! SIGKILL of the hub leader in the middle of a wave: a group of three real `flotilla-hub`
//! processes follows a repository while real agents on simulated clusters report health. The
//! new leader carries the rollout on from the replicated state and completes it; the raft log,
//! replayed entry by entry (every entry from the group's founding to the commit index, none
//! skipped or compacted away), shows no wave skipped or cut short and no cluster ever given the
//! revision unless the rollout gave it to it, wave by wave.

use crate::support::fleet;
use crate::support::hub_processes as processes;
use crate::support::log;
use crate::support::rollout;
use crate::support::sync as support;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_hub::state::State;
use flotilla_hub::state::rollout::RolloutStatus;
use processes::HubProcesses;
use rollout::{APP, describe, healthy_at, inventory, newest_rollout};
use support::{agent, sim, test_link};

const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    track: {branch: main}
    rollout:
      waves:
        - {name: first, clusterSelector: {matchLabels: {wave: one}}, soak: 3s}
        - {name: second, clusterSelector: {matchLabels: {wave: two}}, soak: 3s}
      maxUnavailable: 1
      healthTimeout: 1m
bundles:
  - name: app
    path: bundles/app
    namespace: app
    variables: {release: \"1\", fail: \"false\"}
";

/// Polls a running node's state until `check` holds (60 s: a failover and a whole rollout).
async fn wait_state(
    hubs: &HubProcesses,
    what: &str,
    check: impl Fn(&State) -> bool,
) -> Result<State> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = None;
    loop {
        for id in hubs.running() {
            if let Ok(state) = hubs.state(id).await {
                if check(&state) {
                    return Ok(state);
                }
                last = Some(state);
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "gave up waiting for {what}; last seen:\n{}",
                last.as_ref().map(describe).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_resumes_where_it_was_after_the_leader_is_killed_mid_wave() -> Result<()> {
    support::init_tracing();
    let repo = fleet::GitRepo::new()?;
    repo.write("flotilla.yaml", SPEC)?;
    repo.write("bundles/app/app.yaml", APP)?;
    let first = repo.commit("release 1")?;
    let files = tempfile::tempdir()?;
    let clusters = files.path().join("clusters.yaml");
    std::fs::write(
        &clusters,
        inventory(&[
            &[("env", "prod"), ("wave", "one")],
            &[("env", "prod"), ("wave", "two")],
            &[("env", "prod")],
            &[("env", "prod")],
        ]),
    )?;
    let mut hubs = HubProcesses::start_with(
        3,
        &[
            "--repo".into(),
            repo.url(),
            "--poll-interval".into(),
            "200ms".into(),
            "--clusters".into(),
            clusters.display().to_string(),
            // The replay below must see every entry: no compaction during the test.
            "--compact-after".into(),
            "1000000".into(),
        ],
    )?;
    let sim = sim(4, Duration::from_millis(200)).await?;
    let agents = (0..4)
        .map(|i| {
            let name = format!("sim-{i}");
            agent(&sim, &name, test_link(hubs.api_addresses(), &name))
        })
        .collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = (0..4).map(|i| format!("sim-{i}")).collect();
    wait_state(&hubs, "every cluster Healthy at release 1", |s| {
        names.iter().all(|c| healthy_at(s, c, &first))
    })
    .await?;

    repo.write(
        "flotilla.yaml",
        &SPEC.replace("release: \"1\"", "release: \"2\""),
    )?;
    let second = repo.commit("release 2")?;
    // Kill the leader while the second wave is under way: the first wave passed, sim-1 has
    // been given release 2 and the wave has not passed yet.
    wait_state(&hubs, "the second wave under way", |s| {
        newest_rollout(s, "prod").is_some_and(|(_, r)| {
            r.to.commit == second
                && r.status == RolloutStatus::Running
                && r.current == 1
                && r.clusters.contains_key("sim-1")
        })
    })
    .await?;
    let leader = hubs.leader().await?;
    hubs.kill(leader)?;
    let state = wait_state(&hubs, "the rollout completed under a new leader", |s| {
        newest_rollout(s, "prod")
            .is_some_and(|(_, r)| r.to.commit == second && r.status == RolloutStatus::Completed)
    })
    .await?;
    let new_leader = hubs.leader().await?;
    assert_ne!(new_leader, leader);
    wait_state(&hubs, "every cluster Healthy at release 2", |s| {
        names.iter().all(|c| healthy_at(s, c, &second))
    })
    .await?;
    let (_, rollout) = newest_rollout(&state, "prod").context("the rollout")?;
    assert_eq!(
        rollout
            .waves
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>(),
        ["first", "second", "remaining"]
    );
    for (index, wave) in rollout.waves.iter().enumerate() {
        let healthy = wave.healthy_at.context("every wave soaked")?;
        let done = wave.done_at.context("every wave passed")?;
        assert!(
            done.0 >= healthy.0 + wave.soak_ms,
            "wave {index} cut its soak short"
        );
        if let Some(next) = rollout.waves.get(index + 1) {
            let started = next.started_at.context("every wave started")?;
            assert!(
                started >= done,
                "wave {} started before wave {index} passed",
                index + 1
            );
        }
    }

    for agent in agents {
        rollout::stop_agent(agent).await;
    }
    // What the survivor had applied, read just before it stops: the replay must reach it and
    // reproduce that state exactly (the log's stored commit index, written without an fsync,
    // may lag behind it after the SIGKILL).
    let (applied, applied_state) = flotilla_hub::node::GroupClient::new(&hubs.peers[&new_leader])?
        .read_state(false)
        .await?;
    for id in hubs.running() {
        hubs.kill(id)?;
    }
    // Every entry of the survivor's log: a cluster holds release 2 only once the rollout gave
    // it, in a wave that had begun, and waves move one at a time.
    let mut last_wave = 0;
    let mut commands = 0;
    let mut at_applied = None;
    let replayed = log::replay_log(
        &hubs.data_dir(new_leader),
        new_leader,
        applied,
        |index, command, state| {
            commands += 1;
            if index <= applied {
                at_applied = Some(state.clone());
            }
            let Some((_, rollout)) =
                newest_rollout(state, "prod").filter(|(_, r)| r.to.commit == second)
            else {
                for name in &names {
                    assert_ne!(
                        rollout::assigned(state, name).as_deref(),
                        Some(second.as_str()),
                        "entry {index} ({}): {name} has release 2 before any rollout of it",
                        command.kind()
                    );
                }
                return;
            };
            assert!(
                rollout.current <= last_wave + 1,
                "entry {index} ({}): wave {last_wave} to {}",
                command.kind(),
                rollout.current
            );
            last_wave = rollout.current;
            for name in &names {
                if rollout::assigned(state, name).as_deref() != Some(second.as_str()) {
                    continue;
                }
                let progress = rollout.clusters.get(name).unwrap_or_else(|| {
                    panic!(
                        "entry {index} ({}): {name} has release 2 not given by the rollout",
                        command.kind()
                    )
                });
                assert!(
                    progress.wave <= rollout.current,
                    "entry {index}: {name} of wave {} before that wave began",
                    progress.wave
                );
                assert!(
                    rollout.waves[progress.wave].clusters.contains(name),
                    "entry {index}: {name} given release 2 outside its wave"
                );
            }
        },
    )?;
    // The replay went through every entry from the founding snapshot to the commit index
    // (`replay_log` fails naming any gap after the snapshot), so the checks above saw every
    // state the node applied, the whole rollout of release 2 included, from before it began
    // to its completion.
    replayed.whole()?;
    eprintln!(
        "replayed entries {}..={} of node {new_leader}'s log: {} entries, {commands} commands; \
         it had applied {applied}, its stored commit index is {}",
        replayed.snapshot + 1,
        replayed.last,
        replayed.entries,
        replayed.commit
    );
    assert_eq!(replayed.entries, replayed.last - replayed.snapshot);
    assert!(
        replayed.last >= applied,
        "the replay stopped at entry {}, before entry {applied} the node had applied",
        replayed.last
    );
    assert_eq!(
        at_applied.context("no command replayed")?.hash()?,
        applied_state.hash()?,
        "the replay does not reproduce the state node {new_leader} had applied at {applied}"
    );
    assert!(
        newest_rollout(&replayed.at_snapshot, "prod").is_none(),
        "the replay started after a rollout had begun"
    );
    let (_, replayed_rollout) =
        newest_rollout(&replayed.state, "prod").context("the replayed log's rollout")?;
    assert_eq!(replayed_rollout.to.commit, second);
    assert_eq!(replayed_rollout.status, RolloutStatus::Completed);
    // `current` equals the number of waves once every wave passed; the replay saw it step
    // there one wave at a time.
    assert_eq!(
        last_wave,
        rollout.waves.len(),
        "the replay did not see every wave pass"
    );
    Ok(())
}
