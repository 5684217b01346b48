//! Refused connections, failed handshakes and timeouts, logged once per interval with a count
//! per peer instead of a line each: a flood of connections must not turn into a flood of log
//! lines (nor of log writes on the hub's disk).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use parking_lot::Mutex;

use super::ListenerLimits;

/// How often a listener logs what it counted.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Peers named per kind of event and interval; the rest are summed up in one line.
const PEERS_NAMED: usize = 5;

/// Peers counted one by one per interval; beyond, a distributed flood is counted in one bucket
/// so the tally's memory stays bounded.
const PEERS_TRACKED: usize = 10_000;

/// What happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Event {
    /// Refused at accept: its peer held its share of the listener.
    PeerLimit,
    /// Refused at accept: the listener was full.
    ListenerLimit,
    /// The TLS handshake failed or took too long.
    HandshakeFailed,
    /// Closed: no complete HTTP/1 request headers within the header read timeout.
    HeaderTimeout,
    /// Closed: no byte either way for the idle timeout.
    Idle,
}

/// A line to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// Warn (refusals: an attack, or limits set too low) or info.
    pub(crate) warn: bool,
    /// The text.
    pub(crate) text: String,
}

#[derive(Debug, Default)]
struct Entry {
    count: u64,
    last_error: Option<String>,
}

/// The events of one listener since its last log.
#[derive(Debug)]
pub(crate) struct Tally {
    listener: &'static str,
    limits: ListenerLimits,
    interval: Duration,
    /// `None` as peer: the peers beyond `PEERS_TRACKED`.
    counts: Mutex<HashMap<(Event, Option<IpAddr>), Entry>>,
}

impl Tally {
    /// An empty tally for the listener named `listener`, logged every `interval`.
    pub(crate) fn new(listener: &'static str, limits: ListenerLimits, interval: Duration) -> Self {
        Tally {
            listener,
            limits,
            interval,
            counts: Mutex::default(),
        }
    }

    /// Counts one event of `peer`, with the error that caused it if any.
    pub(crate) fn record(&self, event: Event, peer: IpAddr, error: Option<String>) {
        let mut counts = self.counts.lock();
        let key = if counts.len() < PEERS_TRACKED || counts.contains_key(&(event, Some(peer))) {
            (event, Some(peer))
        } else {
            (event, None)
        };
        let entry = counts.entry(key).or_default();
        entry.count += 1;
        if error.is_some() {
            entry.last_error = error;
        }
    }

    /// The lines for what was counted since the last call, which starts counting afresh.
    pub(crate) fn take(&self) -> Vec<Line> {
        let counts = std::mem::take(&mut *self.counts.lock());
        let mut by_event: HashMap<Event, Vec<(Option<IpAddr>, Entry)>> = HashMap::new();
        for ((event, peer), entry) in counts {
            by_event.entry(event).or_default().push((peer, entry));
        }
        let mut events: Vec<_> = by_event.into_iter().collect();
        events.sort_by_key(|(event, _)| *event);
        let mut lines = Vec::new();
        for (event, mut peers) in events {
            // Busiest first; the untracked bucket goes to the summary.
            peers.sort_by(|a, b| {
                (b.0.is_some().cmp(&a.0.is_some()))
                    .then(b.1.count.cmp(&a.1.count))
                    .then(a.0.cmp(&b.0))
            });
            let named = peers
                .iter()
                .take(PEERS_NAMED)
                .take_while(|(peer, _)| peer.is_some())
                .count();
            for (peer, entry) in &peers[..named] {
                let from = peer.map(|p| p.to_string()).unwrap_or_default();
                lines.push(self.line(event, entry.count, &from, entry.last_error.as_deref()));
            }
            let rest = &peers[named..];
            if !rest.is_empty() {
                let count = rest.iter().map(|(_, e)| e.count).sum();
                let from = match rest.iter().all(|(p, _)| p.is_some()) {
                    true => format!("{} other peers", thousands(rest.len() as u64)),
                    false => "other peers".to_owned(),
                };
                let error = rest.iter().find_map(|(_, e)| e.last_error.as_deref());
                lines.push(self.line(event, count, &from, error));
            }
        }
        lines
    }

    /// Logs what was counted since the last flush.
    pub(crate) fn flush(&self) {
        for line in self.take() {
            if line.warn {
                tracing::warn!(listener = self.listener, "{}", line.text);
            } else {
                tracing::info!(listener = self.listener, "{}", line.text);
            }
        }
    }

    fn line(&self, event: Event, count: u64, from: &str, error: Option<&str>) -> Line {
        let n = thousands(count);
        let since = format!("in the last {}", seconds(self.interval));
        let limits = &self.limits;
        let (warn, mut text) = match event {
            Event::PeerLimit => (
                true,
                format!(
                    "refused {n} connections from {from} over the per-peer \
                     limit ({}) {since}",
                    thousands(limits.max_connections_per_peer as u64)
                ),
            ),
            Event::ListenerLimit => (
                true,
                format!(
                    "refused {n} connections from {from} over the listener's \
                     limit ({}) {since}",
                    thousands(limits.max_connections as u64)
                ),
            ),
            Event::HandshakeFailed => (
                false,
                format!("{n} TLS handshakes from {from} failed {since}"),
            ),
            Event::HeaderTimeout => (
                false,
                format!(
                    "closed {n} connections from {from} that sent no \
                     complete request headers within {} {since}",
                    seconds(limits.header_read_timeout)
                ),
            ),
            Event::Idle => (
                false,
                format!(
                    "closed {n} connections from {from} idle for {} {since}",
                    seconds(limits.idle_timeout)
                ),
            ),
        };
        if let Some(error) = error {
            let _ = write!(text, " (last: {error})");
        }
        Line { warn, text }
    }
}

/// `3912` as `3,912`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `10 s`, or `1.5 s`.
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}
