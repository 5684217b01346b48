//! The streams live on one node, by cluster: what the node reports as present, and the way an
//! agent's new stream replaces its old one on the same node (a reconnect may arrive before
//! the old connection is known to be dead).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
    stop: CancellationToken,
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

impl Streams {
    /// Registers a stream for `cluster`, ending an older one on this node.
    pub(crate) fn open(&self, cluster: &str) -> StreamGuard {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let replaced = CancellationToken::new();
        let old = self.inner.live.lock().insert(
            cluster.to_owned(),
            Entry {
                id,
                stop: replaced.clone(),
            },
        );
        if let Some(old) = old {
            old.stop.cancel();
        }
        self.inner.changes.send_modify(|n| *n += 1);
        StreamGuard {
            streams: self.clone(),
            cluster: cluster.to_owned(),
            id,
            replaced,
        }
    }

    /// Clusters with a live stream, in name order.
    pub(crate) fn clusters(&self) -> Vec<String> {
        let mut clusters: Vec<String> = self.inner.live.lock().keys().cloned().collect();
        clusters.sort();
        clusters
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
