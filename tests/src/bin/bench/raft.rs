//! The hub's consensus core on loopback: a 3-node group of real `flotilla-hub` processes with
//! default timers, with mutual TLS between the nodes and a group CA as in production
//! (`--insecure`: plain, for comparison). Measures commit latency of small proposals (sequential, through the leader's
//! admin API), throughput with many proposals in flight (raft batches them into one append and
//! one fsync per ready), and the time from SIGKILL of the leader to the first commit on a new
//! leader.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::default_hub_bin;
use anyhow::{Context, bail};
use flotilla_hub::node::GroupClient;
use flotilla_hub::state::{Command, Timestamp};
use flotilla_testkit::hub_group::HubGroup;
use serde_json::{Value, json};

/// Options of `bench raft`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The `flotilla-hub` binary (default: next to this one).
    #[arg(long)]
    hub_bin: Option<PathBuf>,
    /// Sequential proposals timed for the latency figure.
    #[arg(long, default_value_t = 2000)]
    proposals: usize,
    /// Proposals in flight for the throughput figures.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Seconds per throughput run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Leader kills for the failover figure.
    #[arg(long, default_value_t = 5)]
    kills: usize,
    /// Run the group with `--insecure` (no TLS) instead of mutual TLS with a group CA.
    #[arg(long)]
    insecure: bool,
}

fn small_command(name: String) -> Command {
    Command::RegisterCluster {
        name,
        labels: BTreeMap::from([("env".to_owned(), "bench".to_owned())]),
        at: Timestamp(0),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Value> {
    let bin = match args.hub_bin {
        Some(bin) => bin,
        None => default_hub_bin()?,
    };
    let mut group = HubGroup::start(&bin, 3, args.insecure)?;
    let leader = group.leader(Duration::from_secs(20)).await?;

    let latency = commit_latency(group.client(leader)?, args.proposals).await?;
    let mut throughput = Vec::new();
    for &inflight in &args.concurrency {
        let rate =
            commit_throughput(&group, leader, inflight, Duration::from_secs(args.seconds)).await?;
        throughput.push(json!({ "in_flight": inflight, "commits_per_second": rate }));
    }
    let failovers = failover(&mut group, args.kills).await?;
    let mut sorted = failovers.clone();
    sorted.sort();
    Ok(json!({
        "area": "raft",
        "group": "3 flotilla-hub processes on loopback, default timers (tick 50 ms, election 10 ticks, heartbeat 2 ticks)",
        "transport": transport(&group),
        "commit_latency_ms": latency,
        "throughput": throughput,
        "leader_kill_to_first_commit_ms": {
            "runs": failovers.iter().map(|d| d.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
            "p50": percentile(&sorted, 50.0),
            "max": percentile(&sorted, 100.0),
        },
    }))
}

/// How the group's nodes and this bench talk.
fn transport(group: &HubGroup) -> &'static str {
    if group.is_secure() {
        "mutual TLS, group CA from flotilla-hub ca create"
    } else {
        "plain (--insecure)"
    }
}

/// Sequential proposals to the leader, each timed from request to reply (applied on the leader).
async fn commit_latency(mut client: GroupClient, count: usize) -> anyhow::Result<Value> {
    // Warm the connection up.
    client.propose(&small_command("warmup".into())).await?;
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let command = small_command(format!("latency-{i}"));
        let start = Instant::now();
        client.propose(&command).await?;
        samples.push(start.elapsed());
    }
    samples.sort();
    Ok(json!({
        "proposals": count,
        "p50": percentile(&samples, 50.0),
        "p99": percentile(&samples, 99.0),
        "max": percentile(&samples, 100.0),
    }))
}

/// `inflight` concurrent proposers for `duration`; commits per second.
async fn commit_throughput(
    group: &HubGroup,
    leader: u64,
    inflight: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for worker in 0..inflight {
        let mut client = group.client(leader)?;
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                let command = small_command(format!("tp-{inflight}-{worker}-{i}"));
                i += 1;
                if client.propose(&command).await.is_ok() {
                    done += 1;
                }
            }
            done
        }));
    }
    let start = Instant::now();
    let mut total = 0;
    for task in tasks {
        total += task.await?;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// SIGKILL the leader, then time until a proposal through a survivor commits; restart the
/// killed node and repeat.
async fn failover(group: &mut HubGroup, kills: usize) -> anyhow::Result<Vec<Duration>> {
    let mut runs = Vec::new();
    for round in 0..kills {
        let leader = group.leader(Duration::from_secs(20)).await?;
        let survivor = group
            .running()
            .into_iter()
            .find(|id| *id != leader)
            .context("no survivor")?;
        let mut client = group.client(survivor)?;
        client.status().await?;
        let killed_at = Instant::now();
        group.kill(leader)?;
        let mut i = 0;
        loop {
            let command = small_command(format!("failover-{round}-{i}"));
            i += 1;
            if client.propose(&command).await.is_ok() {
                break;
            }
            if killed_at.elapsed() > Duration::from_secs(30) {
                bail!("no commit within 30 s of killing leader {leader}");
            }
        }
        runs.push(killed_at.elapsed());
        group.spawn(leader)?;
        // Let the restarted node catch up before the next round.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(runs)
}
