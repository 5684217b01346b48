//! `flotilla-hub`: runs a hub node, or talks to a running one.
//!
//! ```text
//! flotilla-hub --id 1 --data-dir /var/lib/hub --listen 127.0.0.1:7070            # single node
//! flotilla-hub --id 1 --data-dir d --listen 127.0.0.1:7070 --repo URL --branch main \
//!     --clusters clusters.yaml --api-listen 127.0.0.1:7071 --http-listen 127.0.0.1:7080
//! flotilla-hub --id 1 --data-dir d1 --listen A1 --peers 1=A1,2=A2,3=A3           # found a group
//! flotilla-hub --id 4 --data-dir d4 --listen A4 --join                           # wait to be added
//! flotilla-hub member add --hub A1 --id 4 --address A4
//! flotilla-hub member remove --hub A1 --id 2
//! flotilla-hub status --hub A1
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use flotilla_hub::admin::GroupClient;
use flotilla_hub::config::{FileConfig, parse_peers};
use flotilla_hub::controller::source::GitCredentials;
use flotilla_hub::server::{Hub, HubConfig};

#[derive(Parser)]
#[command(name = "flotilla-hub", version, about = "Flotilla hub node")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Admin>,
    #[command(flatten)]
    run: RunArgs,
}

/// Running a node. Flags override the config file.
#[derive(Args)]
struct RunArgs {
    /// YAML config file (keys: id, group, dataDir, listen, advertise, peers, join, tickMillis,
    /// electionTicks, heartbeatTicks, compactAfter, apiListen, httpListen, repo, branch,
    /// pollInterval, webhookSecret, revisionRetention, clusters, sshKey).
    #[arg(long, env = "FLOTILLA_HUB_CONFIG")]
    config: Option<PathBuf>,
    /// Raft id of this node (non-zero).
    #[arg(long)]
    id: Option<u64>,
    /// Name of the hub group.
    #[arg(long)]
    group: Option<String>,
    /// Directory holding this node's raft log.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (HOST:PORT).
    #[arg(long)]
    listen: Option<String>,
    /// Address peers reach this node at (default: the listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// Founding members: ID=HOST:PORT,... including this node. Omit for a single-node group.
    #[arg(long)]
    peers: Option<String>,
    /// Start empty and wait to be added to an existing group (`member add`).
    #[arg(long)]
    join: bool,
    /// Raft tick interval in milliseconds.
    #[arg(long)]
    tick_ms: Option<u64>,
    /// Election timeout in ticks.
    #[arg(long)]
    election_ticks: Option<usize>,
    /// Heartbeat interval in ticks.
    #[arg(long)]
    heartbeat_ticks: Option<usize>,
    /// Applied entries between snapshots.
    #[arg(long)]
    compact_after: Option<u64>,
    /// Address of the API listener for agents and the `flotilla` CLI (HOST:PORT)
    /// [default: 127.0.0.1:7071].
    #[arg(long)]
    api_listen: Option<String>,
    /// Address of the HTTP listener for webhooks, the dashboard and metrics (HOST:PORT)
    /// [default: 127.0.0.1:7080].
    #[arg(long)]
    http_listen: Option<String>,
    /// Git repository to follow: https://, ssh://, git@host:path or file:// URL.
    #[arg(long, value_name = "URL")]
    repo: Option<String>,
    /// Branch to follow [default: main].
    #[arg(long)]
    branch: Option<String>,
    /// Time between fetches of the repository, like 30s or 5m [default: 30s].
    #[arg(long, value_name = "DURATION")]
    poll_interval: Option<String>,
    /// Secret webhooks must be signed with (GitHub/generic HMAC-SHA256, GitLab token).
    #[arg(long, env = "FLOTILLA_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Old revisions kept for rollback besides those in use [default: 10].
    #[arg(long, value_name = "N")]
    revision_retention: Option<usize>,
    /// Cluster inventory (kind: ClusterInventory) registered when this node leads.
    #[arg(long, value_name = "FILE")]
    clusters: Option<PathBuf>,
    /// ssh private key for the repository (default: the ssh agent).
    #[arg(long, value_name = "FILE")]
    ssh_key: Option<PathBuf>,
    /// User name for an https repository.
    #[arg(long, env = "FLOTILLA_GIT_USERNAME", hide = true)]
    git_username: Option<String>,
    /// Password or token for an https repository (environment only).
    #[arg(
        long,
        env = "FLOTILLA_GIT_PASSWORD",
        hide = true,
        hide_env_values = true
    )]
    git_password: Option<String>,
}

#[derive(Subcommand)]
enum Admin {
    /// Change the group's membership, one node at a time.
    Member {
        #[command(subcommand)]
        change: MemberChange,
    },
    /// Show a node's raft status.
    Status {
        /// Any node of the group (HOST:PORT).
        #[arg(long)]
        hub: String,
    },
}

#[derive(Subcommand)]
enum MemberChange {
    /// Add a voter. Start it first with `--join`.
    Add {
        /// Any node of the group (HOST:PORT).
        #[arg(long)]
        hub: String,
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// The new node's advertised address.
        #[arg(long)]
        address: String,
    },
    /// Remove a member, running or dead.
    Remove {
        /// Any node of the group (HOST:PORT).
        #[arg(long)]
        hub: String,
        /// The node to remove.
        #[arg(long)]
        id: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,raft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(admin) => run_admin(admin).await,
            None => run_node(cli.run).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_node(args: RunArgs) -> Result<()> {
    let mut file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    file.id = args.id.or(file.id);
    file.group = args.group.or(file.group);
    file.data_dir = args.data_dir.or(file.data_dir);
    file.listen = args.listen.or(file.listen);
    file.advertise = args.advertise.or(file.advertise);
    if let Some(peers) = &args.peers {
        file.peers = Some(parse_peers(peers)?);
    }
    if args.join {
        file.join = Some(true);
    }
    file.tick_millis = args.tick_ms.or(file.tick_millis);
    file.election_ticks = args.election_ticks.or(file.election_ticks);
    file.heartbeat_ticks = args.heartbeat_ticks.or(file.heartbeat_ticks);
    file.compact_after = args.compact_after.or(file.compact_after);
    file.api_listen = args.api_listen.or(file.api_listen);
    file.http_listen = args.http_listen.or(file.http_listen);
    file.repo = args.repo.or(file.repo);
    file.branch = args.branch.or(file.branch);
    file.poll_interval = args.poll_interval.or(file.poll_interval);
    file.webhook_secret = args.webhook_secret.or(file.webhook_secret);
    file.revision_retention = args.revision_retention.or(file.revision_retention);
    file.clusters = args.clusters.or(file.clusters);
    file.ssh_key = args.ssh_key.or(file.ssh_key);
    let credentials = GitCredentials {
        ssh_key: None,
        username: args.git_username,
        password: args.git_password,
    };
    let config = HubConfig::from_file(file, credentials)?;
    if config.source.is_some() && config.webhook_secret.is_none() {
        eprintln!(
            "warning: no --webhook-secret: every webhook is accepted unverified; set one (or \
             FLOTILLA_WEBHOOK_SECRET) before exposing the HTTP listener"
        );
    }

    let hub = Hub::start(config).await?;
    let node = hub.node().clone();
    println!(
        "flotilla-hub node {} of group '{}' listening on {}",
        node.id(),
        node.group(),
        node.address()
    );
    println!("api listening on {}", hub.api_address());
    println!(
        "http listening on {} (dashboard http://{}/)",
        hub.http_address(),
        hub.http_address()
    );
    let mut failure = node.watch_failure();
    let result = tokio::select! {
        _ = shutdown_signal() => Ok(()),
        changed = failure.wait_for(Option::is_some) => {
            let why = changed.ok().and_then(|f| f.clone()).unwrap_or_default();
            Err(anyhow::anyhow!("raft node stopped: {why}"))
        }
    };
    hub.shutdown().await;
    result
}

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

async fn run_admin(admin: Admin) -> Result<()> {
    match admin {
        Admin::Status { hub } => {
            let status = GroupClient::new(&hub)?
                .status()
                .await
                .with_context(|| format!("asking {hub} for its status"))?;
            println!(
                "node {} of group '{}': {} (leader {}), term {}, commit {}, applied {}",
                status.id,
                status.group,
                status.role,
                status.leader,
                status.term,
                status.commit,
                status.applied
            );
            for member in status.members {
                println!("  member {} at {}", member.id, member.address);
            }
        }
        Admin::Member {
            change: MemberChange::Add { hub, id, address },
        } => {
            let changed = GroupClient::new(&hub)?
                .add_member(id, &address)
                .await
                .with_context(|| format!("adding node {id} through {hub}"))?;
            println!("node {id} added at index {}", changed.index);
        }
        Admin::Member {
            change: MemberChange::Remove { hub, id },
        } => {
            let changed = GroupClient::new(&hub)?
                .remove_member(id)
                .await
                .with_context(|| format!("removing node {id} through {hub}"))?;
            println!("node {id} removed at index {}", changed.index);
        }
    }
    Ok(())
}
