//! The streams live on one node, by cluster: what the node reports as present, and which new
//! stream may take a cluster's place.
//!
//! One agent instance streams for a cluster at a time. A new stream of the instance already
//! streaming replaces the old one (a reconnect after a network cut may arrive before the old
//! connection is known dead), and so does any stream once the old one's agent has been silent
//! past its heartbeat allowance. Another instance is refused while the old stream lives:
//! replacing it would let two agents — copies of one agent's credentials, say — take turns
//! for ever, each reconnecting as soon as the other took its place.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[cfg(test)]
mod tests;

/// The registry of live streams; clones share it.
#[derive(Clone)]
pub(crate) struct Streams {
    inner: Arc<Inner>,
}

struct Inner {
    live: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
    /// Bumped on every change, so the presence reporter can tell the leader at once.
    changes: watch::Sender<u64>,
}

struct Entry {
    id: u64,
    instance: String,
    liveness: Liveness,
    stop: CancellationToken,
}

/// When a stream's agent was last heard from, and how long it may stay silent.
#[derive(Clone)]
pub(crate) struct Liveness {
    /// Updated by the stream's reader at every message.
    pub(crate) heard: Arc<Mutex<Instant>>,
    /// The agent's heartbeat allowance.
    pub(crate) silence_limit: Duration,
}

impl Liveness {
    /// A stream heard from just now.
    pub(crate) fn new(silence_limit: Duration) -> Self {
        Liveness {
            heard: Arc::new(Mutex::new(Instant::now())),
            silence_limit,
        }
    }

    /// Whether the agent has been silent past its allowance.
    pub(crate) fn is_silent(&self) -> bool {
        self.heard.lock().elapsed() > self.silence_limit
    }
}

impl Default for Streams {
    fn default() -> Self {
        Streams {
            inner: Arc::new(Inner {
                live: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                changes: watch::Sender::new(0),
            }),
        }
    }
}

/// A registered stream; dropping it unregisters the stream (unless a newer one replaced it).
pub(crate) struct StreamGuard {
    streams: Streams,
    cluster: String,
    id: u64,
    /// Cancelled when a newer stream of the same cluster replaces this one.
    pub(crate) replaced: CancellationToken,
}

/// Another agent instance streams for the cluster on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    /// How long ago that agent was last heard from.
    pub(crate) heard_ago: Duration,
}

impl Streams {
    /// Registers a stream of agent `instance` for `cluster`: replacing the cluster's stream on
    /// this node when it is the same instance's or its agent went silent, refused while
    /// another instance's lives. An empty instance (an older agent) matches none.
    pub(crate) fn open(
        &self,
        cluster: &str,
        instance: &str,
        liveness: Liveness,
    ) -> Result<StreamGuard, Held> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let replaced = CancellationToken::new();
        {
            let mut live = self.inner.live.lock();
            if let Some(old) = live.get(cluster) {
                let same = !instance.is_empty() && old.instance == instance;
                if !same && !old.liveness.is_silent() {
                    return Err(Held {
                        heard_ago: old.liveness.heard.lock().elapsed(),
                    });
                }
                old.stop.cancel();
            }
            live.insert(
                cluster.to_owned(),
                Entry {
                    id,
                    instance: instance.to_owned(),
                    liveness,
                    stop: replaced.clone(),
                },
            );
        }
        self.inner.changes.send_modify(|n| *n += 1);
        Ok(StreamGuard {
            streams: self.clone(),
            cluster: cluster.to_owned(),
            id,
            replaced,
        })
    }

    /// Clusters with a live stream, in name order.
    pub(crate) fn clusters(&self) -> Vec<String> {
        let mut clusters: Vec<String> = self.inner.live.lock().keys().cloned().collect();
        clusters.sort();
        clusters
    }

    /// Every live stream as `(cluster, agent instance)`, in cluster order.
    pub(crate) fn streams(&self) -> Vec<(String, String)> {
        let mut streams: Vec<(String, String)> = self
            .inner
            .live
            .lock()
            .iter()
            .map(|(cluster, entry)| (cluster.clone(), entry.instance.clone()))
            .collect();
        streams.sort();
        streams
    }

    /// Number of live streams.
    pub(crate) fn len(&self) -> usize {
        self.inner.live.lock().len()
    }

    /// Notified whenever a stream opens or ends.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut live = self.streams.inner.live.lock();
        if live.get(&self.cluster).is_some_and(|e| e.id == self.id) {
            live.remove(&self.cluster);
            drop(live);
            self.streams.inner.changes.send_modify(|n| *n += 1);
        }
    }
}
