//! A simulated disk under the raft log, for tests of power loss and disk faults.
//!
//! A [`SimulatedDisk`] is the disk of one node and outlives the node's "process": each open of
//! the log takes a new [`SimulatedDisk::backend`], which redb reads and writes like a file. The
//! disk keeps two images, what reads see (the live image, like the page cache) and what survived
//! the last completed sync (the durable image), and a journal of the writes and resizes made
//! since that sync. A test then:
//!
//! - cuts the power ([`SimulatedDisk::power_cut`]): everything unsynced is lost, and every
//!   backend taken before the cut fails every later call, so a node still shutting down cannot
//!   write anything after it;
//! - cuts it on a disk that reorders writes ([`SimulatedDisk::power_cut_torn`]): each unsynced
//!   write or resize survives or not, independently, as a seeded random choice;
//! - fails one sync ([`SimulatedDisk::fail_next_sync`]) or fills the disk
//!   ([`SimulatedDisk::set_full`]).
//!
//! Like a file, the disk is locked by the open that writes it: a second open while the first is
//! still open is refused, as it is for the file in the data dir. A power cut releases the lock,
//! since the process holding it died.
//!
//! What redb 4.6 does over it (measured; the tests in `storage/tests.rs` pin what they can):
//!
//! - Any I/O error on a `Database` (a failed sync, a full disk, a write after a power cut) is
//!   latched: every later transaction on that `Database` fails with `PreviousIo`, even once the
//!   fault is gone. Only a new `Database` recovers, so the store must be reopened (see
//!   [`super::StoreError::needs_reopen`]).
//! - Reopening after a power cut, clean or torn, repairs the file and finds every durable commit;
//!   a commit made with `Durability::None` and not followed by a durable one is gone.
//! - Over 200 seeds of a torn cut, each tearing the 13 writes of a commit whose sync failed, the
//!   new header survived without all its pages in about half of them; redb detected it every time
//!   and opened at the previous durable commit.
//! - A failed sync fails the commit and makes nothing of it durable: after a power cut the
//!   reopened log is the one from before that commit. Without a power cut, a reopen may find it:
//!   its pages reached the live image, as they reach the page cache on Linux.
//! - A `Durability::None` commit writes no pages to the disk (they wait in redb's write buffer
//!   for the next durable commit), so one durable commit after it costs one sync; a commit that
//!   grows the file also syncs the new length.

use std::fmt;
use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redb::{BackendError, StorageBackend};

/// `EIO`: what a failed sync reports.
const EIO: i32 = 5;
/// `ENOSPC`: what a write past the end of a full disk reports.
const ENOSPC: i32 = 28;

/// Identifies backends, so a lock is released only by the open that took it.
static NEXT_BACKEND: AtomicU64 = AtomicU64::new(1);

/// The disk of one node: cloning shares it, so a test keeps a handle while the node uses another.
#[derive(Clone, Default)]
pub struct SimulatedDisk {
    state: Arc<Mutex<DiskState>>,
}

#[derive(Default)]
struct DiskState {
    /// What survived the last completed sync.
    durable: Vec<u8>,
    /// What reads see: the durable image with the journal applied.
    live: Vec<u8>,
    /// Writes and resizes since the last completed sync, in order.
    journal: Vec<Change>,
    /// Bumped by every power cut; a backend of an older power cycle fails every call.
    power_cycle: u64,
    /// The backend holding the whole-disk lock.
    locked_by: Option<u64>,
    full: bool,
    fail_next_sync: bool,
    syncs: u64,
    unsynced_bytes: u64,
}

/// One unsynced change to the image.
enum Change {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl Change {
    fn apply(&self, image: &mut Vec<u8>) {
        match self {
            Change::Write { offset, data } => write_at(image, *offset, data),
            Change::SetLen(len) => image.resize(to_usize(*len), 0),
        }
    }
}

impl fmt::Debug for SimulatedDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("SimulatedDisk")
            .field("durable_len", &state.durable.len())
            .field("live_len", &state.live.len())
            .field("unsynced_changes", &state.journal.len())
            .field("power_cycle", &state.power_cycle)
            .field("full", &state.full)
            .finish()
    }
}

impl SimulatedDisk {
    /// An empty disk.
    pub fn new() -> Self {
        SimulatedDisk::default()
    }

    /// A backend for one open of the database; it works until the next power cut.
    pub fn backend(&self) -> DiskBackend {
        DiskBackend {
            state: Arc::clone(&self.state),
            id: NEXT_BACKEND.fetch_add(1, Ordering::Relaxed),
            power_cycle: self.state.lock().power_cycle,
        }
    }

    /// Cuts the power: everything not synced is lost, and every backend taken so far fails from
    /// now on.
    pub fn power_cut(&self) {
        let mut state = self.state.lock();
        state.journal.clear();
        state.end_power_cycle();
    }

    /// Cuts the power on a disk that reorders writes: each unsynced write and resize reaches the
    /// durable image or not, independently, as chosen by an RNG seeded with `seed`. Every backend
    /// taken so far fails from now on.
    pub fn power_cut_torn(&self, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut state = self.state.lock();
        let journal = std::mem::take(&mut state.journal);
        for change in journal.iter().filter(|_| rng.random_bool(0.5)) {
            change.apply(&mut state.durable);
        }
        state.end_power_cycle();
    }

    /// The next sync, from whichever open makes it, fails with `EIO` and makes nothing durable.
    pub fn fail_next_sync(&self) {
        self.state.lock().fail_next_sync = true;
    }

    /// While `full`, a write or resize that would grow the image fails with `ENOSPC`; writes
    /// within its current length still succeed, like a file whose blocks are allocated.
    pub fn set_full(&self, full: bool) {
        self.state.lock().full = full;
    }

    /// How many syncs have completed since the disk was made.
    pub fn syncs(&self) -> u64 {
        self.state.lock().syncs
    }

    /// Bytes written since the last completed sync: what a power cut now could lose.
    pub fn unsynced_bytes(&self) -> u64 {
        self.state.lock().unsynced_bytes
    }
}

impl DiskState {
    fn end_power_cycle(&mut self) {
        self.live = self.durable.clone();
        self.unsynced_bytes = 0;
        self.locked_by = None;
        self.power_cycle += 1;
    }

    fn would_grow(&self, end: u64) -> bool {
        end > self.live.len() as u64
    }
}

/// The disk as one open database sees it; made by [`SimulatedDisk::backend`].
pub struct DiskBackend {
    state: Arc<Mutex<DiskState>>,
    id: u64,
    power_cycle: u64,
}

impl fmt::Debug for DiskBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskBackend")
            .field("id", &self.id)
            .field("power_cycle", &self.power_cycle)
            .finish()
    }
}

impl DiskBackend {
    /// The disk's state, or an error once the power was cut after this backend was taken.
    fn powered(&self) -> io::Result<parking_lot::MutexGuard<'_, DiskState>> {
        let state = self.state.lock();
        if state.power_cycle != self.power_cycle {
            return Err(io::Error::other(
                "simulated power cut: this open of the disk ended with it",
            ));
        }
        Ok(state)
    }
}

impl StorageBackend for DiskBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.powered()?.live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let state = self.powered()?;
        let start = to_usize(offset);
        let end = start.saturating_add(out.len());
        let Some(bytes) = state.live.get(start..end) else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at {offset} past the end of the disk ({} bytes)",
                    out.len(),
                    state.live.len()
                ),
            ));
        };
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.powered()?;
        if state.full && state.would_grow(len) {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        let change = Change::SetLen(len);
        change.apply(&mut state.live);
        state.journal.push(change);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.powered()?;
        if std::mem::take(&mut state.fail_next_sync) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        let state = &mut *state;
        for change in state.journal.drain(..) {
            change.apply(&mut state.durable);
        }
        state.unsynced_bytes = 0;
        state.syncs += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut state = self.powered()?;
        if state.full && state.would_grow(offset.saturating_add(data.len() as u64)) {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        let change = Change::Write {
            offset,
            data: data.to_vec(),
        };
        change.apply(&mut state.live);
        state.journal.push(change);
        state.unsynced_bytes += data.len() as u64;
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.locked_by == Some(self.id) {
            state.locked_by = None;
        }
        Ok(())
    }

    /// Only the whole-disk lock is supported, which is all redb's default mode needs.
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        if !is_whole_disk(start, end) {
            return Err(BackendError::Unsupported);
        }
        let mut state = self.powered().map_err(BackendError::Io)?;
        if state.locked_by.is_some() {
            return Ok(false);
        }
        state.locked_by = Some(self.id);
        Ok(true)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        if !is_whole_disk(start, end) {
            return Err(BackendError::Unsupported);
        }
        let mut state = self.state.lock();
        if state.locked_by == Some(self.id) {
            state.locked_by = None;
        }
        Ok(())
    }
}

fn is_whole_disk(start: Bound<u64>, end: Bound<u64>) -> bool {
    matches!(start, Bound::Unbounded | Bound::Included(0)) && end == Bound::Unbounded
}

fn write_at(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = to_usize(offset);
    let end = start + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

/// Offsets redb uses fit in memory, or the simulated image could not hold them.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
