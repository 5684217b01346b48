//! `flotilla-demo` (also run as `flotilla demo`): a whole fleet on one machine, in this one
//! process — a single-node hub following a fresh Git repository made from the example fleet, a
//! Kubernetes API simulator serving the example inventory's five clusters (or, with `--real`,
//! five real Kubernetes clusters: see `real.rs`), and an agent per cluster. It prints what
//! another terminal needs, then follows the fleet until Ctrl-C or SIGTERM stops everything.
//!
//! The parts are the real libraries talking over real sockets: agents stream from the hub's API
//! listener over gRPC and apply to their simulated cluster over the Kubernetes REST API, exactly
//! as `flotilla-agent run` does against a real cluster. It is a binary of its own so that the
//! `flotilla` CLI links none of the hub, the agent or the simulator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use flotilla_core::inventory::Cluster;
use flotilla_hub::config::{NodeConfig, SecurityConfig, TlsSettings};
use flotilla_hub::controller::source::SourceConfig;
use flotilla_hub::server::{DEFAULT_API_LISTEN, DEFAULT_HTTP_LISTEN, Hub, HubConfig};
use flotilla_sim::{Sim, SimConfig};

mod agents;
mod banner;
mod follow;
mod place;
mod progress;
mod real;
mod repo;
#[cfg(test)]
mod tests;

use agents::Agent;
use banner::Banner;
use follow::Readiness;
use place::Place;
use progress::Progress;

/// How often the demo's hub looks at its repository: a local commit shows up within this,
/// since nothing sends a webhook for it.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How long the simulated workloads take to roll out: long enough to watch them progress.
const ROLLOUT_DELAY: Duration = Duration::from_secs(2);

/// How long the first rollout may take before the demo prints its environment anyway.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Run a whole fleet on this machine: a hub following an example repository, five simulated
/// clusters and an agent for each. Prints what to try; Ctrl-C stops it.
#[derive(Debug, Parser)]
#[command(name = "flotilla-demo", version, long_about = None)]
struct DemoArgs {
    /// The hub's API address, for agents and the CLI [default: 127.0.0.1:7071, or a free port
    /// when that one is taken]. Port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT")]
    api_listen: Option<String>,
    /// The hub's HTTP address: dashboard, webhook and metrics [default: 127.0.0.1:7080, or a
    /// free port when that one is taken]. Port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT")]
    http_listen: Option<String>,
    /// Directory for the demo's repository, hub data, agent state, kubeconfig and log. A
    /// directory given here is kept, and a demo kept there resumes [default: a new temporary
    /// directory, removed when the demo stops].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the temporary directory when the demo stops.
    #[arg(long)]
    keep: bool,
    /// Run the clusters as real Kubernetes clusters (a kube-apiserver, controller-manager,
    /// scheduler and kwok each, started by the embedded scripts/k8s-up) instead of simulated
    /// ones. Needs Go for their first build (about 17 minutes on two cores, then cached in
    /// ~/.cache/flotilla/k8s), openssl and kubectl; about 530 MiB of memory per cluster.
    #[arg(long)]
    real: bool,
}

/// What has been started so far, so that stopping stops exactly that, in reverse order.
#[derive(Default)]
struct Parts {
    sim: Option<Sim>,
    real: Option<real::RealClusters>,
    hub: Option<Hub>,
    agents: Vec<Agent>,
}

impl Parts {
    /// Agents first (they stop streaming and applying), then the hub, then the clusters.
    async fn stop(self, log: &Path) -> anyhow::Result<()> {
        agents::stop(self.agents).await;
        if let Some(hub) = self.hub {
            hub.shutdown().await;
        }
        if let Some(sim) = self.sim {
            sim.shutdown().await;
        }
        if let Some(real) = self.real {
            real.stop(log).await?;
        }
        Ok(())
    }
}

/// mimalloc, not the system allocator: glibc's malloc took about a third of the agents' and
/// the simulator's CPU at 1,000 clusters (docs/BENCHMARKS.md, `bench e2e`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    flotilla_pki::install_crypto_provider();
    let args = DemoArgs::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the demo until Ctrl-C or SIGTERM (or a failure while starting), then stops it.
async fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let place = Place::prepare(args.data_dir.as_deref())?;
    log_to(&place.log_file())?;
    let progress = Progress::new();
    let mut parts = Parts::default();
    let outcome = tokio::select! {
        outcome = serve(args, &place, &progress, &mut parts) => outcome,
        () = shutdown_signal() => Ok(()),
    };
    progress.finish();
    let kind = if args.real { "real" } else { "simulated" };
    println!("\nStopping the agents, the hub and the {kind} clusters...");
    let stopped = parts.stop(&place.log_file()).await;
    if let Err(e) = &stopped {
        eprintln!("error: {e:#}");
    }
    if stopped.is_err() && place.is_temporary() {
        // The clusters' processes and data are in it: say where, rather than remove it under them.
        println!(
            "Kept {} for the clusters left running.",
            place.root().display()
        );
        return outcome.and(stopped);
    }
    println!("{}", place.finish(args.keep)?);
    outcome.and(stopped)
}

/// Starts every part, waits for the first rollout, prints the banner, then follows the fleet.
async fn serve(
    args: &DemoArgs,
    place: &Place,
    progress: &Progress,
    parts: &mut Parts,
) -> anyhow::Result<()> {
    if place.repo_dir().join(".git").is_dir() {
        progress.step("Using the kept demo repository");
    } else {
        progress.step("Writing the example repository");
    }
    anyhow::ensure!(
        !place.ran_on_real_clusters(),
        "{} holds a demo that ran on real clusters, which stopped with it: new clusters' agents \
         would be refused as other clusters than the ones its hub knows; pass a new --data-dir \
         (were that demo killed, `{}` stops the clusters it left running)",
        place.root().display(),
        real::RealClusters::down_command(place.root())
    );
    let resumed = place.hub_dir().exists();
    let tools = repo::render_tools();
    let repo = repo::prepare(&place.repo_dir(), &tools)?;
    let clusters = inventory(&repo.path)?;

    if args.real {
        anyhow::ensure!(
            !resumed,
            "{} holds a kept demo on simulated clusters; real clusters start afresh and their \
             agents would be refused as other clusters than the ones its hub knows; pass a new \
             --data-dir",
            place.root().display()
        );
        place.mark_real()?;
        progress.step(format!(
            "Starting {} real Kubernetes clusters (their first build takes about 17 minutes)",
            clusters.len()
        ));
        let names: Vec<String> = clusters.iter().map(|c| c.name.clone()).collect();
        // Held by `parts` before anything starts, so that every way out stops what started.
        let real = parts
            .real
            .insert(real::RealClusters::prepare(place.root())?);
        real.start(&names, &place.kubeconfig(), &place.log_file())
            .await?;
    } else {
        progress.step(format!("Starting {} simulated clusters", clusters.len()));
        parts.sim = Some(start_sim(&clusters, &place.kubeconfig()).await?);
    }

    progress.step("Starting the hub");
    let (api_listen, api_note) = listen_address(
        args.api_listen.as_deref(),
        DEFAULT_API_LISTEN,
        "--api-listen",
    )?;
    let (http_listen, http_note) = listen_address(
        args.http_listen.as_deref(),
        DEFAULT_HTTP_LISTEN,
        "--http-listen",
    )?;
    let source = source_config(&repo.path, tools);
    let mut node = NodeConfig::new(1, place.hub_dir(), "127.0.0.1:0");
    // The demo runs as a real hub would: TLS with its own CA, tokens, registered agents.
    node.security = SecurityConfig::Tls(TlsSettings::new());
    let mut config = HubConfig::new(node);
    config.authenticate = true;
    config.api_listen = api_listen;
    config.http_listen = http_listen;
    config.source = Some(source.clone());
    config.clusters_file = Some(repo.path.join(repo::INVENTORY));
    let hub = Hub::start(config).await.context("starting the hub")?;
    let hub = parts.hub.insert(hub);

    progress.step(format!(
        "Starting an agent for each of the {} clusters",
        clusters.len()
    ));
    let credentials = agents::Credentials::issue(hub, &clusters).await?;
    parts.agents = agents::start(
        &place.kubeconfig(),
        &clusters,
        hub.api_address(),
        &place.agents_dir(),
        &credentials,
    )
    .await?;

    let readiness =
        follow::until_ready(hub, &source, clusters.len(), progress, READY_TIMEOUT).await;
    progress.finish();
    let mut notes: Vec<String> = [api_note, http_note].into_iter().flatten().collect();
    notes.extend(repo.notes());
    if let Readiness::NotYet(what) = &readiness {
        notes.push(what.clone());
    }
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    if let Some(dir) = &bin_dir {
        let path = std::env::var_os("PATH").unwrap_or_default();
        notes.extend(banner::missing_cli_note(dir, &path));
    }
    let banner = Banner {
        api: hub.api_address(),
        http: hub.http_address(),
        ca_file: credentials.ca_file.clone(),
        token: credentials.admin_token(hub).await?,
        kubeconfig: place.kubeconfig(),
        repo: repo.path.clone(),
        poll_interval: POLL_INTERVAL,
        clusters: clusters.iter().map(|c| c.name.clone()).collect(),
        data_dir: place.root().to_path_buf(),
        real: args.real,
        removed_on_exit: place.is_temporary() && !args.keep,
        log: place.log_file(),
        bin_dir,
        notes,
    };
    println!("{}", banner.render());
    follow::events(hub, &source).await;
    Ok(())
}

/// The clusters of the example inventory.
fn inventory(repo: &Path) -> anyhow::Result<Vec<Cluster>> {
    let path = repo.join(repo::INVENTORY);
    flotilla_core::inventory::load_inventory(&path, &Default::default())
        .map_err(|errors| anyhow::anyhow!("{}:\n{errors}", path.display()))
}

/// A simulator serving one virtual cluster per inventory entry, named after it.
async fn start_sim(clusters: &[Cluster], kubeconfig: &Path) -> anyhow::Result<Sim> {
    let sim = Sim::start(SimConfig {
        clusters: 0,
        rollout_delay: ROLLOUT_DELAY,
        ..SimConfig::default()
    })
    .await
    .context("starting the Kubernetes API simulator")?;
    for cluster in clusters {
        sim.add_cluster(&cluster.name)?;
    }
    sim.write_kubeconfig(kubeconfig)?;
    Ok(sim)
}

/// The demo repository as the hub's source: `main`, polled every [`POLL_INTERVAL`].
fn source_config(repo: &Path, tools: flotilla_core::Tools) -> SourceConfig {
    let mut source = SourceConfig::new(format!("file://{}", repo.display()), "main");
    source.poll_interval = POLL_INTERVAL;
    source.render_tools = tools;
    // The demo starts on any machine; where namespaces are not allowed it renders unconfined
    // (its repository is the embedded example).
    source.render_limits.render_sandbox = flotilla_core::SandboxMode::Preferred;
    source
}

/// The address to listen on: the one given, else `default` when it is free, else a free port,
/// with a note saying so.
fn listen_address(
    given: Option<&str>,
    default: &str,
    flag: &str,
) -> anyhow::Result<(String, Option<String>)> {
    if let Some(address) = given {
        return Ok((address.to_owned(), None));
    }
    match std::net::TcpListener::bind(default) {
        Ok(_) => Ok((default.to_owned(), None)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok((
            "127.0.0.1:0".to_owned(),
            Some(format!(
                "{default} is taken (another hub or demo?), so a free port was chosen; \
                 pass {flag} HOST:PORT to choose one"
            )),
        )),
        Err(e) => Err(anyhow::anyhow!(
            "cannot listen on {default}: {e}; pass {flag} HOST:PORT"
        )),
    }
}

/// Sends the hub's, agents' and simulator's logs to the demo's log file, so the terminal shows
/// only the demo's own output. `RUST_LOG` chooses what is logged.
fn log_to(file: &Path) -> anyhow::Result<()> {
    let writer = std::fs::File::create(file)
        .with_context(|| format!("creating the demo's log file {}", file.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,raft=warn"));
    // Another subscriber already installed (none is, in the binary) keeps its place.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(writer))
        .try_init();
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
