//! Who may open one more connection: a listener's count of open connections, in all and per
//! peer, from TCP accept until the connection is dropped.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use parking_lot::Mutex;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its peer already holds `max_connections_per_peer`.
    PeerLimit,
    /// The listener already holds `max_connections`.
    ListenerLimit,
}

/// The open connections of one listener.
#[derive(Debug)]
pub(crate) struct Admission {
    max_total: usize,
    max_per_peer: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

impl Admission {
    /// Counts for a listener with these limits.
    pub(crate) fn new(max_total: usize, max_per_peer: usize) -> Arc<Self> {
        Arc::new(Admission {
            max_total,
            max_per_peer,
            counts: Mutex::default(),
        })
    }

    /// Admits one more connection from `peer`, or says which limit it is over. The permit
    /// gives the place back when dropped.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refusal> {
        let peer = peer_key(peer);
        let mut counts = self.counts.lock();
        let held = counts.per_peer.get(&peer).copied().unwrap_or(0);
        if held >= self.max_per_peer {
            return Err(Refusal::PeerLimit);
        }
        if counts.total >= self.max_total {
            return Err(Refusal::ListenerLimit);
        }
        counts.total += 1;
        counts.per_peer.insert(peer, held + 1);
        Ok(Permit {
            admission: self.clone(),
            peer,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.counts.lock().total
    }

    /// Connections open now from `peer`.
    #[cfg(test)]
    pub(crate) fn open_from(&self, peer: IpAddr) -> usize {
        let peer = peer_key(peer);
        self.counts.lock().per_peer.get(&peer).copied().unwrap_or(0)
    }

    fn release(&self, peer: IpAddr) {
        let mut counts = self.counts.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(held) = counts.per_peer.get_mut(&peer) {
            *held -= 1;
            if *held == 0 {
                // Forgetting idle peers keeps the map as small as the connections open.
                counts.per_peer.remove(&peer);
            }
        }
    }
}

/// One admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Permit {
    admission: Arc<Admission>,
    peer: IpAddr,
}

impl Permit {
    /// The peer it counts against (an IPv6 peer's /64).
    pub(crate) fn peer(&self) -> IpAddr {
        self.peer
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.peer);
    }
}

/// The address a peer's connections are counted under: an IPv4 address (also when mapped into
/// IPv6), or an IPv6 address's /64, since one host is routinely given a whole /64 and could
/// otherwise pick a fresh address per connection.
pub(crate) fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}
