//! Thousands of agents on one hub group: a 3-node group of real `flotilla-hub` processes (TLS,
//! a group CA, default timers) and thin agents (`flotilla_testkit::swarm`: the agent's real
//! link — registration with a bootstrap token, a client certificate, hellos, chunks checked
//! against their hash, acks, reports — with bundles kept in memory) spread over several
//! processes (`bench swarm-agents`, fed its share on stdin), so that no process nears the
//! descriptor limit.
//!
//! Figures:
//! - `fanout`: from proposing the assignment of a new revision (one bundle per cluster, its
//!   ConfigMaps naming the cluster) to each agent holding the new bundle (received whole and
//!   checked), p50/p99/max over the agents, by the wall clock every process shares;
//! - `hubs`: each node's RSS before the agents came and with every agent streaming, the growth
//!   per agent, and its CPU during the fan-out; the leader's CPU per cluster;
//! - `renderEntryBytes`, `renderEntries`, `contentPutMs`: the largest raft entry recording the
//!   rendered revision (hashes and object ids; the content is not in the log), how many entries
//!   the render took, and how long storing its blobs on the three nodes took;
//! - set-up times: registering the clusters, issuing tokens, the agents registering and
//!   connecting.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use flotilla_hub::state::source::{Blob, RevisionRef};
use flotilla_hub::state::{Command, Timestamp};
use flotilla_testkit::hub_group::HubGroup;
use flotilla_testkit::swarm::{self, AgentsPlan};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::common::{config_maps, default_hub_bin, emit, spawn_worker};
use flotilla_testkit::protocol::render_entries;

/// Options of `bench swarm`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The `flotilla-hub` binary (default: next to this one).
    #[arg(long)]
    hub_bin: Option<PathBuf>,
    /// Thin agents, one cluster each.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Agents per process.
    #[arg(long, default_value_t = 2500)]
    per_process: usize,
    /// ConfigMaps in each cluster's bundle (plus its Namespace).
    #[arg(long, default_value_t = 10)]
    objects: usize,
    /// Registrations in flight at once per process.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

/// Longest the agents may take to register and connect.
const CONNECT_WAIT: Duration = Duration::from_secs(900);
/// Longest the fan-out may take.
const FANOUT_WAIT: Duration = Duration::from_secs(300);
/// Longest the agents may take to stream again after the leader's kill, and a new node to
/// catch up.
const FAILOVER_WAIT: Duration = Duration::from_secs(120);
/// The nodes' config: the agents' listener takes every agent from one address.
const CONNECTIONS: &str = "connections:\n  api:\n    maxConnectionsPerPeer: 16384\n";

/// Longest an election may take.
const ELECTION_WAIT: Duration = Duration::from_secs(20);

/// `bench swarm-agents`: runs the thin agents of the plan read on stdin, printing one JSON line
/// per event on stdout (`registered`, `connected`, then each bundle received and each change of
/// how many stream), until killed.
pub(crate) async fn agents() -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin().lock().read_line(&mut input)?;
    let (plan, concurrency): (AgentsPlan, usize) =
        serde_json::from_str(&input).context("the plan on stdin")?;
    let started = Instant::now();
    let on_bundle = Arc::new(|cluster: &str, revision: &flotilla_agent::BundleRevision| {
        emit(&json!({"bundle": cluster, "revision": revision.revision, "atMs": swarm::now_ms()}));
    });
    let links = swarm::start_agents(&plan, concurrency, on_bundle).await?;
    emit(&json!({"registered": links.len(), "ms": started.elapsed().as_millis() as u64}));
    loop {
        let connected = swarm::connected(&links);
        if connected == links.len() {
            emit(&json!({"connected": connected, "ms": started.elapsed().as_millis() as u64}));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // From now on, every change of how many stream (a hub node killed, the agents moving).
    let mut streaming = links.len();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = swarm::connected(&links);
        if now != streaming {
            streaming = now;
            emit(&json!({"streaming": now, "atMs": swarm::now_ms()}));
        }
    }
}

fn cluster_name(i: usize) -> String {
    format!("swarm-{i}")
}

/// Release `n` rendered for `clusters`: its blobs, the entries recording it (fetch, render
/// parts) and the one assigning it.
struct Release {
    blobs: Vec<Blob>,
    record: Vec<Command>,
    assign: Command,
}

fn release(clusters: &[String], objects: usize, n: u32) -> anyhow::Result<Release> {
    let revision = RevisionRef {
        source: "origin".into(),
        commit: format!("c{n}"),
    };
    let mut per_cluster = BTreeMap::new();
    let mut blobs = BTreeMap::new();
    for cluster in clusters {
        let content = config_maps(
            objects,
            &json!({"cluster": cluster, "release": n.to_string()}),
        )?;
        let blob = Blob::from_content(&content.to_blob())?;
        per_cluster.insert(
            cluster.clone(),
            BTreeMap::from([("bench".to_owned(), blob.hash)]),
        );
        blobs.insert(blob.hash, blob);
    }
    let blobs: Vec<Blob> = blobs.into_values().collect();
    let mut record = vec![Command::RecordFetch {
        source: revision.source.clone(),
        url: "file:///bench".into(),
        commit: revision.commit.clone(),
        at: Timestamp(u64::from(n) * 10),
    }];
    record.extend(render_entries(
        &revision,
        per_cluster,
        &blobs,
        Timestamp(u64::from(n) * 10 + 1),
    )?);
    Ok(Release {
        blobs,
        record,
        assign: Command::AssignRevision {
            clusters: clusters.to_vec(),
            revision,
            at: Timestamp(u64::from(n) * 10 + 2),
        },
    })
}

/// Resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// CPU time (user + system) a process has used, in milliseconds.
fn cpu_ms(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit(") ")
        .next()
        .context("no /proc stat")?
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // USER_HZ is 100 on Linux.
    Ok(ticks * 10)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Value> {
    let bin = match args.hub_bin {
        Some(bin) => bin,
        None => default_hub_bin()?,
    };
    // Every agent of this bench connects from 127.0.0.1, which the agents' listener limits to
    // 4,096 connections per address by default: when a node dies its agents move to the
    // other two, more than that each at 10,000.
    let mut group = HubGroup::start_with_config(&bin, 3, false, Some(CONNECTIONS))?;
    let ca_pem = group.ca_pem().context("a TLS group has a CA")?.to_owned();
    let leader = group.leader(Duration::from_secs(20)).await?;
    let clusters: Vec<String> = (0..args.agents).map(cluster_name).collect();

    let started = Instant::now();
    let shared = &group;
    let registered: Vec<anyhow::Result<()>> = futures::stream::iter(clusters.iter().cloned())
        .map(|name| async move {
            shared
                .propose(&Command::RegisterCluster {
                    name,
                    labels: BTreeMap::new(),
                    at: Timestamp(1),
                })
                .await
        })
        .buffer_unordered(16)
        .collect()
        .await;
    registered.into_iter().collect::<anyhow::Result<()>>()?;
    let register_ms = started.elapsed().as_millis() as u64;

    let started = Instant::now();
    let tokens: Vec<anyhow::Result<(String, String)>> =
        futures::stream::iter(clusters.iter().cloned())
            .map(|name| async move {
                let token = shared.bootstrap_token(&name).await?;
                anyhow::Ok((name, token))
            })
            .buffer_unordered(16)
            .collect()
            .await;
    let tokens: Vec<(String, String)> = tokens.into_iter().collect::<anyhow::Result<_>>()?;
    let tokens_ms = started.elapsed().as_millis() as u64;

    let pids: BTreeMap<u64, u32> = group
        .running()
        .into_iter()
        .filter_map(|id| group.pid(id).map(|pid| (id, pid)))
        .collect();
    let rss_before: BTreeMap<u64, u64> = pids
        .iter()
        .map(|(id, pid)| Ok((*id, rss_kib(*pid)?)))
        .collect::<anyhow::Result<_>>()?;

    let state_root = tempfile::tempdir()?;
    let (tx, mut lines) = mpsc::unbounded_channel();
    let mut workers = Vec::new();
    let shares: Vec<usize> = tokens
        .chunks(args.per_process.max(1))
        .map(<[_]>::len)
        .collect();
    for (index, share) in tokens.chunks(args.per_process.max(1)).enumerate() {
        let plan = AgentsPlan {
            hubs: group.apis(),
            ca_pem: ca_pem.clone(),
            state_root: state_root.path().join(format!("process-{index}")),
            agents: share.to_vec(),
        };
        workers.push(spawn_worker(
            "swarm-agents",
            index,
            &(&plan, args.concurrency),
            tx.clone(),
        )?);
    }
    drop(tx);

    let started = Instant::now();
    let mut connected = 0;
    let mut registered_ms = 0;
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    while connected < args.agents {
        let (_, line) = tokio::time::timeout_at(deadline, lines.recv())
            .await
            .with_context(|| format!("{connected} of {} agents connected", args.agents))?
            .context("every worker process ended")?;
        if let Some(n) = line.get("connected").and_then(Value::as_u64) {
            connected += n as usize;
        }
        if let Some(ms) = line.get("ms").and_then(Value::as_u64)
            && line.get("registered").is_some()
        {
            registered_ms = registered_ms.max(ms);
        }
    }
    let connect_ms = started.elapsed().as_millis() as u64;
    // Hellos answered and first reports recorded.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_streaming: BTreeMap<u64, u64> = pids
        .iter()
        .map(|(id, pid)| Ok((*id, rss_kib(*pid)?)))
        .collect::<anyhow::Result<_>>()?;

    // Release 1: every agent receives its first bundle (not measured), then release 2.
    let mut figures = Vec::new();
    let mut blobs_held = Vec::new();
    for n in 1..=2 {
        let release = release(&clusters, args.objects, n)?;
        blobs_held.extend(release.blobs.iter().cloned());
        let mut entry_bytes = 0;
        for command in &release.record[1..] {
            entry_bytes = entry_bytes.max(command.encode()?.len());
        }
        let put = Instant::now();
        group.put_content(&release.blobs).await?;
        let content_ms = put.elapsed().as_millis() as u64;
        for command in &release.record {
            group.propose(command).await?;
        }
        let cpu_before: BTreeMap<u64, u64> = pids
            .iter()
            .map(|(id, pid)| Ok((*id, cpu_ms(*pid)?)))
            .collect::<anyhow::Result<_>>()?;
        let start_ms = swarm::now_ms();
        let revision = format!("origin@c{n}");
        group.propose(&release.assign).await?;
        let mut received: BTreeMap<String, i64> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + FANOUT_WAIT;
        while received.len() < args.agents {
            let (_, line) = tokio::time::timeout_at(deadline, lines.recv())
                .await
                .with_context(|| {
                    format!(
                        "release {n}: {} of {} agents received it",
                        received.len(),
                        args.agents
                    )
                })?
                .context("every worker process ended")?;
            let (Some(cluster), Some(at), Some(rev)) = (
                line.get("bundle").and_then(Value::as_str),
                line.get("atMs").and_then(Value::as_i64),
                line.get("revision").and_then(Value::as_str),
            ) else {
                continue;
            };
            if rev.ends_with(&format!("c{n}")) || rev == revision {
                received.insert(cluster.to_owned(), at);
            }
        }
        let cpu_after: BTreeMap<u64, u64> = pids
            .iter()
            .map(|(id, pid)| Ok((*id, cpu_ms(*pid)?)))
            .collect::<anyhow::Result<_>>()?;
        let mut latencies: Vec<u64> = received
            .values()
            .map(|at| (at - start_ms).max(0) as u64)
            .collect();
        latencies.sort_unstable();
        let cpu: BTreeMap<String, u64> = cpu_after
            .iter()
            .map(|(id, after)| (id.to_string(), after - cpu_before[id]))
            .collect();
        figures.push(json!({
            "release": n,
            "renderEntryBytes": entry_bytes,
            "renderEntries": release.record.len() - 1,
            "contentPutMs": content_ms,
            "fanoutMs": {
                "p50": percentile(&latencies, 50.0),
                "p99": percentile(&latencies, 99.0),
                "max": latencies.last().copied().unwrap_or(0),
            },
            "cpuMsByNode": cpu,
            "leaderCpuMsPerCluster": cpu_after[&leader].saturating_sub(cpu_before[&leader]) as f64
                / args.agents as f64,
        }));
    }
    let failover = failover(&mut group, leader, &mut lines, &shares, &blobs_held).await?;
    drop(workers);

    let hubs: Vec<Value> = pids
        .keys()
        .map(|id| {
            let (before, streaming) = (rss_before[id], rss_streaming[id]);
            json!({
                "node": id,
                "leader": *id == leader,
                "rssBeforeAgentsKiB": before,
                "rssStreamingKiB": streaming,
                "rssPerAgentKiB": (streaming.saturating_sub(before)) as f64 / args.agents as f64,
            })
        })
        .collect();
    let growth: u64 = pids
        .keys()
        .map(|id| rss_streaming[id].saturating_sub(rss_before[id]))
        .sum();
    Ok(json!({
        "agents": args.agents,
        "rssGrowthAllNodesKiBPerAgent": growth as f64 / args.agents as f64,
        "processes": args.agents.div_ceil(args.per_process.max(1)),
        "objectsPerBundle": args.objects + 1,
        "setupMs": {
            "registerClusters": register_ms,
            "issueTokens": tokens_ms,
            "agentsRegistered": registered_ms,
            "agentsConnected": connect_ms,
        },
        "hubs": hubs,
        "releases": figures,
        "failover": failover,
    }))
}

/// SIGKILL of the leader with every agent streaming: how long until every agent streams again
/// (from a worker's first report of fewer to its last of all), and how many bundles were sent
/// again meanwhile (none should be: the agents hold them). Then a new node joins: how long
/// until it has applied the leader's commit and serves every blob, byte for byte.
async fn failover(
    group: &mut HubGroup,
    leader: u64,
    lines: &mut mpsc::UnboundedReceiver<(usize, Value)>,
    shares: &[usize],
    blobs: &[Blob],
) -> anyhow::Result<Value> {
    let killed_ms = swarm::now_ms();
    group.kill(leader)?;
    let mut latest: BTreeMap<usize, (usize, i64)> = BTreeMap::new();
    let mut dipped: BTreeMap<usize, usize> = BTreeMap::new();
    let mut resent = 0usize;
    let deadline = tokio::time::Instant::now() + FAILOVER_WAIT;
    loop {
        let all = shares
            .iter()
            .enumerate()
            .all(|(i, share)| latest.get(&i).is_none_or(|(n, _)| n == share));
        if all && swarm::now_ms() - killed_ms > 2_000 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "agents streaming after the leader's kill: {latest:?} of {shares:?}"
        );
        let Ok(Some((index, line))) =
            tokio::time::timeout(Duration::from_millis(200), lines.recv()).await
        else {
            continue;
        };
        if line.get("bundle").is_some() {
            resent += 1;
        }
        if let (Some(n), Some(at)) = (
            line.get("streaming").and_then(Value::as_u64),
            line.get("atMs").and_then(Value::as_i64),
        ) {
            if (n as usize) < shares[index] {
                let drop = dipped.entry(index).or_default();
                *drop = (*drop).max(shares[index] - n as usize);
            }
            latest.insert(index, (n as usize, at));
        }
    }
    let recovered_ms = latest
        .values()
        .map(|(_, at)| at - killed_ms)
        .max()
        .unwrap_or(0);
    // Anything sent late still counts as resent.
    let settle = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some((_, line))) = tokio::time::timeout_at(settle, lines.recv()).await {
        if line.get("bundle").is_some() {
            resent += 1;
        }
    }
    let new_leader = group.leader(ELECTION_WAIT).await?;

    // A new id: past every running node and the killed one (still a member).
    let joiner = group
        .running()
        .into_iter()
        .chain([leader])
        .max()
        .unwrap_or(0)
        + 1;
    let address = group.join(joiner)?;
    let added = Instant::now();
    group
        .client(new_leader)?
        .add_member(joiner, &address)
        .await
        .context("adding the new node")?;
    let commit = group.client(new_leader)?.status().await?.commit;
    let deadline = tokio::time::Instant::now() + FAILOVER_WAIT;
    let (mut applied_ms, mut content_ms) = (None, None);
    // A blob once served right stays served (the state references it): each poll asks only
    // for those not yet seen, so polling does not compete with the fetch it measures.
    let mut unserved: Vec<Blob> = blobs.to_vec();
    while content_ms.is_none() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the new node did not catch up within {FAILOVER_WAIT:?}"
        );
        if applied_ms.is_none()
            && let Ok(status) = group.client(joiner)?.status().await
            && status.applied >= commit
        {
            applied_ms = Some(added.elapsed().as_millis() as u64);
        }
        if applied_ms.is_some() {
            let missing: HashSet<_> = group
                .content_missing(joiner, &unserved)
                .await?
                .into_iter()
                .collect();
            unserved.retain(|blob| missing.contains(&blob.hash));
            if unserved.is_empty() {
                content_ms = Some(added.elapsed().as_millis() as u64);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(json!({
        "killedLeader": leader,
        "newLeader": new_leader,
        // Per worker its largest drop, summed: about how many streams the kill broke.
        "agentsDropped": dipped.values().sum::<usize>(),
        "allStreamingAgainMs": recovered_ms,
        "bundlesResent": resent,
        "newNode": {
            "appliedLeadersCommitMs": applied_ms,
            "servesEveryBlobMs": content_ms,
            "blobs": blobs.len(),
        },
    }))
}
