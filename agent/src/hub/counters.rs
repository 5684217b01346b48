//! Counters of the agent's traffic with the hub, so tests and the bench can see what crossed
//! the wire (e.g. that a reconnect with nothing changed brought no bundle).
//!
//! Bytes are protobuf payload bytes (`encoded_len` of each message), without gRPC framing.

use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_proto::v1::{AgentMessage, HubMessage, agent_message, hub_message};
use prost::Message as _;
use serde::Serialize;

/// Live counters of one link.
#[derive(Debug, Default)]
pub(crate) struct LinkCounters {
    connect_attempts: AtomicU64,
    sessions: AtomicU64,
    messages_received: AtomicU64,
    bytes_received: AtomicU64,
    chunks_received: AtomicU64,
    bundles_received: AtomicU64,
    bundle_bytes_received: AtomicU64,
    bundles_refused: AtomicU64,
    removals_received: AtomicU64,
    heartbeats_received: AtomicU64,
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    reports_sent: AtomicU64,
    reports_dropped: AtomicU64,
    acks_sent: AtomicU64,
    heartbeats_sent: AtomicU64,
}

/// A snapshot of a link's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkStats {
    /// Connections tried.
    pub connect_attempts: u64,
    /// Streams that got as far as the hub's welcome.
    pub sessions: u64,
    /// Messages received from hub nodes.
    pub messages_received: u64,
    /// Their payload bytes.
    pub bytes_received: u64,
    /// Bundle chunks received.
    pub chunks_received: u64,
    /// Whole bundles received (however many chunks each took).
    pub bundles_received: u64,
    /// Compressed bundle bytes received.
    pub bundle_bytes_received: u64,
    /// Bundles refused (corrupt, undecodable or invalid).
    pub bundles_refused: u64,
    /// Bundle removals received.
    pub removals_received: u64,
    /// Heartbeats received.
    pub heartbeats_received: u64,
    /// Messages sent to hub nodes.
    pub messages_sent: u64,
    /// Their payload bytes.
    pub bytes_sent: u64,
    /// Report events sent.
    pub reports_sent: u64,
    /// Report events dropped because too many piled up while no hub was reachable.
    pub reports_dropped: u64,
    /// Bundle acks sent.
    pub acks_sent: u64,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl LinkCounters {
    pub(crate) fn connect_attempt(&self) {
        add(&self.connect_attempts, 1);
    }

    pub(crate) fn session(&self) {
        add(&self.sessions, 1);
    }

    pub(crate) fn bundle_refused(&self) {
        add(&self.bundles_refused, 1);
    }

    pub(crate) fn reports_dropped(&self, n: usize) {
        add(&self.reports_dropped, n as u64);
    }

    /// Counts a message received.
    pub(crate) fn received(&self, message: &HubMessage) {
        add(&self.messages_received, 1);
        add(&self.bytes_received, message.encoded_len() as u64);
        match &message.kind {
            Some(hub_message::Kind::Chunk(chunk)) => {
                add(&self.chunks_received, 1);
                add(&self.bundle_bytes_received, chunk.data.len() as u64);
                if chunk.offset + chunk.data.len() as u64 >= chunk.total_bytes {
                    add(&self.bundles_received, 1);
                }
            }
            Some(hub_message::Kind::Removal(_)) => add(&self.removals_received, 1),
            Some(hub_message::Kind::Heartbeat(_)) => add(&self.heartbeats_received, 1),
            Some(hub_message::Kind::Welcome(_)) | None => {}
        }
    }

    /// Counts a message sent.
    pub(crate) fn sent(&self, message: &AgentMessage) {
        add(&self.messages_sent, 1);
        add(&self.bytes_sent, message.encoded_len() as u64);
        match &message.kind {
            Some(agent_message::Kind::Reports(batch)) => {
                add(&self.reports_sent, batch.reports.len() as u64)
            }
            Some(agent_message::Kind::Ack(_)) => add(&self.acks_sent, 1),
            Some(agent_message::Kind::Heartbeat(_)) => add(&self.heartbeats_sent, 1),
            Some(
                agent_message::Kind::Hello(_)
                | agent_message::Kind::ClusterApi(_)
                | agent_message::Kind::Capabilities(_),
            )
            | None => {}
        }
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> LinkStats {
        LinkStats {
            connect_attempts: read(&self.connect_attempts),
            sessions: read(&self.sessions),
            messages_received: read(&self.messages_received),
            bytes_received: read(&self.bytes_received),
            chunks_received: read(&self.chunks_received),
            bundles_received: read(&self.bundles_received),
            bundle_bytes_received: read(&self.bundle_bytes_received),
            bundles_refused: read(&self.bundles_refused),
            removals_received: read(&self.removals_received),
            heartbeats_received: read(&self.heartbeats_received),
            messages_sent: read(&self.messages_sent),
            bytes_sent: read(&self.bytes_sent),
            reports_sent: read(&self.reports_sent),
            reports_dropped: read(&self.reports_dropped),
            acks_sent: read(&self.acks_sent),
            heartbeats_sent: read(&self.heartbeats_sent),
        }
    }
}
