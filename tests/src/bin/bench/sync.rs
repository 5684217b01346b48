//! The agent protocol on loopback: a 3-node group of real `flotilla-hub` processes (default
//! timers and sync settings) with mutual TLS and a group CA, simulated clusters each with an
//! in-process agent (engine and hub link, as `flotilla-agent run` builds them) registered with
//! a bootstrap token and streaming with its client certificate, as in production. `--insecure`
//! runs the same without TLS, for comparison.
//!
//! Figures:
//! - `fanout`: with every agent connected, from proposing a revision's assignment to each
//!   cluster's health recorded Applied and Healthy in the leader's state (push, chunks, apply
//!   to the simulator, report, batch, raft);
//! - `bundleReceivedMs`, `bundleAppliedMs`, `bundleHealthyOnAgentMs`: the same start to the
//!   agent's engine starting to apply the bundle (it arrived whole), to its `Applied` event and
//!   to its health turning Healthy;
//! - `failover`: SIGKILL of the node holding the most streams; per moved agent, the time until it
//!   streams with another node, and what it received meanwhile (bundles, chunks, messages,
//!   bytes; nothing changed, so no bundle should come);
//! - `offline_after_agent_exit`: agents that go away (stream closed, as at a process exit);
//!   time until each cluster is offline in the state;
//! - `offline_after_leader_death`: agents that know only the leader; SIGKILL of the leader;
//!   time until each cluster is offline on the survivors (election plus the new leader's wait).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_agent::Event;
use flotilla_agent::hub::LinkStats;
use flotilla_hub::state::health::{Health, HealthKey};
use flotilla_hub::state::source::{Blob, RevisionRef};
use flotilla_hub::state::{Command, State, Timestamp};
use flotilla_sim::{Sim, SimConfig};
use flotilla_testkit::hub_group::HubGroup;
use flotilla_testkit::linked_agent::{AgentAccess, LinkedAgent, shutdown_all};
use serde_json::{Value, json};

use crate::common::{config_maps, default_hub_bin};
use flotilla_testkit::protocol::render_entries;

/// Options of `bench sync`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The `flotilla-hub` binary (default: next to this one).
    #[arg(long)]
    hub_bin: Option<PathBuf>,
    /// Simulated clusters, one agent each.
    #[arg(long, default_value_t = 20)]
    clusters: usize,
    /// ConfigMaps per cluster's bundle (plus its Namespace).
    #[arg(long, default_value_t = 10)]
    objects: usize,
    /// Agents stopped for the offline-after-exit figure, and pinned to the leader for the
    /// offline-after-leader-death figure.
    #[arg(long, default_value_t = 5)]
    offline: usize,
    /// Run the group and the agents with `--insecure` (no TLS, no registration).
    #[arg(long)]
    insecure: bool,
}

/// How long the group may take to agree on a leader.
const ELECTION_WAIT: Duration = Duration::from_secs(20);

fn cluster_name(i: usize) -> String {
    format!("sim-{i}")
}

/// Records a rendered revision with one bundle for each of `clusters`, and assigns it.
/// Returns the bundle hashes and the moment the assignment was proposed.
async fn release(
    group: &HubGroup,
    clusters: &[String],
    objects: usize,
) -> anyhow::Result<(BTreeMap<String, flotilla_core::ContentHash>, Instant)> {
    let revision = RevisionRef {
        source: "origin".into(),
        commit: "c1".into(),
    };
    let mut per_cluster = BTreeMap::new();
    let mut blobs = BTreeMap::new();
    let mut hashes = BTreeMap::new();
    for cluster in clusters {
        let rendered = config_maps(objects, &json!({"cluster": cluster}))?;
        let blob = Blob::from_content(&rendered.to_blob())?;
        per_cluster.insert(
            cluster.clone(),
            BTreeMap::from([("bench".to_owned(), blob.hash)]),
        );
        hashes.insert(cluster.clone(), blob.hash);
        blobs.insert(blob.hash, blob);
    }
    group
        .propose(&Command::RecordFetch {
            source: revision.source.clone(),
            url: "file:///bench".into(),
            commit: revision.commit.clone(),
            at: Timestamp(2),
        })
        .await?;
    let blobs: Vec<Blob> = blobs.into_values().collect();
    group.put_content(&blobs).await?;
    for entry in render_entries(&revision, per_cluster, &blobs, Timestamp(3))? {
        group.propose(&entry).await?;
    }
    let start = Instant::now();
    group
        .propose(&Command::AssignRevision {
            clusters: clusters.to_vec(),
            revision,
            at: Timestamp(4),
        })
        .await?;
    Ok((hashes, start))
}

async fn register(group: &HubGroup, clusters: &[String]) -> anyhow::Result<()> {
    for cluster in clusters {
        group
            .propose(&Command::RegisterCluster {
                name: cluster.clone(),
                labels: BTreeMap::new(),
                at: Timestamp(1),
            })
            .await?;
    }
    Ok(())
}

/// When the engine started applying the bundle (it arrived whole), when it was applied and
/// when the engine judged it Healthy.
async fn apply_times(
    mut reports: tokio::sync::broadcast::Receiver<flotilla_agent::Report>,
) -> anyhow::Result<[Instant; 3]> {
    let (mut started, mut applied) = (None, None);
    loop {
        let report = tokio::time::timeout(Duration::from_secs(60), reports.recv()).await??;
        let now = Instant::now();
        match &report.event {
            Event::Applying { .. } => started = Some(now),
            Event::Applied { .. } => applied = Some(now),
            Event::HealthChanged(h) if h.health == Health::Healthy => {
                if let Some(applied) = applied {
                    return Ok([started.unwrap_or(applied), applied, now]);
                }
            }
            _ => {}
        }
    }
}

/// Starts an agent for each of `clusters` streaming from `hubs`: registered with a bootstrap
/// token each and keeping its certificate under `state_root`, unless the group is insecure.
async fn start_agents(
    group: &HubGroup,
    sim: &Sim,
    clusters: &[String],
    hubs: &[String],
    state_root: &Path,
) -> anyhow::Result<Vec<LinkedAgent>> {
    let mut agents = Vec::with_capacity(clusters.len());
    for cluster in clusters {
        let agent = match group.ca_pem() {
            Some(ca_pem) => {
                let token = group.bootstrap_token(cluster).await?;
                let state_dir = state_root.join(cluster);
                let access = AgentAccess::Tls {
                    ca_pem,
                    token: &token,
                    state_dir: &state_dir,
                };
                LinkedAgent::start(sim, cluster, hubs.to_vec(), access).await?
            }
            None => LinkedAgent::start(sim, cluster, hubs.to_vec(), AgentAccess::Insecure).await?,
        };
        agents.push(agent);
    }
    Ok(agents)
}

/// Polls node `id`'s state every 20 ms until `done` holds for every cluster in `pending`,
/// returning each cluster's time since `start`.
async fn wait_each(
    group: &HubGroup,
    id: u64,
    start: Instant,
    mut pending: Vec<String>,
    done: impl Fn(&State, &str) -> bool,
) -> anyhow::Result<Vec<Duration>> {
    let deadline = start + Duration::from_secs(60);
    let mut times = Vec::new();
    while !pending.is_empty() {
        if let Ok(state) = group.state(id).await {
            let elapsed = start.elapsed();
            pending.retain(|cluster| {
                let reached = done(&state, cluster);
                if reached {
                    times.push(elapsed);
                }
                !reached
            });
        }
        if Instant::now() > deadline {
            bail!("still waiting after 60 s for {pending:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(times)
}

fn millis(mut times: Vec<Duration>) -> Value {
    times.sort();
    let pick = |q: f64| {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        times.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    json!({"count": times.len(), "p50": pick(0.5), "max": pick(1.0)})
}

fn online(state: &State, cluster: &str) -> bool {
    state.clusters.get(cluster).is_some_and(|c| c.online)
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Value> {
    let bin = match args.hub_bin {
        Some(bin) => bin,
        None => default_hub_bin()?,
    };
    if args.offline * 2 > args.clusters {
        bail!("--offline must be at most half of --clusters");
    }
    let sim = Sim::start(SimConfig {
        clusters: args.clusters + args.offline,
        ..SimConfig::default()
    })
    .await?;

    let agents_dir = tempfile::tempdir()?;

    // Fan-out, then failover and agent exits, on one group.
    let mut group = HubGroup::start(&bin, 3, args.insecure)?;
    let leader = group.leader(ELECTION_WAIT).await?;
    let clusters: Vec<String> = (0..args.clusters).map(cluster_name).collect();
    let hubs = group.apis();
    register(&group, &clusters).await?;
    let mut agents = start_agents(&group, &sim, &clusters, &hubs, agents_dir.path()).await?;
    wait_each(&group, leader, Instant::now(), clusters.clone(), online).await?;
    let engine_times: Vec<_> = agents
        .iter()
        .map(|a| tokio::spawn(apply_times(a.engine.subscribe())))
        .collect();
    let (hashes, assigned) = release(&group, &clusters, args.objects).await?;
    let fanout = wait_each(
        &group,
        leader,
        assigned,
        clusters.clone(),
        |state, cluster| {
            let key = HealthKey {
                cluster: cluster.to_owned(),
                bundle: "bench".into(),
            };
            state.health.get(&key).is_some_and(|r| {
                r.applied.as_ref() == hashes.get(cluster) && r.health == Health::Healthy
            })
        },
    )
    .await?;
    let (mut received, mut applied, mut healthy) = (Vec::new(), Vec::new(), Vec::new());
    for times in engine_times {
        let [start, end, judged] = times.await??;
        received.push(start.saturating_duration_since(assigned));
        applied.push(end.saturating_duration_since(assigned));
        healthy.push(judged.saturating_duration_since(assigned));
    }

    let mut per_node: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, agent) in agents.iter().enumerate() {
        let address = agent.link.watch_connection().borrow().clone();
        if let Some(node) = address.and_then(|c| group.node_at(&c.address)) {
            per_node.entry(node).or_default().push(i);
        }
    }
    let (victim, moved) = per_node
        .into_iter()
        .max_by_key(|(_, agents)| agents.len())
        .context("no agent is connected")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before: Vec<LinkStats> = moved.iter().map(|i| agents[*i].link.stats()).collect();
    let victim_api = group.api(victim).to_owned();
    group.kill(victim)?;
    let killed = Instant::now();
    let waits = moved.iter().map(|i| {
        let mut watch = agents[*i].link.watch_connection();
        let cluster = agents[*i].cluster.clone();
        let victim_api = victim_api.clone();
        async move {
            let moved_on = tokio::time::timeout(
                Duration::from_secs(30),
                watch.wait_for(|c| c.as_ref().is_some_and(|c| c.address != victim_api)),
            )
            .await;
            match moved_on {
                Ok(Ok(_)) => Ok(killed.elapsed()),
                _ => bail!("agent of {cluster} did not fail over within 30 s"),
            }
        }
    });
    let reconnect = futures::future::join_all(waits)
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after: Vec<LinkStats> = moved.iter().map(|i| agents[*i].link.stats()).collect();
    let delta = |f: fn(&LinkStats) -> u64| -> u64 {
        before.iter().zip(&after).map(|(b, a)| f(a) - f(b)).sum()
    };
    let failover = json!({
        "victim": victim,
        "agentsMoved": moved.len(),
        "reconnectMs": millis(reconnect),
        "bundlesResent": delta(|s| s.bundles_received),
        "chunksResent": delta(|s| s.chunks_received),
        "removals": delta(|s| s.removals_received),
        "messagesReceived": delta(|s| s.messages_received),
        "heartbeatsReceived": delta(|s| s.heartbeats_received),
        "bytesReceived": delta(|s| s.bytes_received),
        "messagesSent": delta(|s| s.messages_sent),
        "bytesSent": delta(|s| s.bytes_sent),
        "windowMs": 1000,
    });

    let survivor = *group.running().first().context("survivors")?;
    let leaving: Vec<LinkedAgent> = agents.drain(..args.offline).collect();
    let gone: Vec<String> = leaving.iter().map(|a| a.cluster.clone()).collect();
    let exited = Instant::now();
    for agent in leaving {
        agent.link.shutdown().await;
    }
    let after_exit = wait_each(&group, survivor, exited, gone, |s, c| !online(s, c)).await?;
    shutdown_all(agents).await;
    drop(group);

    // Agents that know only the leader, which dies.
    let mut group = HubGroup::start(&bin, 3, args.insecure)?;
    let leader = group.leader(ELECTION_WAIT).await?;
    let pinned: Vec<String> = (args.clusters..args.clusters + args.offline)
        .map(cluster_name)
        .collect();
    register(&group, &pinned).await?;
    let leader_only = vec![group.api(leader).to_owned()];
    let pinned_agents =
        start_agents(&group, &sim, &pinned, &leader_only, agents_dir.path()).await?;
    wait_each(&group, leader, Instant::now(), pinned.clone(), online).await?;
    group.kill(leader)?;
    let died = Instant::now();
    let survivor = *group.running().first().context("survivors")?;
    let after_death = wait_each(&group, survivor, died, pinned, |s, c| !online(s, c)).await?;
    shutdown_all(pinned_agents).await;
    let transport = if group.is_secure() {
        "mutual TLS between nodes; agents registered with bootstrap tokens, streaming with client certificates"
    } else {
        "plain (--insecure)"
    };
    drop(group);
    sim.shutdown().await;

    Ok(json!({
        "area": "sync",
        "transport": transport,
        "clusters": args.clusters,
        "objectsPerBundle": args.objects + 1,
        "fanoutMs": millis(fanout),
        "bundleReceivedMs": millis(received),
        "bundleAppliedMs": millis(applied),
        "bundleHealthyOnAgentMs": millis(healthy),
        "failover": failover,
        "offlineAfterAgentExitMs": millis(after_exit),
        "offlineAfterLeaderDeathMs": millis(after_death),
    }))
}
