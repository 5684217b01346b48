//! Addresses for nodes that must keep their port across a crash and restart.
//!
//! A port the OS picked (`:0`) comes from the ephemeral range, which every outgoing connection
//! on the machine also draws from: after a node's crash releases its port, another test's
//! client may take it as its source port and the restart cannot bind it again. Ports below the
//! ephemeral range (Linux: 32768 and up) are never handed out that way.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Result, bail};

/// The ports handed out: below Linux's default ephemeral range.
const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

/// A loopback address with a free port outside the ephemeral range. Test processes start at
/// different offsets (by process id) so parallel tests rarely probe the same ports.
pub fn free_address() -> Result<String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(7_919);
    for _ in 0..COUNT {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + base.wrapping_add(step.wrapping_mul(97)) % COUNT;
        let address = format!("127.0.0.1:{port}");
        if std::net::TcpListener::bind(&address).is_ok() {
            return Ok(address);
        }
    }
    bail!("no free port in {FIRST}..{}", FIRST + COUNT)
}
