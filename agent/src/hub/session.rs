//! One stream with one hub node: hello, welcome, then bundles and removals in, acks, reports
//! and heartbeats out, until the stream ends, the node goes silent or the link stops.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use flotilla_proto::v1::agent_sync_client::AgentSyncClient;
use flotilla_proto::v1::{
    AgentMessage, BundleAck, BundleChunk, BundleRemoval, ClusterApi, ClusterCapabilities,
    Heartbeat, HeldBundle, Hello, HubMessage, ReportBatch, Welcome, agent_message, hub_message,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Code, Status, Streaming};

use super::assembly::Assembler;
use super::outbox;
use super::{Connection, Link, LinkConfig, LinkError, Shared};
use crate::cluster_identity::ClusterUid;

/// Largest message the agent sends (report batches are split well below it).
const MAX_SEND_BYTES: usize = 4 * 1024 * 1024;

/// Used when the hub does not say how often it sends heartbeats.
const DEFAULT_HUB_HEARTBEAT: Duration = Duration::from_secs(5);

/// How a stream ended.
pub(super) enum Outcome {
    /// The link was stopped.
    Stopped,
    /// The stream ended; `welcomed` tells whether the node had answered the hello.
    Ended {
        /// Whether the node answered the hello.
        welcomed: bool,
        /// Whether the hub refused the agent itself (see [`Ended::refused`]).
        refused: bool,
        /// Why it ended, for the log.
        reason: String,
    },
}

/// Why a stream ended, from the session's point of view.
pub(super) struct Ended {
    /// For the log.
    reason: String,
    /// The hub refused this agent — its credentials or its cluster (`PERMISSION_DENIED`), or
    /// another agent streams for the cluster (`ALREADY_EXISTS`) — rather than failing: every
    /// node would say the same.
    refused: bool,
}

impl Ended {
    fn outcome(self, welcomed: bool) -> Outcome {
        Outcome::Ended {
            welcomed,
            refused: self.refused,
            reason: self.reason,
        }
    }

    /// A stream ended by the hub with `status`.
    fn status(context: &str, status: &Status) -> Ended {
        Ended {
            reason: format!("{context}: {}", status.message()),
            refused: matches!(status.code(), Code::PermissionDenied | Code::AlreadyExists),
        }
    }
}

impl From<String> for Ended {
    fn from(reason: String) -> Self {
        Ended {
            reason,
            refused: false,
        }
    }
}

impl From<&str> for Ended {
    fn from(reason: &str) -> Self {
        Ended::from(reason.to_owned())
    }
}

/// The endpoint of a hub node, from `HOST:PORT` or a URL.
pub(super) fn endpoint(address: &str, config: &LinkConfig) -> Result<Endpoint, LinkError> {
    let endpoint = match &config.identity {
        // TLS, presenting the agent's current certificate.
        Some(identity) => identity
            .endpoint(address)
            .map_err(|detail| LinkError::BadAddress {
                address: address.to_owned(),
                detail,
            })?,
        None => {
            let url = if address.contains("://") {
                address.to_owned()
            } else {
                format!("http://{address}")
            };
            Endpoint::from_shared(url).map_err(|e| LinkError::BadAddress {
                address: address.to_owned(),
                detail: e.to_string(),
            })?
        }
    };
    Ok(endpoint
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5)))
}

/// Streams with the node at `address` until the stream ends.
pub(super) async fn run(link: &mut Link, address: &str) -> Outcome {
    let shared = Arc::clone(&link.shared);
    let (tx, rx) = mpsc::unbounded_channel();
    let out = Out {
        tx,
        shared: Arc::clone(&shared),
    };
    let hello = tokio::select! {
        _ = shared.stop.cancelled() => return Outcome::Stopped,
        hello = hello(&shared) => hello,
    };
    out.send(agent_message::Kind::Hello(hello));
    let open = open(&shared, address, rx);
    let (inbound, welcome) = tokio::select! {
        _ = shared.stop.cancelled() => return Outcome::Stopped,
        opened = open => match opened {
            Ok(opened) => opened,
            Err(ended) => return ended.outcome(false),
        },
    };
    let mut session = Session {
        shared: Arc::clone(&shared),
        out,
        inbound,
        assembler: Assembler::new(shared.config.max_bundle_bytes),
        heard: Instant::now(),
        silence_limit: DEFAULT_HUB_HEARTBEAT * shared.config.heartbeat_misses.max(1),
        last_flush: Instant::now(),
    };
    if let Err(reason) = session.welcome(welcome, address).await {
        return Ended::from(reason).outcome(true);
    }
    session.resync(link);
    match session.serve(link).await {
        Ok(outcome) => outcome,
        Err(ended) => ended.outcome(true),
    }
}

/// The hello, with the cluster's identity read now.
async fn hello(shared: &Shared) -> Hello {
    let identity = shared.engine.cluster_identity().await;
    if let ClusterUid::Unreadable(why) = &identity {
        tracing::warn!(%why, "cannot read the cluster's identity; the hub serves no stream until it can");
    }
    Hello {
        cluster: shared.config.cluster.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        held: shared
            .engine
            .held()
            .into_iter()
            .map(|h| HeldBundle {
                name: h.name,
                content_hash: h.content_hash,
            })
            .collect(),
        heartbeat_interval_ms: u32::try_from(shared.config.heartbeat_interval.as_millis())
            .unwrap_or(u32::MAX),
        max_message_bytes: shared.config.max_message_bytes as u64,
        known_index: shared.known_index.load(Ordering::Relaxed),
        identity: Some(identity.to_proto()),
        instance: shared.instance.clone(),
    }
}

/// Connects, opens the stream and waits for the welcome.
async fn open(
    shared: &Shared,
    address: &str,
    rx: mpsc::UnboundedReceiver<AgentMessage>,
) -> Result<(Streaming<HubMessage>, Welcome), Ended> {
    let endpoint = endpoint(address, &shared.config).map_err(|e| e.to_string())?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut client = AgentSyncClient::new(channel)
        .max_decoding_message_size(shared.config.max_message_bytes)
        .max_encoding_message_size(MAX_SEND_BYTES);
    let opened = async {
        let response = client
            .sync(UnboundedReceiverStream::new(rx))
            .await
            .map_err(|status| Ended::status("refused", &status))?;
        let mut inbound = response.into_inner();
        let first = inbound
            .message()
            .await
            .map_err(|status| Ended::status("refused", &status))?
            .ok_or("stream closed before the welcome")?;
        shared.counters.received(&first);
        match first.kind {
            Some(hub_message::Kind::Welcome(welcome)) => Ok((inbound, welcome)),
            _ => Err(Ended::from("the hub's first message was not a welcome")),
        }
    };
    tokio::time::timeout(shared.config.welcome_timeout, opened)
        .await
        .map_err(|_| Ended::from("no welcome within the welcome timeout"))?
}

/// Sends on the stream, counting what is sent.
struct Out {
    tx: mpsc::UnboundedSender<AgentMessage>,
    shared: Arc<Shared>,
}

impl Out {
    /// Queues a message; false when the stream is gone.
    fn send(&self, kind: agent_message::Kind) -> bool {
        let message = AgentMessage { kind: Some(kind) };
        self.shared.counters.sent(&message);
        self.tx.send(message).is_ok()
    }
}

struct Session {
    shared: Arc<Shared>,
    out: Out,
    inbound: Streaming<HubMessage>,
    assembler: Assembler,
    heard: Instant,
    silence_limit: Duration,
    last_flush: Instant,
}

impl Session {
    /// Takes the welcome: the node's heartbeat rate, its state index, and the desired set,
    /// removing held bundles the hub no longer wants (only once a revision is assigned: a hub
    /// that has nothing for the cluster yet is no reason to prune).
    async fn welcome(&mut self, welcome: Welcome, address: &str) -> Result<(), String> {
        let shared = &self.shared;
        shared.counters.session();
        shared
            .known_index
            .fetch_max(welcome.index, Ordering::Relaxed);
        let hub_heartbeat = match welcome.heartbeat_interval_ms {
            0 => DEFAULT_HUB_HEARTBEAT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        self.silence_limit = hub_heartbeat * shared.config.heartbeat_misses.max(1);
        shared.connection.send_replace(Some(Connection {
            address: address.to_owned(),
            node: welcome.node,
        }));
        tracing::info!(hub = %address, node = welcome.node, index = welcome.index,
            revision = %welcome.revision, desired = welcome.desired.len(), "streaming with hub");
        if welcome.assigned {
            let desired: BTreeSet<&str> = welcome.desired.iter().map(|b| b.name.as_str()).collect();
            for held in shared.engine.held() {
                if !desired.contains(held.name.as_str()) {
                    self.remove(&held.name).await;
                }
            }
        }
        Ok(())
    }

    /// Queues what the hub missed: events raised while no stream was open, then where every
    /// bundle stands now.
    fn resync(&mut self, link: &mut Link) {
        link.resync = false;
        let snapshot = outbox::snapshot(
            &self.shared.engine.status(),
            self.shared.clock.now().signed_millis(),
        );
        let mut pending = Vec::new();
        while !link.outbox.is_empty() {
            pending.push(link.outbox.take_batch());
        }
        pending.extend(
            snapshot
                .chunks(outbox::MAX_REPORTS_PER_MESSAGE)
                .map(<[_]>::to_vec),
        );
        for reports in pending.into_iter().filter(|r| !r.is_empty()) {
            self.out
                .send(agent_message::Kind::Reports(ReportBatch { reports }));
        }
    }

    /// The stream's main loop.
    async fn serve(&mut self, link: &mut Link) -> Result<Outcome, Ended> {
        let config = self.shared.config.clone();
        let mut heartbeat = tokio::time::interval(config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flush = tokio::time::interval(config.report_flush);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The hub learns whether the cluster's API answers once the stream opens, then at every
        // change.
        let mut api = self.shared.engine.api_reachability();
        api.mark_changed();
        // Likewise what the cluster serves, once read.
        let mut capabilities = self.shared.engine.capabilities();
        capabilities.mark_changed();
        loop {
            tokio::select! {
                _ = self.shared.stop.cancelled() => return Ok(Outcome::Stopped),
                Ok(()) = capabilities.changed() => {
                    let now = capabilities.borrow_and_update().clone();
                    if let Some(now) = now {
                        let message = ClusterCapabilities {
                            kube_version: now.kube_version,
                            api_versions: now.api_versions,
                        };
                        if !self.out.send(agent_message::Kind::Capabilities(message)) {
                            return Err("the stream is closed".into());
                        }
                    }
                }
                Ok(()) = api.changed() => {
                    let now = api.borrow_and_update().clone();
                    let message = ClusterApi {
                        reachable: now.reachable,
                        since_ms: now.since_ms,
                        error: now.error,
                    };
                    if !self.out.send(agent_message::Kind::ClusterApi(message)) {
                        return Err("the stream is closed".into());
                    }
                }
                message = self.inbound.message() => match message {
                    Ok(Some(message)) => self.receive(message).await?,
                    Ok(None) => return Err("the hub closed the stream".into()),
                    Err(status) => return Err(Ended::status("stream failed", &status)),
                },
                received = link.reports.recv() => {
                    if !link.queue(received) {
                        return Ok(Outcome::Stopped);
                    }
                    // A lone event goes out at once; a burst waits for the next flush.
                    if self.last_flush.elapsed() >= config.report_flush {
                        self.flush(link)?;
                    }
                }
                _ = flush.tick() => self.flush(link)?,
                _ = heartbeat.tick() => {
                    if self.heard.elapsed() > self.silence_limit {
                        return Err(format!(
                            "no message from the hub for {:?}",
                            self.silence_limit
                        )
                        .into());
                    }
                    let sent_at_ms = self.shared.clock.now().signed_millis();
                    if !self.out.send(agent_message::Kind::Heartbeat(Heartbeat { sent_at_ms })) {
                        return Err("the stream is closed".into());
                    }
                }
            }
        }
    }

    /// Sends queued report events (and a snapshot after lost events).
    fn flush(&mut self, link: &mut Link) -> Result<(), String> {
        if !link.resync && link.outbox.is_empty() {
            return Ok(());
        }
        self.last_flush = Instant::now();
        if link.resync {
            self.resync(link);
        }
        while !link.outbox.is_empty() {
            let reports = link.outbox.take_batch();
            if !self
                .out
                .send(agent_message::Kind::Reports(ReportBatch { reports }))
            {
                return Err("the stream is closed".into());
            }
        }
        Ok(())
    }

    async fn receive(&mut self, message: HubMessage) -> Result<(), String> {
        self.heard = Instant::now();
        self.shared.counters.received(&message);
        match message.kind {
            Some(hub_message::Kind::Chunk(chunk)) => self.chunk(chunk),
            Some(hub_message::Kind::Removal(removal)) => {
                self.removal(removal).await;
                Ok(())
            }
            Some(hub_message::Kind::Welcome(_)) => Err("a second welcome on the stream".into()),
            Some(hub_message::Kind::Heartbeat(_)) | None => Ok(()),
        }
    }

    /// Adds a chunk; a bundle received whole is handed to the engine and acked once persisted.
    fn chunk(&mut self, chunk: BundleChunk) -> Result<(), String> {
        self.note_index(chunk.index);
        let hash = chunk.content_hash.clone();
        let name = chunk.bundle.clone();
        let received = match self.assembler.add(chunk) {
            Ok(None) => return Ok(()),
            Ok(Some(received)) => received,
            Err(e) if e.breaks_stream() => return Err(e.to_string()),
            Err(e) => {
                tracing::warn!(error = %e, "bundle refused");
                self.shared.counters.bundle_refused();
                self.ack(&name, &hash, e.to_string());
                return Ok(());
            }
        };
        tracing::info!(bundle = %name, revision = %received.revision.revision,
            bytes = received.bytes, "bundle received");
        let error = match self.shared.engine.apply(received.revision) {
            Ok(()) => String::new(),
            Err(e) => {
                tracing::warn!(bundle = %name, error = %e, "bundle not accepted by the engine");
                self.shared.counters.bundle_refused();
                e.to_string()
            }
        };
        self.ack(&name, &hash, error);
        Ok(())
    }

    async fn removal(&mut self, removal: BundleRemoval) {
        self.note_index(removal.index);
        self.remove(&removal.bundle).await;
        self.ack(&removal.bundle, "", String::new());
    }

    /// Removes a bundle: the engine prunes what it owned.
    async fn remove(&self, bundle: &str) {
        tracing::info!(%bundle, "bundle removed by the hub");
        if let Err(e) = self.shared.engine.remove(bundle).await {
            tracing::warn!(%bundle, error = %e, "bundle removal failed");
        }
    }

    fn ack(&self, bundle: &str, content_hash: &str, error: String) {
        self.out.send(agent_message::Kind::Ack(BundleAck {
            bundle: bundle.to_owned(),
            content_hash: content_hash.to_owned(),
            error,
        }));
    }

    fn note_index(&self, index: u64) {
        self.shared.known_index.fetch_max(index, Ordering::Relaxed);
    }
}
