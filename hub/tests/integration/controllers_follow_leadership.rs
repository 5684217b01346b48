//! Leader-only controllers run on the leader and nowhere else: when leadership moves, the old
//! leader's controllers stop and the new leader's start, and the new leader carries on following
//! the repository, brought in by a webhook that reached a follower.

use crate::support::fleet as support;
use crate::support::ports::free_address;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use flotilla_consensus::transport::faults::FaultPlan;
use flotilla_hub::config::{Bootstrap, NodeConfig, Timing};
use flotilla_hub::controller::source::SourceConfig;
use flotilla_hub::server::{Hub, HubConfig};
use std::sync::Arc;
use support::{FLEET_SPEC, assigned, http, inventory_file, rendered, wait_for};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(20);

struct Group {
    hubs: BTreeMap<u64, Hub>,
    faults: Arc<FaultPlan>,
    _dirs: Vec<TempDir>,
}

impl Group {
    async fn start(url: &str) -> Result<Self> {
        let mut peers = BTreeMap::new();
        for id in 1..=3 {
            peers.insert(id, free_address()?);
        }
        let (inventory_dir, clusters) = inventory_file()?;
        let mut dirs = vec![inventory_dir];
        let mut hubs = BTreeMap::new();
        let faults = Arc::new(FaultPlan::seeded(7));
        for id in 1..=3 {
            let data = tempfile::tempdir()?;
            let mut node = NodeConfig::new(id, data.path(), peers[&id].clone());
            node.bootstrap = Bootstrap::Members(peers.clone());
            node.faults = faults.clone();
            node.timing = Timing {
                tick: Duration::from_millis(20),
                election_ticks: 10,
                heartbeat_ticks: 2,
                request_timeout: Duration::from_secs(3),
            };
            let mut config = HubConfig::new(node);
            config.api_listen = "127.0.0.1:0".into();
            config.http_listen = "127.0.0.1:0".into();
            config.clusters_file = Some(clusters.clone());
            let mut source = SourceConfig::new(url, "main");
            // Only a term's first fetch and webhooks bring commits in.
            source.poll_interval = Duration::from_secs(3600);
            config.source = Some(source);
            hubs.insert(id, Hub::start(config).await?);
            dirs.push(data);
        }
        Ok(Group {
            hubs,
            faults,
            _dirs: dirs,
        })
    }

    /// Waits until exactly one node runs controllers, other than `not`, and it leads in its
    /// own view and in the view of every node that is not `not`.
    async fn controllers_on_one_leader(&self, not: Option<u64>) -> Result<u64> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let running: Vec<u64> = self
                .hubs
                .iter()
                .filter(|(_, hub)| !hub.watch_controllers().borrow().controllers.is_empty())
                .map(|(id, _)| *id)
                .collect();
            let leaders: Vec<Option<u64>> = self
                .hubs
                .iter()
                .filter(|(id, _)| Some(**id) != not)
                .map(|(_, hub)| hub.node().leadership().leader)
                .collect();
            if let [only] = running.as_slice()
                && leaders.iter().all(|l| *l == Some(*only))
                && Some(*only) != not
            {
                return Ok(*only);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("controllers run on {running:?}, leaders known {leaders:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn shutdown(self) {
        for hub in self.hubs.values() {
            hub.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_run_only_on_the_leader_and_move_with_leadership() -> Result<()> {
    support::init_tracing();
    let (repo, first) = support::with_fleet()?;
    let group = Group::start(&repo.url()).await?;
    let leader = group.controllers_on_one_leader(None).await?;
    let running = group.hubs[&leader].watch_controllers().borrow().clone();
    for name in ["inventory", "source", "render", "rollout", "retention"] {
        assert!(
            running.controllers.contains(name),
            "{name} not running: {running:?}"
        );
    }
    let term = running.term;
    for hub in group.hubs.values() {
        wait_for(hub, "the first commit everywhere", WAIT, |s| {
            assigned(s, "dev-1").as_deref() == Some(first.as_str())
        })
        .await?;
    }

    // Cut the leader off: it loses leadership (check-quorum) while it keeps running, and its
    // controllers stop; the others elect a leader whose controllers start.
    let others: Vec<u64> = group
        .hubs
        .keys()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    let committed = group.hubs[&leader].node().status().await?.commit;
    group.faults.partition(&[leader], &others);
    let new_leader = group.controllers_on_one_leader(Some(leader)).await?;
    assert!(
        group.hubs[&leader]
            .watch_controllers()
            .borrow()
            .controllers
            .is_empty(),
        "the old leader still runs controllers"
    );
    assert_ne!(group.hubs[&leader].node().leadership().leader, Some(leader));
    let moved = group.hubs[&new_leader].watch_controllers().borrow().clone();
    assert!(moved.term > term, "{moved:?} after term {term}");
    // It started only once it had applied everything committed under the old leader.
    assert!(
        moved.from_index >= committed,
        "controllers started at index {} before applying {committed}",
        moved.from_index
    );
    group.faults.heal();

    // The new leader follows the repository: a webhook to the old leader, now a follower, is
    // handed to it; its own mirror fetches, renders and assigns.
    repo.write(
        "flotilla.yaml",
        &FLEET_SPEC.replace("hello", "after failover"),
    )?;
    let second = repo.commit("after failover")?;
    let (code, answer) = http(
        group.hubs[&leader].http_address(),
        "POST",
        "/webhook",
        &[("X-GitHub-Event", "push")],
        br#"{"ref":"refs/heads/main"}"#,
    )
    .await?;
    assert_eq!(code, 202, "{answer}");
    wait_for(
        &group.hubs[&leader],
        "the new commit, seen on the old leader",
        WAIT,
        |s| rendered(s, &second) && assigned(s, "dev-1").as_deref() == Some(second.as_str()),
    )
    .await?;
    group.shutdown().await;
    Ok(())
}
