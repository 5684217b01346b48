//! How a consensus node is configured: identity, addresses, how its group starts, raft timers,
//! transport security and the peer listener's limits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_pki::CaPem;

use crate::NodeId;
use crate::storage::SimulatedDisk;
use crate::transport::faults::FaultPlan;
use crate::transport::listener::ListenerLimits;

/// Group name used when none is configured.
pub const DEFAULT_GROUP: &str = "flotilla";

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Raft id of this node (non-zero, unique in the group).
    pub id: NodeId,
    /// Name of the group; a data dir or peer of another group is refused.
    pub group: String,
    /// Where the raft log lives.
    pub data_dir: PathBuf,
    /// Address to listen on for peers and admin calls (port 0 picks a free port).
    pub listen: String,
    /// Address peers reach this node at; defaults to the bound listen address.
    pub advertise: Option<String>,
    /// How the group starts when the data dir is empty (ignored once it holds a log).
    pub bootstrap: Bootstrap,
    /// Raft timers and proposal deadlines.
    pub timing: Timing,
    /// Take a snapshot and drop the log it covers after this many applied entries.
    pub compact_after: u64,
    /// Faults to inject into outgoing peer traffic (tests only; none by default).
    pub faults: Arc<FaultPlan>,
    /// TLS with the group's CA, or none. [`NodeConfig::new`] starts insecure (embedders and
    /// consensus tests); the binary starts with TLS unless `--insecure`.
    pub security: SecurityConfig,
    /// Connection limits and timeouts of the peer listener.
    pub peer_connections: ListenerLimits,
    /// Tests only: the raft log on a simulated disk; `None` = the file in the data dir.
    pub disk: Option<SimulatedDisk>,
}

/// Whether and how a node protects its connections.
#[derive(Debug, Clone)]
pub enum SecurityConfig {
    /// Plain HTTP/2 and HTTP with no authentication: local experiments only.
    Insecure,
    /// TLS on every listener, mutual between hub nodes, with certificates from the group's CA.
    Tls(TlsSettings),
}

/// Where the CA comes from and which names this node's certificate carries.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The CA an operator provides (`--ca-cert`/`--ca-key`). Without one, a group founded by
    /// a single node creates its own; founders of a larger group and joining nodes need it.
    pub ca: Option<CaPem>,
    /// Host names and addresses for this node's certificate besides its listen and advertise
    /// hosts and `localhost`/`127.0.0.1`: the API and HTTP hosts and every `--tls-san`.
    pub names: Vec<String>,
    /// Lifetime of this node's certificate, issued afresh at every start and renewed with a
    /// third of it left.
    pub node_cert_lifetime: Duration,
}

impl TlsSettings {
    /// A group CA created on first start, and no extra names.
    pub fn new() -> Self {
        TlsSettings {
            ca: None,
            names: Vec::new(),
            node_cert_lifetime: flotilla_pki::DEFAULT_NODE_CERT_LIFETIME,
        }
    }
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self::new()
    }
}

/// How a node with an empty data dir starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Found a group with these voters (id → advertised address), this node among them. Every
    /// founding member must be given the same set. A single-node group is `{id: own address}`.
    Members(BTreeMap<NodeId, String>),
    /// Found a single-node group of this node alone (the embedded default).
    Single,
    /// Wait to be added to an existing group, then catch up by snapshot.
    Join,
}

/// Raft timers. Election and heartbeat timeouts count ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Interval between raft ticks.
    pub tick: Duration,
    /// Ticks without a leader before a follower campaigns (randomised in `[n, 2n)`).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// How long `propose` and `read_index` wait before giving up.
    pub request_timeout: Duration,
}

impl Default for Timing {
    /// 50 ms ticks, elections after 0.5–1 s of silence, heartbeats every 100 ms: a failed leader
    /// is replaced in about a second.
    fn default() -> Self {
        Timing {
            tick: Duration::from_millis(50),
            election_ticks: 10,
            heartbeat_ticks: 2,
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl Timing {
    /// The longest randomised election timeout.
    pub fn max_election_timeout(&self) -> Duration {
        self.tick * (2 * self.election_ticks) as u32
    }
}

/// Default number of applied entries between snapshots.
pub const DEFAULT_COMPACT_AFTER: u64 = 10_000;

impl NodeConfig {
    /// A config with defaults for everything but identity and place.
    pub fn new(id: NodeId, data_dir: impl Into<PathBuf>, listen: impl Into<String>) -> Self {
        NodeConfig {
            id,
            group: DEFAULT_GROUP.to_owned(),
            data_dir: data_dir.into(),
            listen: listen.into(),
            advertise: None,
            bootstrap: Bootstrap::Single,
            timing: Timing::default(),
            compact_after: DEFAULT_COMPACT_AFTER,
            faults: Arc::new(FaultPlan::default()),
            security: SecurityConfig::Insecure,
            peer_connections: ListenerLimits::peer(),
            disk: None,
        }
    }
}

/// Problems in a configuration, each naming the field and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The config file is not valid YAML for this schema.
    #[error("config file {path}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        detail: String,
    },
    /// A value is missing or wrong.
    #[error("{field}: {problem}")]
    Invalid {
        /// Which setting (`--flag` or file key).
        field: &'static str,
        /// What is wrong and what to do.
        problem: String,
    },
}
