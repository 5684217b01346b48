//! `bench`: measures Flotilla and prints its figures as JSON on stdout.
//!
//! Each area is a subcommand in its own module under `bench/`.

use clap::{Parser, Subcommand};

/// The products' allocator (see the hub's and the agent's `main`), so figures are theirs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "bench/agent.rs"]
mod agent;
#[path = "bench/common.rs"]
mod common;
#[path = "bench/dashboard.rs"]
mod dashboard;
#[path = "bench/e2e.rs"]
mod e2e;
#[path = "bench/helm.rs"]
mod helm;
#[path = "bench/push.rs"]
mod push;
#[path = "bench/raft.rs"]
mod raft;
#[path = "bench/render.rs"]
mod render;
#[path = "bench/sim.rs"]
mod sim;
#[path = "bench/swarm.rs"]
mod swarm;
#[path = "bench/sync.rs"]
mod sync;

/// Measures Flotilla; each area prints one JSON report on stdout.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Cli {
    #[command(subcommand)]
    area: Area,
}

#[derive(Debug, Subcommand)]
enum Area {
    /// The dashboard in headless Chromium against a synthetic fleet: load and update times.
    Dashboard(dashboard::Args),
    /// The Kubernetes API simulator at scale: its RSS and server-side apply latency.
    Sim(sim::Args),
    /// The hub's raft group: commit latency, throughput, leader failover.
    Raft(raft::Args),
    /// From a push webhook to every cluster assigned the new revision, inside one hub.
    Push(push::Args),
    /// The agent: applying a 100-object bundle (wall time, API requests) and its RSS.
    Agent(agent::Args),
    /// The agent protocol: fan-out, failover with nothing resent, time to offline.
    Sync(sync::Args),
    /// The whole chain: from a push webhook to every agent's applied report, and the floor.
    E2e(e2e::Args),
    /// Rendering a chart bundle for a fleet with per-cluster values: cold, cached, one changed.
    Helm(helm::Args),
    /// Rendering plain-manifest bundles for a large fleet: cold, compressed, one changed.
    Render(render::Args),
    /// Thousands of thin agents (the real link, bundles in memory) on a 3-node group.
    Swarm(swarm::Args),
    /// One process's share of `bench swarm`'s agents (its plan on stdin).
    #[command(hide = true)]
    SwarmAgents,
    /// One process's share of `bench e2e`'s agents (its plan on stdin).
    #[command(hide = true)]
    E2eAgents,
}

fn main() -> anyhow::Result<()> {
    let area = Cli::parse().area;
    // A worker process of `bench e2e` hosts hundreds of agents that each run alone in their
    // own cluster in production: one thread per worker process, so they do not pay for
    // waking each other across threads on the few cores the whole chain shares.
    let mut runtime = match area {
        Area::E2eAgents => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all().build()?.block_on(run(area))
}

async fn run(area: Area) -> anyhow::Result<()> {
    let report = match area {
        Area::Sim(args) => sim::run(args).await?,
        Area::Raft(args) => raft::run(args).await?,
        Area::Push(args) => push::run(args).await?,
        Area::Agent(args) => agent::run(args).await?,
        Area::Sync(args) => sync::run(args).await?,
        Area::E2e(args) => e2e::run(args).await?,
        Area::Dashboard(args) => dashboard::run(args).await?,
        Area::Helm(args) => helm::run(args).await?,
        Area::Render(args) => render::run(args).await?,
        Area::Swarm(args) => swarm::run(args).await?,
        Area::SwarmAgents => return swarm::agents().await,
        Area::E2eAgents => return e2e::agents().await,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
