//! The webhook deliveries a node acted on recently, so that one delivered again — a Git host's
//! retry, or a captured signed request replayed thousands of times — is answered but neither
//! fetches nor writes an audit event again.
//!
//! A delivery is known by two keys, and is a duplicate when either was seen within
//! [`DELIVERY_WINDOW`]: the sender's delivery id, when it sends one (GitHub's
//! `X-GitHub-Delivery`, GitLab's `Idempotency-Key` or `X-Gitlab-Event-UUID`, the generic hook's
//! `X-Flotilla-Delivery` or `Idempotency-Key`), and its signed content (sender, signature and
//! body). The content counts even when an id is present: every signature covers the body only,
//! so a replay may carry any id it likes. Two real pushes never share a body (each names its
//! commits); a generic sender posting a fixed body must put something that changes per push in
//! it (the commit id, a delivery id, a time), since its signature alone cannot tell a replay
//! from a new push.
//!
//! Only verified deliveries that would fetch are remembered, so nobody can make a future
//! delivery look like a duplicate without the secret; a delivery whose fetch could not be
//! requested is forgotten again, so the sender's retry is acted on. Memory is bounded by
//! [`DELIVERIES_REMEMBERED`] keys of 32 bytes, oldest forgotten first. Per node: a replay sent
//! to every node is acted on once by each.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use parking_lot::Mutex;

use super::Sender;

/// How long a delivery is remembered.
pub const DELIVERY_WINDOW: Duration = Duration::from_secs(600);

/// Keys remembered at most (two per delivery with an id, one without).
pub const DELIVERIES_REMEMBERED: usize = 20_000;

/// A blake3 hash: what a key is remembered as, whatever the length of what it names.
type Key = [u8; 32];

/// What identifies one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryKeys {
    /// The sender's delivery id, if it sent one.
    id: Option<Key>,
    /// The sender, its signature header and the body.
    content: Key,
}

impl DeliveryKeys {
    /// The keys of a delivery from `sender` with these headers and body.
    pub fn of(sender: &Sender, headers: &HeaderMap, body: &[u8]) -> Self {
        let header = |name: &str| headers.get(name).map(|v| v.as_bytes());
        let id_headers: &[&str] = match sender {
            Sender::GitHub(_) => &["x-github-delivery"],
            Sender::GitLab(_) => &["idempotency-key", "x-gitlab-event-uuid"],
            Sender::Generic => &["x-flotilla-delivery", "idempotency-key"],
        };
        let signature_headers: &[&str] = match sender {
            Sender::GitHub(_) => &["x-hub-signature-256"],
            Sender::GitLab(_) => &["x-gitlab-token"],
            Sender::Generic => &["x-flotilla-signature", "x-hub-signature-256"],
        };
        let first = |names: &[&str]| names.iter().find_map(|name| header(name));
        let id = first(id_headers)
            .filter(|id| !id.is_empty())
            .map(|id| hash(&[b"id", sender.name().as_bytes(), id]));
        let signature = first(signature_headers).unwrap_or_default();
        let content = hash(&[b"content", sender.name().as_bytes(), signature, body]);
        DeliveryKeys { id, content }
    }

    fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.id.iter().copied().chain([self.content])
    }
}

/// blake3 of `parts`, each prefixed with its length so that no two lists hash alike.
fn hash(parts: &[&[u8]]) -> Key {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

/// Whether a delivery is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen within the window: act on it (it is remembered from now on).
    New,
    /// Seen within the window: answer it and do nothing.
    Duplicate,
}

/// The deliveries one node acted on recently.
#[derive(Debug)]
pub struct Deliveries {
    window: Duration,
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// When each remembered key was claimed.
    claimed: HashMap<Key, Instant>,
    /// Keys in the order claimed; an entry whose time differs from `claimed` is stale (the key
    /// was released, or claimed again later) and only waits to be dropped.
    order: VecDeque<(Instant, Key)>,
}

impl Seen {
    /// Drops the oldest entry, and its key unless it was claimed again since.
    fn drop_oldest(&mut self) {
        if let Some((at, key)) = self.order.pop_front()
            && self.claimed.get(&key) == Some(&at)
        {
            self.claimed.remove(&key);
        }
    }
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries::new(DELIVERY_WINDOW, DELIVERIES_REMEMBERED)
    }
}

impl Deliveries {
    /// Deliveries remembered for `window`, at most `capacity` keys.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Deliveries {
            window,
            capacity: capacity.max(2),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Claims the delivery at `now`: new (and remembered from now on) or a duplicate.
    pub fn claim(&self, delivery: &DeliveryKeys, now: Instant) -> Claim {
        let mut seen = self.seen.lock();
        while seen
            .order
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= self.window)
        {
            seen.drop_oldest();
        }
        if delivery.keys().any(|key| seen.claimed.contains_key(&key)) {
            return Claim::Duplicate;
        }
        for key in delivery.keys() {
            while seen.order.len() >= self.capacity {
                seen.drop_oldest();
            }
            seen.claimed.insert(key, now);
            seen.order.push_back((now, key));
        }
        Claim::New
    }

    /// Forgets a claimed delivery that was not acted on, so that the sender's retry is.
    pub fn release(&self, delivery: &DeliveryKeys) {
        let mut seen = self.seen.lock();
        for key in delivery.keys() {
            seen.claimed.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests;
