//! A whole hub process: the raft node, the API listener, the HTTP listener and the leader-only
//! controllers, started together and stopped together.
//!
//! Three listeners, like etcd's peer and client ports:
//! - the **peer** listener (the node's own, `--listen`): raft traffic and the group admin API;
//! - the **API** listener (`--api-listen`, gRPC): agents' `Sync` streams and the operators'
//!   `Admin` API, served by every node from its own replica; writes go through the node, which
//!   forwards them to the leader;
//! - the **HTTP** listener (`--http-listen`): webhooks, the dashboard and Prometheus metrics.
//!
//! To serve another gRPC service on the API listener, add it in [`api_router`]; to run another
//! leader-only controller, add it in [`controllers`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::inventory::Cluster as InventoryCluster;
use flotilla_proto::v1::admin_server::AdminServer;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::AdminService;
use crate::audit::{AuditLimits, AuditTrail};
use crate::clock::Clock;
use crate::config::NodeConfig;
pub use crate::context::{DEFAULT_BOOTSTRAP_TOKEN_TTL, HubContext, RegistrationConfig};
use crate::controller::inventory::InventoryController;
use crate::controller::liveness::Liveness;
use crate::controller::notify::NotifyController;
use crate::controller::render::RenderController;
use crate::controller::retention::RetentionController;
use crate::controller::rollout::RolloutController;
use crate::controller::source::{SourceConfig, SourceController, SourceMirror};
use crate::controller::{Controller, Running, Supervisor};
use crate::http::webhook::Deliveries;
use crate::http::{self, HttpContext};
use crate::metrics::Metrics;
use crate::node::{Node, NodeHandle, StartError};
use crate::sync::{SyncConfig, SyncHub};
use flotilla_consensus::transport::listener::ListenerLimits;
use flotilla_consensus::transport::net::{self, NetError};
use flotilla_consensus::transport::routes::GrpcRoutes;

/// Default address of the API listener.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7071";
/// Default address of the HTTP listener.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7080";
/// Default number of revisions kept besides those in use.
pub const DEFAULT_REVISION_RETENTION: usize = 10;

/// Everything a hub process needs to start.
#[derive(Clone)]
pub struct HubConfig {
    /// The raft node.
    pub node: NodeConfig,
    /// Address of the API listener (port 0 picks a free port).
    pub api_listen: String,
    /// Address of the HTTP listener (port 0 picks a free port).
    pub http_listen: String,
    /// The Git repository the hub follows; without one the hub only serves its state.
    pub source: Option<SourceConfig>,
    /// Shared secret webhooks are verified with; without one every webhook is accepted.
    pub webhook_secret: Option<String>,
    /// Revisions kept for rollback besides those still in use.
    pub revision_retention: usize,
    /// A cluster inventory file registered (and relabelled) by the leader at start.
    pub clusters_file: Option<PathBuf>,
    /// Agent streams: heartbeats, chunk size, report batching, presence and liveness.
    pub sync: SyncConfig,
    /// Wall-clock time for proposed commands.
    pub clock: Arc<dyn Clock>,
    /// Whether the Admin API checks bearer tokens (and the leader creates the first admin
    /// token). Off only for an insecure hub.
    pub authenticate: bool,
    /// Lifetimes of bootstrap tokens and agent certificates.
    pub registration: RegistrationConfig,
    /// How many unprivileged audit events (refusals, failures, webhook deliveries) this node
    /// records one by one per actor, before folding the rest into aggregates.
    pub audit: AuditLimits,
    /// Connection limits and timeouts of the API listener.
    pub api_connections: ListenerLimits,
    /// Connection limits and timeouts of the HTTP listener.
    pub http_connections: ListenerLimits,
    /// What `/metrics` shows of each cluster.
    pub metrics: crate::metrics::MetricsConfig,
    /// Where the leader sends notices.
    pub notifications: Vec<crate::config::notifications::ReceiverConfig>,
}

impl HubConfig {
    /// A config with default listeners on loopback, no source and the system clock.
    pub fn new(node: NodeConfig) -> Self {
        HubConfig {
            api_listen: DEFAULT_API_LISTEN.to_owned(),
            http_listen: DEFAULT_HTTP_LISTEN.to_owned(),
            source: None,
            webhook_secret: None,
            revision_retention: DEFAULT_REVISION_RETENTION,
            clusters_file: None,
            sync: SyncConfig::default(),
            clock: crate::clock::system(),
            authenticate: !matches!(node.security, crate::config::SecurityConfig::Insecure),
            registration: RegistrationConfig::default(),
            audit: AuditLimits::default(),
            api_connections: ListenerLimits::api(),
            http_connections: ListenerLimits::http(),
            metrics: Default::default(),
            notifications: Vec::new(),
            node,
        }
    }
}

/// Why a hub did not start.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The raft node did not start.
    #[error(transparent)]
    Node(#[from] StartError),
    /// A listener could not be bound.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The HTTP listener could not be bound.
    #[error("cannot listen for HTTP on {address}: {source}")]
    Http {
        /// The address.
        address: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The source's local mirror could not be prepared.
    #[error(transparent)]
    Mirror(#[from] crate::controller::source::MirrorError),
    /// A notification receiver could not be set up.
    #[error(transparent)]
    Receiver(#[from] crate::notify::ReceiverError),
    /// Renders cannot be confined as configured.
    #[error(
        "cannot confine renders (--render-sandbox required): {0}; or start with --render-sandbox off to rely on the static checks alone"
    )]
    Sandbox(String),
    /// The clusters file is unreadable or invalid.
    #[error("clusters file {path}:\n{errors}")]
    Inventory {
        /// The file.
        path: PathBuf,
        /// Every problem, with line.
        errors: flotilla_core::SpecErrors,
    },
}

/// A running hub process. Call [`Hub::shutdown`] to stop it.
pub struct Hub {
    node: NodeHandle,
    api_address: SocketAddr,
    http_address: SocketAddr,
    running: watch::Receiver<Running>,
    metrics: Arc<Metrics>,
    sync: Arc<SyncHub>,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Hub {
    /// Binds every listener, starts the raft node, the services and the controller supervisor.
    pub async fn start(config: HubConfig) -> Result<Hub, HubError> {
        let receivers = config
            .notifications
            .iter()
            .map(|r| r.name.clone())
            .collect();
        let metrics =
            Arc::new(Metrics::configured(config.metrics.clone()).with_receivers(receivers));
        if let Some(source) = &config.source {
            let mode = source.render_limits.render_sandbox;
            flotilla_core::render::sandbox::check(mode).map_err(HubError::Sandbox)?;
            let sandbox = flotilla_core::render::sandbox::describe(mode);
            if mode == flotilla_core::SandboxMode::Off {
                tracing::warn!(%sandbox, "renders are not confined: a repository could make the hub reach the network");
            } else {
                tracing::info!(%sandbox, "render sandbox");
            }
        }
        let inventory = match &config.clusters_file {
            Some(path) => Some(load_clusters_file(path)?),
            None => None,
        };
        let clusters_file = config
            .clusters_file
            .clone()
            .zip(inventory.as_ref())
            .map(|(path, clusters)| (path, clusters.iter().map(|c| c.name.clone()).collect()));
        let controllers = controllers(&config, &metrics, inventory)?;
        let api_listener = net::bind(&config.api_listen).await?;
        let api_address = local_addr(&api_listener, &config.api_listen)?;
        let http_listener = tokio::net::TcpListener::bind(&config.http_listen)
            .await
            .map_err(|source| HubError::Http {
                address: config.http_listen.clone(),
                source,
            })?;
        let http_address = http_listener
            .local_addr()
            .map_err(|source| HubError::Http {
                address: config.http_listen.clone(),
                source,
            })?;
        let node = Node::start(config.node.clone()).await?;
        node.time_proposals(metrics.proposal_duration.clone());
        let sync_config = SyncConfig {
            agent_cert_lifetime: config.registration.agent_cert_lifetime,
            ..config.sync.clone()
        };
        let audit = Arc::new(AuditTrail::new(config.audit));
        let sync = Arc::new(SyncHub::start(
            node.clone(),
            sync_config,
            config.clock.clone(),
            audit.clone(),
            metrics.clone(),
        ));
        let context = HubContext {
            node: node.clone(),
            clock: config.clock.clone(),
            metrics: metrics.clone(),
            source: config.source.clone(),
            sync: sync.clone(),
            insecure: !config.authenticate,
            audit,
            registration: config.registration,
            clusters_file,
            status_cache: Default::default(),
        };
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();

        let router = api_router(&context);
        let tls = node.security().tls().cloned();
        tasks.push(tokio::spawn(net::serve(
            "api",
            router,
            api_listener,
            tls.as_ref().map(|tls| tls.api_server()),
            config.api_connections,
            stop.child_token(),
        )));

        let http = HttpContext {
            hub: context.clone(),
            webhook_secret: config.webhook_secret.clone(),
            deliveries: Arc::new(Deliveries::default()),
        };
        tasks.push(tokio::spawn(http::serve(
            http,
            http_listener,
            tls.as_ref().map(|tls| tls.http_server()),
            config.http_connections,
            stop.child_token(),
        )));

        tasks.push(tokio::spawn(count_leader_changes(
            node.clone(),
            metrics.clone(),
            stop.child_token(),
        )));

        tasks.push(tokio::spawn(crate::audit::close_windows(
            node.clone(),
            config.clock.clone(),
            context.audit.clone(),
            stop.child_token(),
        )));

        if let Some(tls) = tls {
            tasks.push(tokio::spawn(renew_node_certificate(
                node.id(),
                tls,
                stop.child_token(),
            )));
        }

        let supervisor = Supervisor::new(node.clone(), config.clock.clone(), controllers);
        let running = supervisor.watch_running();
        tasks.push(supervisor.spawn(stop.child_token()));
        tracing::info!(
            node = node.id(),
            peers = %node.address(),
            api = %api_address,
            http = %http_address,
            "hub started"
        );
        Ok(Hub {
            node,
            api_address,
            http_address,
            running,
            metrics,
            sync,
            stop,
            tasks: Mutex::new(tasks),
        })
    }

    /// The raft node.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// Where the API listener is bound.
    pub fn api_address(&self) -> SocketAddr {
        self.api_address
    }

    /// Where the HTTP listener is bound.
    pub fn http_address(&self) -> SocketAddr {
        self.http_address
    }

    /// The controllers running on this node (none unless it leads).
    pub fn watch_controllers(&self) -> watch::Receiver<Running> {
        self.running.clone()
    }

    /// The hub's counters and gauges.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Agent streams served by this node, and their counters.
    pub fn sync(&self) -> &Arc<SyncHub> {
        &self.sync
    }

    /// Stops controllers, listeners and the node. Safe to call more than once.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let tasks: Vec<JoinHandle<()>> = self.tasks.lock().drain(..).collect();
        for task in tasks {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("a hub task did not stop within 5 s");
            }
        }
        self.sync.shutdown().await;
        self.node.shutdown().await;
    }
}

fn local_addr(listener: &tokio::net::TcpListener, address: &str) -> Result<SocketAddr, NetError> {
    net::local_addr(listener).map_err(|source| NetError::Bind {
        address: address.to_owned(),
        source,
    })
}

/// The gRPC services of the API listener.
pub fn api_router(context: &HubContext) -> GrpcRoutes {
    GrpcRoutes::default()
        .add_service(
            AdminServer::new(AdminService::new(context.clone()))
                .max_decoding_message_size(net::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(net::MAX_MESSAGE_BYTES),
        )
        .add_service(context.sync.service())
}

/// Renews the node's certificate with a third of its lifetime left, for as long as the node
/// runs; a failed renewal is retried every minute (the old certificate serves meanwhile).
async fn renew_node_certificate(id: u64, tls: Arc<net::NodeTls>, stop: CancellationToken) {
    const RETRY: Duration = Duration::from_secs(60);
    loop {
        let wait = tls
            .renew_at()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match tls.renew(std::time::SystemTime::now()) {
            Ok(()) => tracing::info!(
                node = id,
                serial = %tls.credentials().serial,
                "renewed the node certificate"
            ),
            Err(e) => {
                tracing::warn!(node = id, error = %e, "cannot renew the node certificate");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}

/// The clusters a hub's clusters file lists, read once at start.
fn load_clusters_file(path: &Path) -> Result<Vec<InventoryCluster>, HubError> {
    flotilla_core::inventory::load_inventory(path, &Default::default()).map_err(|errors| {
        HubError::Inventory {
            path: path.to_owned(),
            errors,
        }
    })
}

/// The leader-only controllers of this hub, with the clusters file's clusters (read at start)
/// if it has one. The source's mirror is opened here, so a bad one stops the hub at start.
pub fn controllers(
    config: &HubConfig,
    metrics: &Arc<Metrics>,
    inventory: Option<Vec<InventoryCluster>>,
) -> Result<Vec<Arc<dyn Controller>>, HubError> {
    let mut controllers: Vec<Arc<dyn Controller>> =
        vec![Arc::new(Liveness::new(config.sync.liveness.clone()))];
    if config.authenticate {
        controllers.push(Arc::new(
            crate::controller::first_admin::FirstAdminController::new(&config.node.data_dir),
        ));
    }
    if let Some(clusters) = inventory {
        controllers.push(Arc::new(InventoryController::new(clusters)));
    }
    if !config.notifications.is_empty() {
        let receivers = crate::notify::receivers(&config.notifications, &config.node.group)?;
        controllers.push(Arc::new(NotifyController::new(
            receivers,
            config.source.as_ref().map(|s| s.name.clone()),
            metrics.clone(),
        )));
    }
    if let Some(source) = &config.source {
        let mirror = Arc::new(SourceMirror::open(&config.node.data_dir, source)?);
        // Every hub fetches remote charts through its allowed sources (none allowed: a remote
        // chart fails its revision saying so), into its data dir.
        let helm = match &source.render_tools.helm {
            flotilla_core::Helm::Binary(path) => Some(path.clone()),
            flotilla_core::Helm::Unavailable => None,
        };
        let fetcher = crate::controller::charts::HelmFetcher::new(
            helm,
            config.node.data_dir.join("charts"),
            source.chart_sources.clone(),
        )
        .with_timeout(source.chart_fetch_timeout);
        let mut source = source.clone();
        source.render_tools = source.render_tools.clone().with_charts(Arc::new(fetcher));
        let source = &source;
        controllers.push(Arc::new(SourceController::new(
            source.clone(),
            mirror.clone(),
            metrics.clone(),
        )));
        controllers.push(Arc::new(RenderController::new(
            source.clone(),
            mirror,
            metrics.clone(),
        )));
        controllers.push(Arc::new(RolloutController::new(source.clone())));
        controllers.push(Arc::new(RetentionController::new(
            source.name.clone(),
            config.revision_retention,
        )));
    }
    Ok(controllers)
}

impl HubConfig {
    /// The hub config from merged file settings and flags; `credentials` come from the
    /// environment, never from the file.
    pub fn from_file(
        file: crate::config::FileConfig,
        credentials: crate::controller::source::GitCredentials,
    ) -> Result<HubConfig, crate::config::ConfigError> {
        use crate::config::ConfigError;
        use crate::controller::source::{DEFAULT_BRANCH, DEFAULT_POLL_INTERVAL};

        let poll_interval = match &file.poll_interval {
            None => DEFAULT_POLL_INTERVAL,
            Some(text) => text
                .parse::<flotilla_core::spec::Duration>()
                .map_err(|problem| ConfigError::Invalid {
                    field: "--poll-interval / pollInterval",
                    problem,
                })?
                .as_std(),
        };
        if poll_interval.is_zero() {
            return Err(ConfigError::Invalid {
                field: "--poll-interval / pollInterval",
                problem: "must be positive, like `30s`".into(),
            });
        }
        let mut render_limits = flotilla_core::Limits::default();
        if let Some(text) = &file.render_timeout {
            render_limits.render_timeout = text
                .parse::<flotilla_core::spec::Duration>()
                .map_err(|problem| ConfigError::Invalid {
                    field: "--render-timeout / renderTimeout",
                    problem,
                })?
                .as_std();
            if render_limits.render_timeout.is_zero() {
                return Err(ConfigError::Invalid {
                    field: "--render-timeout / renderTimeout",
                    problem: "must be positive, like `20s`".into(),
                });
            }
        }
        if let Some(text) = &file.render_sandbox {
            render_limits.render_sandbox =
                flotilla_core::SandboxMode::parse(text).map_err(|problem| {
                    ConfigError::Invalid {
                        field: "--render-sandbox / renderSandbox",
                        problem,
                    }
                })?;
        }
        // Absolute: renders run in a checkout, where a relative path would name one of the
        // repository's files.
        let helm = match &file.helm {
            Some(helm) if helm.is_file() => {
                Some(helm.canonicalize().map_err(|e| ConfigError::Invalid {
                    field: "--helm / helm",
                    problem: format!("{}: {e}", helm.display()),
                })?)
            }
            Some(helm) => {
                return Err(ConfigError::Invalid {
                    field: "--helm / helm",
                    problem: format!(
                        "{} is not a file; give the path of a helm v4 binary",
                        helm.display()
                    ),
                });
            }
            None => None,
        };
        let chart_fetch_timeout = match &file.chart_fetch_timeout {
            None => crate::controller::charts::DEFAULT_FETCH_TIMEOUT,
            Some(text) => text
                .parse::<flotilla_core::spec::Duration>()
                .map_err(|problem| ConfigError::Invalid {
                    field: "chartFetchTimeout",
                    problem,
                })?
                .as_std(),
        };
        for (index, source) in file.chart_sources.iter().enumerate() {
            let url = &source.url;
            let known = ["https://", "http://", "oci://"].iter().any(|scheme| {
                url.strip_prefix(scheme)
                    .is_some_and(|rest| !rest.is_empty())
            });
            if !known || url.contains(['?', '#', '@']) {
                return Err(ConfigError::Invalid {
                    field: "chartSources",
                    problem: format!(
                        "chartSources[{index}].url `{url}`: give an https:// chart repository or an oci:// registry prefix, without credentials (they go in usernameFile and passwordFile)"
                    ),
                });
            }
        }
        let source = file.repo.clone().map(|url| {
            let mut source = SourceConfig::new(
                url,
                file.branch
                    .clone()
                    .unwrap_or_else(|| DEFAULT_BRANCH.to_owned()),
            );
            source.poll_interval = poll_interval;
            source.render_limits = render_limits.clone();
            if let Some(helm) = &helm {
                source.render_tools.helm = flotilla_core::Helm::Binary(helm.clone());
            }
            source.chart_sources = file.chart_sources.clone();
            source.chart_fetch_timeout = chart_fetch_timeout;
            source.credentials = crate::controller::source::GitCredentials {
                ssh_key: file.ssh_key.clone(),
                ..credentials
            };
            source
        });
        if source.is_none() && (file.branch.is_some() || file.webhook_secret.is_some()) {
            return Err(ConfigError::Invalid {
                field: "--repo / repo",
                problem:
                    "--branch and --webhook-secret need a repository to follow; add --repo URL"
                        .into(),
            });
        }
        if let Some(source) = &source
            && source.branch.trim().is_empty()
        {
            return Err(ConfigError::Invalid {
                field: "--branch / branch",
                problem: "must name a branch, like `main`".into(),
            });
        }
        let api_listen = file
            .api_listen
            .clone()
            .unwrap_or_else(|| DEFAULT_API_LISTEN.to_owned());
        let http_listen = file
            .http_listen
            .clone()
            .unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_owned());
        let webhook_secret = file.webhook_secret.clone().filter(|s| !s.is_empty());
        let revision_retention = file
            .revision_retention
            .unwrap_or(DEFAULT_REVISION_RETENTION);
        let clusters_file = file.clusters.clone();
        let defaults = RegistrationConfig::default();
        let registration = RegistrationConfig {
            bootstrap_token_ttl: lifetime(
                "--bootstrap-token-ttl / bootstrapTokenTtl",
                file.bootstrap_token_ttl.as_deref(),
                defaults.bootstrap_token_ttl,
            )?,
            agent_cert_lifetime: lifetime(
                "--agent-cert-lifetime / agentCertLifetime",
                file.agent_cert_lifetime.as_deref(),
                defaults.agent_cert_lifetime,
            )?,
        };
        let connections = file.connections.clone().unwrap_or_default();
        let api_connections = connections.api()?;
        let http_connections = connections.http()?;
        let metrics = file.metrics_config()?;
        let notifications = crate::config::notifications::receivers(&file.notifications)?;
        let node = file.into_node_config()?;
        Ok(HubConfig {
            authenticate: !matches!(node.security, crate::config::SecurityConfig::Insecure),
            node,
            api_listen,
            http_listen,
            source,
            webhook_secret,
            revision_retention,
            clusters_file,
            sync: SyncConfig::default(),
            clock: crate::clock::system(),
            registration,
            audit: AuditLimits::default(),
            api_connections,
            http_connections,
            metrics,
            notifications,
        })
    }
}

/// Counts in `flotilla_raft_leader_changes_total` each time this node learns of a leader other
/// than the last one it knew (an election with no leader yet counts once, when one is known).
async fn count_leader_changes(node: NodeHandle, metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut leadership = node.watch_leadership();
    let mut last = leadership.borrow().leader;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = leadership.changed() => if changed.is_err() { return },
        }
        let leader = leadership.borrow().leader;
        if leader.is_some() && leader != last {
            if last.is_some() {
                metrics.leader_changes.inc();
            }
            last = leader;
        }
    }
}

/// A positive duration setting like `1h` or `90s`.
fn lifetime(
    field: &'static str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, crate::config::ConfigError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let invalid = |problem: String| crate::config::ConfigError::Invalid { field, problem };
    let duration = text
        .parse::<flotilla_core::spec::Duration>()
        .map_err(invalid)?
        .as_std();
    if duration.is_zero() {
        return Err(invalid("must be positive, like `1h`".into()));
    }
    Ok(duration)
}
