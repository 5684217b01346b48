//! `flotilla-agent run`: the agent's normal mode. An engine on the cluster, enforcing what the
//! state directory holds from the first moment, and a link to the hub feeding it.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster_identity::guard_state_dir;
use crate::connect::{ConnectError, connect_counted};
use crate::engine::{Engine, EngineConfig, EngineError};
use crate::metrics::AgentMetrics;
use crate::state::StateDir;
use flotilla_core::clock::SystemClock;

use flotilla_pki::CredentialStore;
use tokio_util::sync::CancellationToken;

use super::identity::{AgentIdentity, IdentityError, read_ca_file, read_token_file, renew_loop};
use super::{Backoff, HubLink, LinkConfig, LinkError, ThreadRandom};

/// Arguments of `flotilla-agent run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Every hub node's API address, comma-separated: the agent fails over between them.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "source_dir",
        env = "FLOTILLA_HUB"
    )]
    pub hub: Vec<String>,
    /// The cluster this agent serves, as registered in the hub (`flotilla cluster add NAME`).
    #[arg(long, env = "FLOTILLA_CLUSTER", required_unless_present = "source_dir")]
    pub cluster: Option<String>,
    /// Instead of a hub: keep each subfolder of this directory applied as a bundle named after
    /// it (objects without a namespace go to the namespace of that name); a removed subfolder
    /// removes its bundle.
    #[arg(long, conflicts_with_all = ["hub", "cluster"])]
    pub source_dir: Option<PathBuf>,
    /// Directory keeping the last desired state, enforced after a restart even without a hub.
    /// Without it, a restarted agent waits for the hub.
    #[arg(long, env = "FLOTILLA_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Kubeconfig file for the cluster (default: in-cluster config, else `$KUBECONFIG` or
    /// `~/.kube/config`).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace where the agent keeps bundle inventories.
    #[arg(long, default_value = "flotilla-system")]
    pub namespace: String,
    /// How often to send heartbeats to the hub, e.g. `1s` or `500ms`.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// Longest pause between reconnection attempts, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub max_backoff: Duration,
    /// The hub's CA certificate (its `<data-dir>/ca.crt`): the only root the agent trusts.
    /// Needed to register; afterwards the state directory keeps it.
    #[arg(long, env = "FLOTILLA_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The one-time token `flotilla cluster add` printed, to register the agent and get its
    /// client certificate (kept in --state-dir). Not needed once registered. Prefer the
    /// environment or --bootstrap-token-file: a command line is visible to every local user.
    #[arg(long, env = "FLOTILLA_BOOTSTRAP_TOKEN", hide_env_values = true)]
    pub bootstrap_token: Option<String>,
    /// A file holding the bootstrap token (e.g. a mounted Secret), instead of --bootstrap-token.
    #[arg(long, value_name = "FILE", conflicts_with = "bootstrap_token")]
    pub bootstrap_token_file: Option<PathBuf>,
    /// Speak plain HTTP/2 to a hub started with --insecure (no TLS, no certificate).
    #[arg(long, conflicts_with_all = ["ca_file", "bootstrap_token", "bootstrap_token_file"])]
    pub insecure: bool,
    /// Serve `GET /metrics` (Prometheus) and `GET /healthz` on this address, e.g.
    /// `0.0.0.0:9464` (default: not served).
    #[arg(long, env = "FLOTILLA_METRICS_LISTEN", value_name = "ADDRESS")]
    pub metrics_listen: Option<String>,
}

/// Why `run` failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The cluster's client configuration could not be loaded.
    #[error(transparent)]
    Kubeconfig(#[from] ConnectError),
    /// The engine did not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `--metrics-listen` cannot be listened on.
    #[error("--metrics-listen {address}: {error}")]
    MetricsListen {
        /// The address.
        address: String,
        /// Why.
        error: std::io::Error,
    },
    /// The link's settings are wrong.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The source directory could not be followed (`--source-dir`).
    #[error(transparent)]
    Source(Box<crate::local::LocalError>),
    /// The agent has no usable certificate and could not register.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// TLS needs a state directory to keep the agent's key and certificate.
    #[error(
        "--state-dir is required: the agent keeps its key and certificate there (or pass \
         --insecure for a hub started with --insecure)"
    )]
    NoStateDir,
}

/// Parses a duration in `flotilla.yaml`'s units (`250ms`, `2s`, `1m`, `1h30m`); a bare number
/// is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("`{text}` is too many seconds"));
    }
    text.parse::<flotilla_core::spec::Duration>()
        .map(flotilla_core::spec::Duration::as_std)
        .map_err(|e| e.to_string())
}

/// Runs the agent until `shutdown` resolves; then closes the stream and stops the engine,
/// leaving the cluster as it is.
pub async fn run(args: RunArgs, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    tokio::pin!(shutdown);
    let metrics = Arc::new(AgentMetrics::new());
    // Bound first, so a taken address fails the start; served once the engine runs.
    let listener =
        match &args.metrics_listen {
            Some(address) => Some(tokio::net::TcpListener::bind(address).await.map_err(
                |error| RunError::MetricsListen {
                    address: address.clone(),
                    error,
                },
            )?),
            None => None,
        };
    let client = connect_counted(
        args.kubeconfig.as_deref(),
        args.context.as_deref(),
        Arc::clone(&metrics),
    )
    .await?;
    if let Some(dir) = &args.state_dir {
        let dir = StateDir::open(dir).map_err(EngineError::from)?;
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            guarded = guard_state_dir(&client, &dir) => guarded.map_err(EngineError::from)?,
        }
    }
    let engine = Arc::new(Engine::start(
        client,
        EngineConfig {
            state_dir: args.state_dir.clone(),
            agent_namespace: args.namespace.clone(),
            ..EngineConfig::default()
        },
        Arc::new(SystemClock),
    )?);
    let served = listener.map(|listener| {
        tracing::info!(address = ?listener.local_addr().ok(), "serving /metrics and /healthz");
        tokio::spawn(crate::metrics::serve(listener, Arc::clone(&metrics)))
    });
    let mut reports = engine.subscribe();
    let mut api = engine.api_reachability();
    let counting = Arc::clone(&metrics);
    let logger = tokio::spawn(async move {
        let mut applying = std::collections::HashMap::new();
        counting.set_api_reachable(api.borrow_and_update().reachable);
        // Once the probe has ended (the engine stopping), only reports are left to read.
        let mut probing = true;
        loop {
            let received = tokio::select! {
                received = reports.recv() => received,
                changed = api.changed(), if probing => {
                    match changed {
                        Ok(()) => counting.set_api_reachable(api.borrow_and_update().reachable),
                        Err(_) => probing = false,
                    }
                    continue;
                }
            };
            match received {
                Ok(report) => {
                    counting.observe(&report, &mut applying);
                    tracing::info!("{report}");
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "report log fell behind");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    if let Some(dir) = &args.source_dir {
        let result =
            crate::local::source::run(&engine, dir, Duration::from_secs(1), shutdown).await;
        logger.abort();
        if let Some(served) = served {
            served.abort();
        }
        if let Ok(engine) = Arc::try_unwrap(engine) {
            engine.shutdown().await;
        }
        return result.map_err(|e| RunError::Source(Box::new(e)));
    }
    // Without --source-dir, clap requires --cluster.
    let cluster = args.cluster.clone().unwrap_or_default();
    let mut config = LinkConfig::new(args.hub.clone(), cluster.clone());
    let renewal = CancellationToken::new();
    if !args.insecure {
        let dir = args.state_dir.as_deref().ok_or(RunError::NoStateDir)?;
        let ca_pem = args.ca_file.as_deref().map(read_ca_file).transpose()?;
        let token = match &args.bootstrap_token_file {
            Some(path) => Some(read_token_file(path)?),
            None => args.bootstrap_token.clone(),
        };
        let kube_system = engine.cluster_identity().await;
        let identity = AgentIdentity::establish(
            CredentialStore::in_dir(dir),
            &cluster,
            &args.hub,
            ca_pem.as_deref(),
            token.as_deref(),
            &kube_system,
        )
        .await?;
        tokio::spawn(renew_loop(
            Arc::clone(&identity),
            args.hub.clone(),
            renewal.clone(),
        ));
        config.identity = Some(identity);
    } else {
        tracing::warn!(
            "--insecure: streaming without TLS; use it only with a local --insecure hub"
        );
    }
    config.heartbeat_interval = args.heartbeat_interval;
    config.backoff = Backoff {
        max: args.max_backoff,
        ..Backoff::default()
    };
    let link = HubLink::start(
        engine.clone(),
        config,
        Arc::new(ThreadRandom),
        Arc::new(SystemClock),
    )?;
    tracing::info!(cluster = %cluster, hubs = ?args.hub, "agent running");
    shutdown.await;
    tracing::info!("stopping");
    renewal.cancel();
    link.shutdown().await;
    logger.abort();
    if let Some(served) = served {
        served.abort();
    }
    if let Ok(engine) = Arc::try_unwrap(engine) {
        engine.shutdown().await;
    }
    Ok(())
}
