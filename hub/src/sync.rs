//! The agent protocol, hub side: the `AgentSync` stream that every node serves from its own
//! replicated state, agent reports batched into raft, and presence for the liveness decisions.
//!
//! [`SyncHub::start`] on a node runs the background parts — the report batcher and the presence
//! reporter — and [`SyncHub::service`] is the tonic service to add to the node's API listener.
//! The leader's liveness controller (`controller::liveness`) turns presence into
//! `SetLiveness` decisions.
//!
//! A stream's life (see `session`): the agent's hello names its cluster, the Kubernetes
//! cluster it talks to (checked against the one bound to the name, `identity`), its instance
//! (one per cluster may stream, `streams` and `presence`) and the bundle hashes it holds; the
//! node answers with a `Welcome` (the desired set) and only the bundles whose hash
//! differs, then pushes what changes as its applied index advances. Bundles travel as their
//! zstd blob from the state, in chunks below the agent's message limit. Reports go the other
//! way and are turned into `RecordHealth` batches that carry only changes.

use std::sync::Arc;
use std::time::Duration;

use flotilla_proto::v1::agent_sync_server::{AgentSync, AgentSyncServer};
use flotilla_proto::v1::{
    AgentCertificate, AgentMessage, HubMessage, RegisterRequest, RenewRequest,
};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::audit::AuditTrail;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::node::NodeHandle;

mod chunk;
mod counters;
mod identity;
mod refusal;
pub mod register;
mod report_presence;
mod reports;
mod session;
mod streams;

#[cfg(test)]
mod tests;

pub use crate::config::LivenessConfig;
pub use counters::{SyncCounters, SyncStats};

use crate::node::presence::LeaderChannel;
use refusal::RefusalLog;
use reports::ReportBatcher;
use streams::Streams;

/// Largest message a node accepts from an agent (report batches are split below it).
pub const MAX_AGENT_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// How the hub side of the protocol behaves.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// How often a node sends heartbeats on each stream (the agent is told in the welcome).
    pub heartbeat_interval: Duration,
    /// Heartbeat intervals of the agent without any message before its stream counts as dead.
    pub heartbeat_misses: u32,
    /// Largest bundle chunk a node sends; it also stays below the agent's declared limit.
    pub max_chunk_bytes: usize,
    /// How long a node waits for the hello after a stream opens.
    pub hello_timeout: Duration,
    /// How long a node that is behind the agent's known state may take to catch up before it
    /// refuses the stream (the agent then tries another node).
    pub catch_up_timeout: Duration,
    /// Shortest pause between two `RecordHealth` batches of a node: a change after a quiet
    /// period is proposed at once, the changes arriving during the pause as the next batch.
    pub report_batch_interval: Duration,
    /// How often every node tells the leader which clusters it holds streams for.
    pub presence_interval: Duration,
    /// When the leader's liveness controller marks clusters offline.
    pub liveness: LivenessConfig,
    /// Lifetime of the client certificates `Register` and `Renew` issue.
    pub agent_cert_lifetime: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_misses: 3,
            max_chunk_bytes: 1024 * 1024,
            hello_timeout: Duration::from_secs(10),
            catch_up_timeout: Duration::from_secs(2),
            report_batch_interval: Duration::from_millis(250),
            presence_interval: Duration::from_secs(1),
            liveness: LivenessConfig::default(),
            agent_cert_lifetime: flotilla_pki::DEFAULT_AGENT_CERT_LIFETIME,
        }
    }
}

/// What every stream and background task of a node's sync side shares.
struct Shared {
    node: NodeHandle,
    config: SyncConfig,
    clock: Arc<dyn Clock>,
    counters: SyncCounters,
    streams: Streams,
    reports: ReportBatcher,
    stop: CancellationToken,
    /// The node's per-actor limits for auditing refusals, shared with the Admin API.
    audit: Arc<AuditTrail>,
    /// Refusals counted by reason and cluster.
    metrics: Arc<Metrics>,
    /// Which refusals are logged.
    refusals: RefusalLog,
    /// The leader, asked before a stream is served and told which streams this node holds.
    leader: Arc<LeaderChannel>,
}

impl Shared {
    fn registration_lifetime(&self) -> Duration {
        self.config.agent_cert_lifetime
    }
}

/// The hub side of the agent protocol on one node.
pub struct SyncHub {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl SyncHub {
    /// Starts the report batcher and the presence reporter on the current tokio runtime. Streams
    /// are served once [`SyncHub::service`] is added to a listener. Refused agent calls are
    /// audited within `audit`'s per-actor limits and counted in `metrics`.
    pub fn start(
        node: NodeHandle,
        config: SyncConfig,
        clock: Arc<dyn Clock>,
        audit: Arc<AuditTrail>,
        metrics: Arc<Metrics>,
    ) -> SyncHub {
        // Should this node lead, a stream it heard of counts as live as long as liveness says.
        node.presence()
            .set_holder_ttl(config.liveness.offline_after);
        let shared = Arc::new(Shared {
            node,
            config,
            clock,
            audit,
            metrics,
            refusals: RefusalLog::default(),
            leader: Arc::default(),
            counters: SyncCounters::default(),
            streams: Streams::default(),
            reports: ReportBatcher::default(),
            stop: CancellationToken::new(),
        });
        let tasks = vec![
            tokio::spawn(reports::run(Arc::clone(&shared))),
            tokio::spawn(report_presence::report_loop(
                shared.node.clone(),
                shared.streams.clone(),
                Arc::clone(&shared.leader),
                shared.config.presence_interval,
                shared.stop.clone(),
            )),
        ];
        SyncHub {
            shared,
            tasks: Mutex::new(tasks),
        }
    }

    /// The `AgentSync` service, to add to the node's API listener.
    pub fn service(&self) -> AgentSyncServer<SyncService> {
        AgentSyncServer::new(SyncService {
            shared: Arc::clone(&self.shared),
        })
        .max_decoding_message_size(MAX_AGENT_MESSAGE_BYTES)
        .max_encoding_message_size(self.shared.config.max_chunk_bytes + chunk::OVERHEAD_BYTES)
    }

    /// Counters of messages, bytes, bundles and reports since start.
    pub fn stats(&self) -> SyncStats {
        self.shared.counters.snapshot(self.shared.streams.len())
    }

    /// The clusters with a live stream on this node, in name order.
    pub fn clusters(&self) -> Vec<String> {
        self.shared.streams.clusters()
    }

    /// Ends every stream (agents fail over to another node) and stops the background tasks.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        let tasks: Vec<JoinHandle<()>> = self.tasks.lock().drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for SyncHub {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

/// Serves `AgentSync` streams; built by [`SyncHub::service`].
pub struct SyncService {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl AgentSync for SyncService {
    type SyncStream = ReceiverStream<Result<HubMessage, Status>>;

    async fn sync(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let stream = session::open(Arc::clone(&self.shared), request).await?;
        Ok(Response::new(stream))
    }

    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<AgentCertificate>, Status> {
        Ok(Response::new(
            register::register(&self.shared, request).await?,
        ))
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<AgentCertificate>, Status> {
        Ok(Response::new(register::renew(&self.shared, request).await?))
    }
}
