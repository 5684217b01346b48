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
//! flotilla-hub status --hub A1 --ca-cert ca.crt --ca-key ca.key  # or --insecure
//! flotilla-hub ca create --out DIR                                 # a CA for a larger group
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use flotilla_consensus::transport::net;
use flotilla_hub::config::SecurityConfig;
use flotilla_hub::config::{FileConfig, parse_peers};
use flotilla_hub::controller::source::GitCredentials;
use flotilla_hub::node::GroupClient;
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
    /// pollInterval, webhookSecret, revisionRetention, clusters, sshKey, insecure, caCert, caKey,
    /// tlsSans, agentCertLifetime, bootstrapTokenTtl, renderTimeout, renderSandbox, and
    /// connections: limits and timeouts of the api, http and peer listeners).
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
    /// No TLS and no authentication on any listener: local experiments only.
    #[arg(long)]
    insecure: bool,
    /// The group CA's certificate (PEM). Without it, a single founding node creates the CA;
    /// founders of a larger group and joining nodes need it (with --ca-key).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// The group CA's private key (PEM), with --ca-cert.
    #[arg(long, value_name = "FILE")]
    ca_key: Option<PathBuf>,
    /// Another name (DNS or IP) clients dial this node by, for its certificate; repeatable.
    #[arg(long = "tls-san", value_name = "NAME")]
    tls_sans: Vec<String>,
    /// Lifetime of agents' client certificates, like 24h [default: 24h].
    #[arg(long, value_name = "DURATION")]
    agent_cert_lifetime: Option<String>,
    /// Lifetime of the bootstrap tokens `cluster add` prints, like 1h [default: 1h].
    #[arg(long, value_name = "DURATION")]
    bootstrap_token_ttl: Option<String>,
    /// Longest one render (a `kustomize build`) may run before it is killed, like 20s; also
    /// its CPU-time limit [default: 20s].
    #[arg(long, value_name = "DURATION")]
    render_timeout: Option<String>,
    /// How renders are confined: `required` (no network, read-only checkout; the hub refuses
    /// to start where the host cannot provide it), `preferred` (confined when possible) or
    /// `off` (resource limits only) [default: required].
    #[arg(long, value_name = "MODE")]
    render_sandbox: Option<String>,
    /// The helm (v4) binary chart bundles are rendered with [default: `helm` on PATH].
    #[arg(long, value_name = "PATH")]
    helm: Option<PathBuf>,
}

/// How an operator command reaches a node's peer listener.
#[derive(Args)]
struct PeerAccess {
    /// Any node of the group (HOST:PORT of its peer listener).
    #[arg(long)]
    hub: String,
    /// The group CA's certificate: the command presents a short-lived operator certificate
    /// the CA signs (mutual TLS), as a hub node does.
    #[arg(long, value_name = "FILE", required_unless_present = "insecure")]
    ca_cert: Option<PathBuf>,
    /// The group CA's private key.
    #[arg(long, value_name = "FILE", required_unless_present = "insecure")]
    ca_key: Option<PathBuf>,
    /// The group runs with --insecure.
    #[arg(long, conflicts_with_all = ["ca_cert", "ca_key"])]
    insecure: bool,
}

impl PeerAccess {
    /// A client of the node's group API.
    fn client(&self) -> Result<GroupClient> {
        let security = match (&self.ca_cert, &self.ca_key) {
            (Some(cert), Some(key)) if !self.insecure => {
                let ca = flotilla_pki::GroupCa::from_files(cert, key)?;
                net::Security::operator(ca, net::host_of(&self.hub))?
            }
            _ => net::Security::Plain,
        };
        Ok(GroupClient::with_security(&self.hub, &security)?)
    }
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
        #[command(flatten)]
        peer: PeerAccess,
    },
    /// The group's certificate authority.
    Ca {
        #[command(subcommand)]
        action: CaAction,
    },
}

#[derive(Subcommand)]
enum CaAction {
    /// Create a CA for a group of several nodes: give every founder and every joining node
    /// --ca-cert DIR/ca.crt --ca-key DIR/ca.key.
    Create {
        /// Directory to write ca.crt and ca.key (mode 0600) to.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The group's name.
        #[arg(long, default_value = flotilla_hub::config::DEFAULT_GROUP)]
        group: String,
    },
}

#[derive(Subcommand)]
enum MemberChange {
    /// Add a voter. Start it first with `--join`.
    Add {
        #[command(flatten)]
        peer: PeerAccess,
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// The new node's advertised address.
        #[arg(long)]
        address: String,
    },
    /// Remove a member, running or dead.
    Remove {
        #[command(flatten)]
        peer: PeerAccess,
        /// The node to remove.
        #[arg(long)]
        id: u64,
    },
}

/// mimalloc, not the system allocator: glibc's malloc took about a third of the agents' and
/// the simulator's CPU at 1,000 clusters (docs/BENCHMARKS.md, `bench e2e`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    flotilla_pki::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,raft=warn")),
        )
        // Colour only on a terminal: a pipe, a file or a log collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    if args.insecure {
        file.insecure = Some(true);
    }
    file.ca_cert = args.ca_cert.or(file.ca_cert);
    file.ca_key = args.ca_key.or(file.ca_key);
    if !args.tls_sans.is_empty() {
        file.tls_sans = Some(args.tls_sans);
    }
    file.agent_cert_lifetime = args.agent_cert_lifetime.or(file.agent_cert_lifetime);
    file.bootstrap_token_ttl = args.bootstrap_token_ttl.or(file.bootstrap_token_ttl);
    file.render_timeout = args.render_timeout.or(file.render_timeout);
    file.render_sandbox = args.render_sandbox.or(file.render_sandbox);
    file.helm = args.helm.or(file.helm);
    let credentials = GitCredentials {
        ssh_key: None,
        username: args.git_username,
        password: args.git_password,
    };
    let config = HubConfig::from_file(file, credentials)?;
    let insecure = matches!(config.node.security, SecurityConfig::Insecure);
    if insecure {
        // Every start, so a hub left running this way keeps saying so.
        eprintln!(
            "WARNING: --insecure: no TLS and no authentication on any listener; anyone who \
             reaches this hub can read and change the whole fleet. Use it for local experiments \
             only."
        );
        tracing::warn!("running INSECURE: no TLS, no authentication");
    }
    if config.source.is_some() && config.webhook_secret.is_none() {
        eprintln!(
            "warning: no --webhook-secret: every webhook is accepted unverified; set one (or \
             FLOTILLA_WEBHOOK_SECRET) before exposing the HTTP listener"
        );
    }

    check_open_files(&config);
    let hub = Hub::start(config).await?;
    let node = hub.node().clone();
    println!(
        "flotilla-hub node {} of group '{}' listening on {}",
        node.id(),
        node.group(),
        node.address()
    );
    println!("api listening on {}", hub.api_address());
    let scheme = if insecure { "http" } else { "https" };
    println!(
        "http listening on {} (dashboard {scheme}://{}/)",
        hub.http_address(),
        hub.http_address()
    );
    if !insecure {
        println!(
            "ca certificate in {}",
            node.data_dir().join(flotilla_hub::node::CA_FILE).display()
        );
    }
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

/// Descriptors a hub needs besides its listeners' connections: the raft log, Git mirrors and
/// renders, channels to peer nodes, logs.
const FILES_BESIDES_CONNECTIONS: u64 = 1_024;

/// Raises the process's soft limit on open files to its hard limit, as Go's runtime and most
/// servers do (a systemd service starts with a soft limit of 1,024), and warns if the
/// listeners' connection limits still do not fit under it: then a flood of connections could
/// leave the hub without descriptors for its own files, which the limits exist to prevent.
fn check_open_files(config: &HubConfig) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

    let limit = getrlimit(Resource::Nofile);
    let mut soft = limit.current;
    // An unlimited hard limit is left alone: the kernel caps descriptors anyway, and asking
    // for infinity fails.
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => soft = limit.maximum,
            Err(e) => tracing::warn!(error = %e, "cannot raise the limit on open files"),
        }
    }
    let Some(soft) = soft else {
        return;
    };
    let connections: usize = [
        config.api_connections.max_connections,
        config.http_connections.max_connections,
        config.node.peer_connections.max_connections,
    ]
    .iter()
    .sum();
    let needed = connections as u64 + FILES_BESIDES_CONNECTIONS;
    if soft < needed {
        tracing::warn!(
            open_files = soft,
            connections,
            "the process may open {soft} files, fewer than the listeners' connection limits \
             ({connections}) and {FILES_BESIDES_CONNECTIONS} for the hub's own files: raise \
             the limit (LimitNOFILE, ulimit -n) or lower connections.*.maxConnections"
        );
    }
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
        Admin::Ca {
            action: CaAction::Create { out, group },
        } => create_ca(&out, &group)?,
        Admin::Status { peer } => {
            let hub = &peer.hub;
            let status = peer
                .client()?
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
            change: MemberChange::Add { peer, id, address },
        } => {
            let hub = &peer.hub;
            let changed = peer
                .client()?
                .add_member(id, &address)
                .await
                .with_context(|| format!("adding node {id} through {hub}"))?;
            println!("node {id} added at index {}", changed.index);
        }
        Admin::Member {
            change: MemberChange::Remove { peer, id },
        } => {
            let hub = &peer.hub;
            let changed = peer
                .client()?
                .remove_member(id)
                .await
                .with_context(|| format!("removing node {id} through {hub}"))?;
            println!("node {id} removed at index {}", changed.index);
        }
    }
    Ok(())
}

/// Writes a new CA: `ca.crt` (readable by all) and `ca.key` (mode 0600), refusing to replace
/// either.
fn create_ca(dir: &std::path::Path, group: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let ca = flotilla_pki::GroupCa::generate(group, std::time::SystemTime::now())?;
    let pem = ca.to_pem();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text, mode) in [
        ("ca.crt", &pem.certificate, 0o644),
        ("ca.key", &pem.private_key, 0o600),
    ] {
        let path = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .with_context(|| {
                format!(
                    "creating {} (an existing CA is never overwritten)",
                    path.display()
                )
            })?;
        file.write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "CA for group '{group}' written to {}/ca.crt and {}/ca.key; keep ca.key as secret as the hub's data",
        dir.display(),
        dir.display()
    );
    Ok(())
}
