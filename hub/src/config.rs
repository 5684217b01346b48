//! How a hub node is configured: the consensus settings (identity, addresses, how its group
//! starts, raft timers; defined in `flotilla_consensus::config` and re-exported here) and the
//! hub's own.
//!
//! The binary reads a YAML file (`--config`) into [`FileConfig`], lets command-line flags
//! override it, and turns the result into a [`NodeConfig`]; embedders build a `NodeConfig`
//! directly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_consensus::transport::listener::ListenerLimits;
use serde::Deserialize;

pub use flotilla_consensus::config::{
    Bootstrap, ConfigError, DEFAULT_COMPACT_AFTER, DEFAULT_GROUP, NodeConfig, SecurityConfig,
    Timing, TlsSettings,
};

use crate::state::NodeId;

pub mod notifications;

/// The YAML config file. Every key is optional; flags override keys.
///
/// ```yaml
/// id: 1
/// group: flotilla
/// dataDir: /var/lib/flotilla-hub
/// listen: 0.0.0.0:7070
/// advertise: hub-1.example:7070
/// peers: {1: hub-1.example:7070, 2: hub-2.example:7070, 3: hub-3.example:7070}
/// join: false
/// tickMillis: 50
/// electionTicks: 10
/// heartbeatTicks: 2
/// compactAfter: 10000
/// apiListen: 0.0.0.0:7071
/// httpListen: 0.0.0.0:7080
/// repo: https://git.example/fleet.git
/// branch: main
/// pollInterval: 30s
/// webhookSecret: change-me
/// revisionRetention: 10
/// clusters: /etc/flotilla/clusters.yaml
/// sshKey: /etc/flotilla/deploy-key
/// insecure: false
/// caCert: /etc/flotilla/ca.crt
/// caKey: /etc/flotilla/ca.key
/// tlsSans: [hub.example, 10.0.0.5]
/// agentCertLifetime: 24h
/// bootstrapTokenTtl: 1h
/// renderTimeout: 20s
/// renderSandbox: required
/// metrics: {clusterInfo: true, clusterLabels: [region]}
/// notifications:           # see `config::notifications`
///   - {name: ops, type: webhook, url: https://ops.example/flotilla, secretFile: /etc/flotilla/ops.key}
/// connections:             # per listener: api, http, peer; every key optional
///   api: {maxConnections: 16384, maxConnectionsPerPeer: 4096, idleTimeout: 30s}
///   http: {maxConnectionsPerPeer: 64, headerReadTimeout: 10s, requestTimeout: 30s}
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileConfig {
    /// Raft id.
    pub id: Option<NodeId>,
    /// Group name.
    pub group: Option<String>,
    /// Data dir.
    pub data_dir: Option<PathBuf>,
    /// Listen address.
    pub listen: Option<String>,
    /// Advertised address.
    pub advertise: Option<String>,
    /// Founding members, id → address.
    pub peers: Option<BTreeMap<NodeId, String>>,
    /// Join an existing group instead of founding one.
    pub join: Option<bool>,
    /// Tick interval in milliseconds.
    pub tick_millis: Option<u64>,
    /// Election timeout in ticks.
    pub election_ticks: Option<usize>,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: Option<usize>,
    /// Applied entries between snapshots.
    pub compact_after: Option<u64>,
    /// API listener address.
    pub api_listen: Option<String>,
    /// HTTP listener address.
    pub http_listen: Option<String>,
    /// Git repository URL to follow.
    pub repo: Option<String>,
    /// Branch to follow.
    pub branch: Option<String>,
    /// Time between fetches, like `30s`.
    pub poll_interval: Option<String>,
    /// Secret webhooks are verified with.
    pub webhook_secret: Option<String>,
    /// Revisions kept besides those in use.
    pub revision_retention: Option<usize>,
    /// Cluster inventory file registered at start.
    pub clusters: Option<PathBuf>,
    /// ssh private key for the repository.
    pub ssh_key: Option<PathBuf>,
    /// No TLS and no authentication (local experiments only).
    pub insecure: Option<bool>,
    /// The group CA's certificate (PEM), with `caKey`.
    pub ca_cert: Option<PathBuf>,
    /// The group CA's private key (PEM), with `caCert`.
    pub ca_key: Option<PathBuf>,
    /// Extra names for this node's certificate.
    pub tls_sans: Option<Vec<String>>,
    /// Lifetime of agent certificates, like `24h`.
    pub agent_cert_lifetime: Option<String>,
    /// Lifetime of bootstrap tokens, like `1h`.
    pub bootstrap_token_ttl: Option<String>,
    /// Longest one render (a `kustomize build`) may run, like `20s`.
    pub render_timeout: Option<String>,
    /// How renders are confined: `required`, `preferred` or `off`.
    pub render_sandbox: Option<String>,
    /// The helm binary chart bundles are rendered (and remote charts fetched) with (default:
    /// `helm` on `PATH`).
    pub helm: Option<PathBuf>,
    /// Chart repositories and OCI registries chart bundles may fetch from.
    #[serde(default)]
    pub chart_sources: Vec<ChartSource>,
    /// Longest one chart fetch may take, like `60s`.
    pub chart_fetch_timeout: Option<String>,
    /// Connection limits and timeouts per listener.
    pub connections: Option<ConnectionsFile>,
    /// What `/metrics` shows of each cluster.
    pub metrics: Option<MetricsFile>,
    /// Where notices are sent (`config::notifications`).
    #[serde(default)]
    pub notifications: Vec<notifications::ReceiverFile>,
}

/// What `/metrics` shows of each cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Five series per cluster: `flotilla_cluster_info` (its stage and `cluster_labels`),
    /// whether its agent is online and reaches its API, and its bundles not synced and not
    /// healthy. At 10,000 clusters that is 50,000 series: a fleet that cannot afford them turns
    /// it off and keeps the per-stage counts.
    pub cluster_info: bool,
    /// Cluster labels copied onto `flotilla_cluster_info` as `label_<key>` (characters a
    /// Prometheus label name cannot hold become `_`).
    pub cluster_labels: Vec<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            cluster_info: true,
            cluster_labels: Vec::new(),
        }
    }
}

/// `key` as a Prometheus label name: characters other than letters, digits and `_` become `_`.
pub fn metric_label_name(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The `metrics` key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsFile {
    /// One `flotilla_cluster_info` series per cluster (default true).
    pub cluster_info: Option<bool>,
    /// Cluster labels copied onto it.
    #[serde(default)]
    pub cluster_labels: Vec<String>,
}

impl FileConfig {
    /// The `metrics` key, checked: label keys must be cluster label keys.
    pub fn metrics_config(&self) -> Result<MetricsConfig, ConfigError> {
        let file = self.metrics.clone().unwrap_or_default();
        if let Some(bad) = file.cluster_labels.iter().find(|k| k.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                field: "metrics.clusterLabels",
                problem: format!("`{bad}` is empty; list cluster label keys, like `region`"),
            });
        }
        let mut seen = std::collections::BTreeMap::new();
        for key in &file.cluster_labels {
            let name = metric_label_name(key);
            if let Some(other) = seen.insert(name.clone(), key.clone()) {
                return Err(ConfigError::Invalid {
                    field: "metrics.clusterLabels",
                    problem: format!(
                        "`{other}` and `{key}` would both be the metric label `label_{name}`; \
                         list each key once, and keys that differ in more than `.`, `/` or `-`"
                    ),
                });
            }
        }
        Ok(MetricsConfig {
            cluster_info: file.cluster_info.unwrap_or(true),
            cluster_labels: file.cluster_labels,
        })
    }
}

/// The `connections` key: limits and timeouts per listener. A key left out keeps the
/// listener's default ([`ListenerLimits::api`], [`ListenerLimits::http`],
/// [`ListenerLimits::peer`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsFile {
    /// The API listener (agents, the CLI).
    pub api: Option<LimitsFile>,
    /// The HTTP listener (webhooks, dashboard, metrics).
    pub http: Option<LimitsFile>,
    /// The peer listener (hub nodes, `flotilla-hub` commands).
    pub peer: Option<LimitsFile>,
}

/// One listener's limits and timeouts in the config file; durations like `30s`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsFile {
    /// Connections open at once, TLS handshakes included.
    pub max_connections: Option<usize>,
    /// Connections open at once from one address (an IPv6 /64).
    pub max_connections_per_peer: Option<usize>,
    /// Requests open at once on one HTTP/2 connection.
    pub max_concurrent_streams: Option<u32>,
    /// Longest TLS handshake.
    pub handshake_timeout: Option<String>,
    /// Longest wait for an HTTP/1 request's headers.
    pub header_read_timeout: Option<String>,
    /// Longest an HTTP request, body included, may take to be answered.
    pub request_timeout: Option<String>,
    /// Closes a connection without a byte either way for this long.
    pub idle_timeout: Option<String>,
    /// HTTP/2 pings to a client not heard from for this long, or `off`.
    pub keepalive_interval: Option<String>,
    /// Drops a connection whose ping goes unanswered this long.
    pub keepalive_timeout: Option<String>,
}

impl ConnectionsFile {
    /// The API listener's limits: the defaults with this file's settings over them, checked.
    pub fn api(&self) -> Result<ListenerLimits, ConfigError> {
        LimitsFile::resolve(self.api.as_ref(), "api", ListenerLimits::api())
    }

    /// The HTTP listener's limits, as [`ConnectionsFile::api`].
    pub fn http(&self) -> Result<ListenerLimits, ConfigError> {
        LimitsFile::resolve(self.http.as_ref(), "http", ListenerLimits::http())
    }

    /// The peer listener's limits, as [`ConnectionsFile::api`].
    pub fn peer(&self) -> Result<ListenerLimits, ConfigError> {
        LimitsFile::resolve(self.peer.as_ref(), "peer", ListenerLimits::peer())
    }
}

impl LimitsFile {
    /// `defaults` with `file`'s settings over them, checked; `listener` names it in errors.
    fn resolve(
        file: Option<&Self>,
        listener: &str,
        defaults: ListenerLimits,
    ) -> Result<ListenerLimits, ConfigError> {
        let invalid = |problem: String| ConfigError::Invalid {
            field: "connections",
            problem: format!("{listener}.{problem}"),
        };
        let Some(file) = file else {
            return Ok(defaults);
        };
        let duration = |key: &str, text: &Option<String>, default: Duration| match text {
            None => Ok(default),
            Some(text) => text
                .parse::<flotilla_core::spec::Duration>()
                .map(|d| d.as_std())
                .map_err(|problem| invalid(format!("{key}: {problem}"))),
        };
        let keepalive_interval = match file.keepalive_interval.as_deref() {
            Some("off") => None,
            Some(_) => Some(duration(
                "keepaliveInterval",
                &file.keepalive_interval,
                Duration::ZERO,
            )?),
            None => defaults.keepalive_interval,
        };
        let limits = ListenerLimits {
            max_connections: file.max_connections.unwrap_or(defaults.max_connections),
            max_connections_per_peer: file
                .max_connections_per_peer
                .unwrap_or(defaults.max_connections_per_peer),
            max_concurrent_streams: file
                .max_concurrent_streams
                .unwrap_or(defaults.max_concurrent_streams),
            handshake_timeout: duration(
                "handshakeTimeout",
                &file.handshake_timeout,
                defaults.handshake_timeout,
            )?,
            header_read_timeout: duration(
                "headerReadTimeout",
                &file.header_read_timeout,
                defaults.header_read_timeout,
            )?,
            request_timeout: duration(
                "requestTimeout",
                &file.request_timeout,
                defaults.request_timeout,
            )?,
            idle_timeout: duration("idleTimeout", &file.idle_timeout, defaults.idle_timeout)?,
            keepalive_interval,
            keepalive_timeout: duration(
                "keepaliveTimeout",
                &file.keepalive_timeout,
                defaults.keepalive_timeout,
            )?,
        };
        limits.check().map_err(invalid)?;
        Ok(limits)
    }
}

impl FileConfig {
    /// Reads and parses a YAML config file; unknown keys are errors.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    }

    /// Turns the merged settings into a node config, checking each.
    pub fn into_node_config(self) -> Result<NodeConfig, ConfigError> {
        let id = self.id.filter(|id| *id != 0).ok_or(ConfigError::Invalid {
            field: "--id / id",
            problem: "a non-zero node id is required".into(),
        })?;
        let data_dir = self.data_dir.ok_or(ConfigError::Invalid {
            field: "--data-dir / dataDir",
            problem: "a data directory is required".into(),
        })?;
        // Absolute from here on: renderers run in a checkout, where a relative path would
        // name the repository's files (a cached chart package, say).
        let data_dir = std::path::absolute(&data_dir).map_err(|e| ConfigError::Invalid {
            field: "--data-dir / dataDir",
            problem: format!("{}: {e}", data_dir.display()),
        })?;
        let listen = self.listen.ok_or(ConfigError::Invalid {
            field: "--listen / listen",
            problem: "a listen address (HOST:PORT) is required".into(),
        })?;
        let join = self.join.unwrap_or(false);
        let bootstrap = match (self.peers, join) {
            (Some(_), true) => {
                return Err(ConfigError::Invalid {
                    field: "--join / join",
                    problem: "a joining node takes no --peers: the group's leader adds it".into(),
                });
            }
            (None, true) => Bootstrap::Join,
            (None, false) => Bootstrap::Single,
            (Some(peers), false) if !peers.contains_key(&id) => {
                return Err(ConfigError::Invalid {
                    field: "--peers / peers",
                    problem: format!(
                        "the founding members must include this node (id {id}); add {id}=ADDR"
                    ),
                });
            }
            (Some(peers), false) => Bootstrap::Members(peers),
        };
        let defaults = Timing::default();
        let timing = Timing {
            tick: self
                .tick_millis
                .map(Duration::from_millis)
                .unwrap_or(defaults.tick),
            election_ticks: self.election_ticks.unwrap_or(defaults.election_ticks),
            heartbeat_ticks: self.heartbeat_ticks.unwrap_or(defaults.heartbeat_ticks),
            request_timeout: defaults.request_timeout,
        };
        if timing.tick.is_zero() || timing.heartbeat_ticks == 0 {
            return Err(ConfigError::Invalid {
                field: "tickMillis / heartbeatTicks",
                problem: "must be positive".into(),
            });
        }
        if timing.election_ticks <= timing.heartbeat_ticks {
            return Err(ConfigError::Invalid {
                field: "electionTicks",
                problem: format!(
                    "must be greater than heartbeatTicks ({}); ten times is usual",
                    timing.heartbeat_ticks
                ),
            });
        }
        Ok(NodeConfig {
            id,
            group: self.group.unwrap_or_else(|| DEFAULT_GROUP.to_owned()),
            data_dir,
            listen,
            advertise: self.advertise,
            bootstrap,
            timing,
            compact_after: self.compact_after.unwrap_or(DEFAULT_COMPACT_AFTER).max(1),
            faults: Default::default(),
            disk: None,
            peer_connections: self.connections.unwrap_or_default().peer()?,
            security: security(
                self.insecure.unwrap_or(false),
                self.ca_cert,
                self.ca_key,
                self.tls_sans.unwrap_or_default(),
            )?,
        })
    }
}

fn security(
    insecure: bool,
    ca_cert: Option<PathBuf>,
    ca_key: Option<PathBuf>,
    names: Vec<String>,
) -> Result<SecurityConfig, ConfigError> {
    if insecure {
        if ca_cert.is_some() || ca_key.is_some() || !names.is_empty() {
            return Err(ConfigError::Invalid {
                field: "--insecure / insecure",
                problem: "turns TLS off; drop --ca-cert, --ca-key and --tls-san, or --insecure"
                    .into(),
            });
        }
        return Ok(SecurityConfig::Insecure);
    }
    let ca = match (ca_cert, ca_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(
            flotilla_pki::GroupCa::from_files(&cert, &key)
                .map_err(|e| ConfigError::Invalid {
                    field: "--ca-cert / --ca-key",
                    problem: e.to_string(),
                })?
                .to_pem(),
        ),
        _ => {
            return Err(ConfigError::Invalid {
                field: "--ca-cert / --ca-key",
                problem: "give both the CA certificate and its key, or neither".into(),
            });
        }
    };
    Ok(SecurityConfig::Tls(TlsSettings {
        ca,
        names,
        ..TlsSettings::new()
    }))
}

/// Parses `ID=ADDR,ID=ADDR,...`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item.split_once('=').ok_or_else(|| ConfigError::Invalid {
            field: "--peers",
            problem: format!("`{item}` is not ID=HOST:PORT"),
        })?;
        let id: NodeId = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id != 0)
            .ok_or_else(|| ConfigError::Invalid {
                field: "--peers",
                problem: format!("`{id}` in `{item}` is not a non-zero node id"),
            })?;
        if peers.insert(id, addr.trim().to_owned()).is_some() {
            return Err(ConfigError::Invalid {
                field: "--peers",
                problem: format!("node id {id} is listed twice"),
            });
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests;

/// When clusters count as offline, and how often the leader looks.
#[derive(Debug, Clone)]
pub struct LivenessConfig {
    /// A cluster no presence report has named for this long is offline. Also how long a new
    /// leader listens before it marks anything offline. Keep it at least two or three presence
    /// periods, so one late report does not flap a cluster.
    pub offline_after: Duration,
    /// How often the leader looks for transitions (it also looks at every report).
    pub check_interval: Duration,
}

impl Default for LivenessConfig {
    /// Offline three seconds after the last report naming the cluster. With the default
    /// presence period (1 s) and agent heartbeats (1 s, 3 missed), an agent whose connection
    /// closes is offline within about three seconds, one that vanishes silently within about six,
    /// and one whose hub node died within about three — four when that node led (an election,
    /// then the new leader's wait).
    fn default() -> Self {
        LivenessConfig {
            offline_after: Duration::from_secs(3),
            check_interval: Duration::from_millis(250),
        }
    }
}

/// A chart repository or registry prefix the hub fetches from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChartSource {
    /// `https://…` chart repository, or `oci://host/path` prefix; a bundle's `helm.repo` must
    /// equal it or lie below it.
    pub url: String,
    /// File holding the user name, for basic authentication.
    #[serde(default)]
    pub username_file: Option<PathBuf>,
    /// File holding the password (or token).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for it, beside the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Talk plain HTTP to an `oci://` registry (loopback and test registries only).
    #[serde(default)]
    pub plain_http: bool,
}

impl ChartSource {
    /// Whether a bundle's `repo` is this source or below it (by whole path segments).
    pub fn covers(&self, repo: &str) -> bool {
        let base = self.url.trim_end_matches('/');
        repo == base
            || repo
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}
