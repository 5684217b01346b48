//! Counters of a node's sync traffic, so tests and the bench can see exactly what was sent
//! (e.g. that a reconnect with nothing changed resends no bundle).
//!
//! Bytes are protobuf payload bytes (`encoded_len` of each message), without gRPC framing.

use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_proto::v1::{AgentMessage, HubMessage, agent_message, hub_message};
use prost::Message as _;
use serde::Serialize;

/// Live counters, updated by every stream of a node.
#[derive(Debug, Default)]
pub struct SyncCounters {
    streams_opened: AtomicU64,
    streams_refused: AtomicU64,
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    bundles_sent: AtomicU64,
    chunks_sent: AtomicU64,
    bundle_bytes_sent: AtomicU64,
    removals_sent: AtomicU64,
    heartbeats_sent: AtomicU64,
    messages_received: AtomicU64,
    bytes_received: AtomicU64,
    acks_received: AtomicU64,
    acks_refused: AtomicU64,
    reports_received: AtomicU64,
    heartbeats_received: AtomicU64,
    streams_timed_out: AtomicU64,
    identity_conflicts: AtomicU64,
    streams_held: AtomicU64,
    health_batches: AtomicU64,
    health_reports: AtomicU64,
}

/// A snapshot of [`SyncCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStats {
    /// Streams live right now.
    pub streams_live: u64,
    /// Streams accepted (hello answered).
    pub streams_opened: u64,
    /// Streams refused at the hello (unknown cluster, node behind, malformed hello).
    pub streams_refused: u64,
    /// Messages sent to agents.
    pub messages_sent: u64,
    /// Their payload bytes.
    pub bytes_sent: u64,
    /// Whole bundles sent (a bundle counts once, however many chunks it took).
    pub bundles_sent: u64,
    /// Bundle chunks sent.
    pub chunks_sent: u64,
    /// Compressed bundle bytes sent.
    pub bundle_bytes_sent: u64,
    /// Bundle removals sent.
    pub removals_sent: u64,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Messages received from agents.
    pub messages_received: u64,
    /// Their payload bytes.
    pub bytes_received: u64,
    /// Bundle acks received.
    pub acks_received: u64,
    /// Acks saying the agent refused a bundle.
    pub acks_refused: u64,
    /// Report events received.
    pub reports_received: u64,
    /// Heartbeats received.
    pub heartbeats_received: u64,
    /// Streams ended because the agent stopped sending.
    pub streams_timed_out: u64,
    /// Hellos and registrations refused because the agent talks to another cluster than the
    /// one bound to the name.
    pub identity_conflicts: u64,
    /// Hellos refused because another agent instance streams for the cluster.
    pub streams_held: u64,
    /// `RecordHealth` commands proposed.
    pub health_batches: u64,
    /// Reports in them.
    pub health_reports: u64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl SyncCounters {
    /// Counts a message about to be sent.
    pub(super) fn sent(&self, message: &HubMessage) {
        add(&self.messages_sent, 1);
        add(&self.bytes_sent, message.encoded_len() as u64);
        match &message.kind {
            Some(hub_message::Kind::Chunk(chunk)) => {
                add(&self.chunks_sent, 1);
                add(&self.bundle_bytes_sent, chunk.data.len() as u64);
                if chunk.offset + chunk.data.len() as u64 >= chunk.total_bytes {
                    add(&self.bundles_sent, 1);
                }
            }
            Some(hub_message::Kind::Removal(_)) => add(&self.removals_sent, 1),
            Some(hub_message::Kind::Heartbeat(_)) => add(&self.heartbeats_sent, 1),
            Some(hub_message::Kind::Welcome(_)) | None => {}
        }
    }

    /// Counts a message received.
    pub(super) fn received(&self, message: &AgentMessage) {
        add(&self.messages_received, 1);
        add(&self.bytes_received, message.encoded_len() as u64);
        match &message.kind {
            Some(agent_message::Kind::Ack(ack)) => {
                add(&self.acks_received, 1);
                if !ack.error.is_empty() {
                    add(&self.acks_refused, 1);
                }
            }
            Some(agent_message::Kind::Reports(batch)) => {
                add(&self.reports_received, batch.reports.len() as u64)
            }
            Some(agent_message::Kind::Heartbeat(_)) => add(&self.heartbeats_received, 1),
            Some(
                agent_message::Kind::Hello(_)
                | agent_message::Kind::ClusterApi(_)
                | agent_message::Kind::Capabilities(_),
            )
            | None => {}
        }
    }

    pub(super) fn stream_opened(&self) {
        add(&self.streams_opened, 1);
    }

    pub(super) fn stream_refused(&self) {
        add(&self.streams_refused, 1);
    }

    pub(super) fn stream_timed_out(&self) {
        add(&self.streams_timed_out, 1);
    }

    pub(super) fn identity_conflict(&self) {
        add(&self.identity_conflicts, 1);
    }

    pub(super) fn stream_held(&self) {
        add(&self.streams_held, 1);
    }

    pub(super) fn health_batch(&self, reports: usize) {
        add(&self.health_batches, 1);
        add(&self.health_reports, reports as u64);
    }

    /// The counters now, with `streams_live` as given.
    pub fn snapshot(&self, streams_live: usize) -> SyncStats {
        SyncStats {
            streams_live: streams_live as u64,
            streams_opened: read(&self.streams_opened),
            streams_refused: read(&self.streams_refused),
            messages_sent: read(&self.messages_sent),
            bytes_sent: read(&self.bytes_sent),
            bundles_sent: read(&self.bundles_sent),
            chunks_sent: read(&self.chunks_sent),
            bundle_bytes_sent: read(&self.bundle_bytes_sent),
            removals_sent: read(&self.removals_sent),
            heartbeats_sent: read(&self.heartbeats_sent),
            messages_received: read(&self.messages_received),
            bytes_received: read(&self.bytes_received),
            acks_received: read(&self.acks_received),
            acks_refused: read(&self.acks_refused),
            reports_received: read(&self.reports_received),
            heartbeats_received: read(&self.heartbeats_received),
            streams_timed_out: read(&self.streams_timed_out),
            identity_conflicts: read(&self.identity_conflicts),
            streams_held: read(&self.streams_held),
            health_batches: read(&self.health_batches),
            health_reports: read(&self.health_reports),
        }
    }
}
