//! Addresses for nodes that must keep their port across a crash and restart.
//!
//! A port the OS picked (`:0`) comes from the ephemeral range, which every outgoing connection
//! on the machine also draws from: after a node's crash releases its port, another test's
//! client may take it as its source port and the restart cannot bind it again. Ports below the
//! ephemeral range (Linux: 32768 and up) are never handed out that way. Nor may another test
//! process hand out a port whose node is down for a moment: each port handed out is claimed by
//! a lock on a file named after it, held until this process exits (the kernel drops the lock
//! then, however the process ended), and other test processes pass over claimed ports.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// The ports handed out: below Linux's default ephemeral range.
const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

/// The claims this process holds, for its lifetime.
static CLAIMS: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A loopback address with a free port outside the ephemeral range, claimed for this process.
/// Test processes start at different offsets (by process id) so parallel tests rarely probe
/// the same ports.
pub fn free_address() -> Result<String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(7_919);
    let dir = claims_dir()?;
    for _ in 0..COUNT {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + base.wrapping_add(step.wrapping_mul(97)) % COUNT;
        let Some(claim) = claim(&dir, port)? else {
            continue;
        };
        let address = format!("127.0.0.1:{port}");
        if std::net::TcpListener::bind(&address).is_ok() {
            CLAIMS
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(claim);
            return Ok(address);
        }
    }
    bail!("no free port in {FIRST}..{}", FIRST + COUNT)
}

fn claims_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join("flotilla-test-ports");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The lock on `port`'s file, unless another process holds it.
fn claim(dir: &std::path::Path, port: u32) -> Result<Option<File>> {
    let path = dir.join(port.to_string());
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_port_is_not_claimed_again_until_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = claim(dir.path(), 20_001).expect("claim");
        assert!(held.is_some(), "a free port is claimed");
        assert!(
            claim(dir.path(), 20_001).expect("claim").is_none(),
            "a claimed port is passed over"
        );
        drop(held);
        assert!(claim(dir.path(), 20_001).expect("claim").is_some());
    }
}
