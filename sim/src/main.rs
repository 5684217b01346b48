//! `flotilla-sim`: serves N virtual Kubernetes clusters and writes a kubeconfig for them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// Serve virtual Kubernetes clusters over the real REST API.
#[derive(Debug, Parser)]
#[command(name = "flotilla-sim", version)]
struct Args {
    /// Number of virtual clusters (named sim-0 ... sim-(N-1)).
    #[arg(long, default_value_t = 3)]
    clusters: usize,
    /// Where to write the kubeconfig (one context per cluster), once all are serving.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Prefix of cluster names.
    #[arg(long, default_value = "sim")]
    cluster_prefix: String,
    /// Milliseconds simulated controllers take to roll out.
    #[arg(long, default_value_t = 1000)]
    rollout_delay_ms: u64,
    /// Events kept per cluster for watches.
    #[arg(long, default_value_t = 256)]
    watch_history: usize,
}

/// mimalloc, not the system allocator: glibc's malloc took about a third of the agents' and
/// the simulator's CPU at 1,000 clusters (docs/BENCHMARKS.md, `bench e2e`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Colour only on a terminal: a pipe, a file or a log collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let sim = flotilla_sim::Sim::start(flotilla_sim::SimConfig {
        clusters: args.clusters,
        listen: args.listen,
        cluster_prefix: args.cluster_prefix,
        rollout_delay: Duration::from_millis(args.rollout_delay_ms),
        watch_history: args.watch_history,
        ..Default::default()
    })
    .await?;
    sim.write_kubeconfig(&args.kubeconfig)
        .with_context(|| format!("writing {}", args.kubeconfig.display()))?;
    tracing::info!(
        addr = %sim.addr(),
        clusters = args.clusters,
        kubeconfig = %args.kubeconfig.display(),
        "serving; admin API at http://{}/admin/clusters",
        sim.addr()
    );
    shutdown_signal().await?;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
