//! The agent's link to the hub: one `AgentSync` stream at a time to any node of the hub group,
//! failing over to the next node on disconnect with jittered exponential backoff.
//!
//! On each stream the agent says hello with the identity of the cluster it talks to (read
//! afresh, see [`crate::cluster_identity`]), its instance (random per process, so the hub can
//! tell its reconnect from another agent) and the bundle hashes its engine holds; the hub answers
//! with the desired set and only the bundles that differ, then pushes changes. Bundles are
//! reassembled from chunks, checked against their content hash, handed to the [`Engine`]
//! (which persists them before the agent acks) and removals are pruned. The engine's report
//! events go the other way; those raised while no hub is reachable wait in a bounded queue,
//! and every new stream starts with a snapshot of where each bundle stands.
//!
//! A hub that refuses the agent (`PERMISSION_DENIED`: its cluster or credentials are not the
//! ones the hub knows; `ALREADY_EXISTS`: another agent streams for the cluster) refuses it on
//! every node, so the agent waits the longest backoff before the next attempt instead of
//! cycling through the nodes.
//!
//! The engine keeps enforcing its last desired state whatever happens to the link: losing
//! every hub changes nothing in the cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api_probe::ApiReachability;
use crate::bundle::{BundleRevision, HeldBundle};
use crate::capabilities::Capabilities;
use crate::cluster_identity::ClusterUid;
use crate::engine::{BundleStatus, Engine, EngineError};
use crate::report::Report;
use flotilla_core::clock::Clock;

mod assembly;
mod backoff;
mod counters;
pub mod identity;
mod outbox;
pub mod run;
mod session;

#[cfg(test)]
mod tests;

pub use assembly::AssemblyError;
pub use backoff::{Backoff, FixedRandom, Random, ThreadRandom};
pub use counters::LinkStats;
pub use identity::{AgentIdentity, IdentityError};

use counters::LinkCounters;
use outbox::Outbox;
use session::Outcome;

/// What the link drives: the agent's [`Engine`] on its cluster. The swarm benchmark drives
/// thin agents that keep bundles in memory through the same link, so that thousands of real
/// streams (registration, certificates, hellos, chunks, acks, reports) load a hub from one
/// machine; nothing else implements it.
#[tonic::async_trait]
pub trait LinkEngine: Send + Sync + 'static {
    /// The cluster's identity, read afresh for every hello.
    async fn cluster_identity(&self) -> ClusterUid;
    /// Whether the cluster's API server answers; notified on every change.
    fn api_reachability(&self) -> watch::Receiver<ApiReachability>;
    /// What the cluster serves, once read; notified on every change.
    fn capabilities(&self) -> watch::Receiver<Option<Capabilities>>;
    /// The engine's report events.
    fn subscribe(&self) -> broadcast::Receiver<Report>;
    /// Takes a bundle revision to enforce; it is persisted when this returns.
    fn apply(&self, revision: BundleRevision) -> Result<(), EngineError>;
    /// Stops enforcing a bundle and prunes what it owned.
    async fn remove(&self, bundle: &str) -> Result<(), EngineError>;
    /// The bundles held, for the hello.
    fn held(&self) -> Vec<HeldBundle>;
    /// Where each bundle stands, for the first reports of a stream.
    fn status(&self) -> Vec<BundleStatus>;
}

#[tonic::async_trait]
impl LinkEngine for Engine {
    async fn cluster_identity(&self) -> ClusterUid {
        Engine::cluster_identity(self).await
    }
    fn api_reachability(&self) -> watch::Receiver<ApiReachability> {
        Engine::api_reachability(self)
    }
    fn capabilities(&self) -> watch::Receiver<Option<Capabilities>> {
        Engine::capabilities(self)
    }
    fn subscribe(&self) -> broadcast::Receiver<Report> {
        Engine::subscribe(self)
    }
    fn apply(&self, revision: BundleRevision) -> Result<(), EngineError> {
        Engine::apply(self, revision)
    }
    async fn remove(&self, bundle: &str) -> Result<(), EngineError> {
        Engine::remove(self, bundle).await
    }
    fn held(&self) -> Vec<HeldBundle> {
        Engine::held(self)
    }
    fn status(&self) -> Vec<BundleStatus> {
        Engine::status(self)
    }
}

/// How the link behaves.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Every hub node's API address (`HOST:PORT` or `http://HOST:PORT`).
    pub hubs: Vec<String>,
    /// The cluster this agent serves, as registered in the hub.
    pub cluster: String,
    /// How often the agent sends heartbeats (the hub is told in the hello).
    pub heartbeat_interval: Duration,
    /// Hub heartbeat intervals without any message before the stream counts as dead.
    pub heartbeat_misses: u32,
    /// Delays between connection attempts.
    pub backoff: Backoff,
    /// Largest message the agent accepts; the hub chunks bundles below it.
    pub max_message_bytes: usize,
    /// Largest bundle accepted, compressed or decompressed.
    pub max_bundle_bytes: u64,
    /// How long a TCP connection to a node may take.
    pub connect_timeout: Duration,
    /// How long the node may take to answer the hello (it may first catch up with the group).
    pub welcome_timeout: Duration,
    /// Shortest pause between two report messages: an event after a quiet period is sent at
    /// once, the events arriving during the pause together in the next message.
    pub report_flush: Duration,
    /// The client certificate presented over TLS; `None` speaks plain HTTP/2 to an
    /// `--insecure` hub.
    pub identity: Option<Arc<AgentIdentity>>,
}

impl LinkConfig {
    /// A link to `hubs` for `cluster`, with default timing.
    pub fn new(hubs: Vec<String>, cluster: impl Into<String>) -> Self {
        LinkConfig {
            hubs,
            cluster: cluster.into(),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_misses: 3,
            backoff: Backoff::default(),
            max_message_bytes: 4 * 1024 * 1024,
            max_bundle_bytes: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(2),
            welcome_timeout: Duration::from_secs(10),
            report_flush: Duration::from_millis(100),
            identity: None,
        }
    }
}

/// Why a link cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No hub address was given.
    #[error("no hub address given: pass --hub HOST:PORT[,HOST:PORT...] with every hub node")]
    NoHubs,
    /// A hub address is not usable.
    #[error("hub address `{address}` is not HOST:PORT: {detail}")]
    BadAddress {
        /// The address.
        address: String,
        /// Why.
        detail: String,
    },
    /// The cluster name is empty.
    #[error("no cluster name given: pass --cluster NAME as registered in the hub")]
    NoCluster,
}

/// The hub node the link is streaming with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The address it was reached at.
    pub address: String,
    /// Its raft id.
    pub node: u64,
}

/// What the link's task and its handle share.
struct Shared {
    engine: Arc<dyn LinkEngine>,
    config: LinkConfig,
    random: Arc<dyn Random>,
    clock: Arc<dyn Clock>,
    counters: LinkCounters,
    connection: watch::Sender<Option<Connection>>,
    /// The highest hub state index seen, sent in every hello so no node answers from an older
    /// state than one the agent has already acted on.
    known_index: AtomicU64,
    /// This link's instance, the same in every hello.
    instance: String,
    stop: CancellationToken,
}

/// A running link. Dropping it stops the link; [`HubLink::shutdown`] waits for it.
pub struct HubLink {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl HubLink {
    /// Starts connecting to the hub on the current tokio runtime.
    pub fn start(
        engine: Arc<dyn LinkEngine>,
        config: LinkConfig,
        random: Arc<dyn Random>,
        clock: Arc<dyn Clock>,
    ) -> Result<HubLink, LinkError> {
        if config.hubs.is_empty() {
            return Err(LinkError::NoHubs);
        }
        if config.cluster.is_empty() {
            return Err(LinkError::NoCluster);
        }
        for address in &config.hubs {
            session::endpoint(address, &config)?;
        }
        let reports = engine.subscribe();
        let shared = Arc::new(Shared {
            engine,
            config,
            random,
            clock,
            counters: LinkCounters::default(),
            connection: watch::Sender::new(None),
            known_index: AtomicU64::new(0),
            // Unguessable, so an agent holding copied credentials cannot pass for this one's
            // reconnect; not from `random`, which tests fix.
            instance: format!("{:032x}", rand::random::<u128>()),
            stop: CancellationToken::new(),
        });
        let link = Link {
            shared: Arc::clone(&shared),
            reports,
            outbox: Outbox::default(),
            resync: true,
        };
        let task = tokio::spawn(link.run());
        Ok(HubLink {
            shared,
            task: Some(task),
        })
    }

    /// Counters of the traffic so far.
    pub fn stats(&self) -> LinkStats {
        self.shared.counters.snapshot()
    }

    /// The node streamed with right now, if any; notified on every change.
    pub fn watch_connection(&self) -> watch::Receiver<Option<Connection>> {
        self.shared.connection.subscribe()
    }

    /// This link's instance: the same in every hello, random per link.
    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// The highest hub state index seen.
    pub fn known_index(&self) -> u64 {
        self.shared.known_index.load(Ordering::Relaxed)
    }

    /// Closes the stream and stops reconnecting. The engine is left running.
    pub async fn shutdown(mut self) {
        self.shared.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HubLink {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

/// The link's task: its connection attempts and what it carries between streams.
struct Link {
    shared: Arc<Shared>,
    reports: broadcast::Receiver<Report>,
    outbox: Outbox,
    /// Events were lost (or no stream has opened yet): the next stream starts with a snapshot.
    resync: bool,
}

impl Link {
    async fn run(mut self) {
        let hubs = self.shared.config.hubs.clone();
        // Agents started together spread over the nodes instead of all trying the first.
        let mut next = (self.shared.random.unit() * hubs.len() as f64) as usize % hubs.len();
        let mut failures = 0u32;
        loop {
            let address = &hubs[next];
            next = (next + 1) % hubs.len();
            self.shared.counters.connect_attempt();
            let outcome = session::run(&mut self, address).await;
            self.shared.connection.send_replace(None);
            let backoff = &self.shared.config.backoff;
            let random = self.shared.random.as_ref();
            let delay = match outcome {
                Outcome::Stopped => return,
                Outcome::Ended {
                    refused: true,
                    reason,
                    ..
                } => {
                    failures = failures.saturating_add(1);
                    let delay = backoff.after_refusal(random);
                    tracing::warn!(hub = %address, %reason, ?delay,
                        "the hub refused this agent; trying again later");
                    delay
                }
                Outcome::Ended {
                    welcomed: true,
                    reason,
                    ..
                } => {
                    tracing::info!(hub = %address, %reason, "hub stream ended; failing over");
                    failures = 0;
                    backoff.delay(failures, random)
                }
                Outcome::Ended { reason, .. } => {
                    tracing::warn!(hub = %address, %reason, "cannot stream with hub node");
                    failures = failures.saturating_add(1);
                    backoff.delay(failures, random)
                }
            };
            if !self.idle(delay).await {
                return;
            }
        }
    }

    /// Waits `delay`, queueing report events meanwhile; false when the link is stopped.
    async fn idle(&mut self, delay: Duration) -> bool {
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = self.shared.stop.cancelled() => return false,
                () = tokio::time::sleep_until(until) => return true,
                received = self.reports.recv() => {
                    if !self.queue(received) {
                        return false;
                    }
                }
            }
        }
    }

    /// Queues one received engine event; false when the engine is gone.
    fn queue(&mut self, received: Result<Report, broadcast::error::RecvError>) -> bool {
        match received {
            Ok(report) => {
                let dropped = self.outbox.push(&report);
                if dropped > 0 {
                    self.shared.counters.reports_dropped(dropped);
                    self.resync = true;
                }
                true
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.shared
                    .counters
                    .reports_dropped(usize::try_from(n).unwrap_or(usize::MAX));
                self.resync = true;
                true
            }
            Err(broadcast::error::RecvError::Closed) => false,
        }
    }
}
