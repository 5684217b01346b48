//! The raft log's file: redb's own file backend, except that a failed sync is never taken for
//! a full disk.
//!
//! fsync(2) can fail with ENOSPC or EDQUOT (network file systems, thin-provisioned volumes,
//! quotas). After a failed fsync nothing tells what reached the disk, and the page cache may
//! still hold the commit as if it were written, so the node must stop — whereas a full disk
//! reported by a write is waited out in the same process (`node/driver/disk_full.rs`). The
//! store tells the two apart by the error alone, so a sync's error is reported as what it is.

use std::fs::File;
use std::io;
use std::ops::Bound;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// redb's file backend with every sync error reported as a failed sync.
#[derive(Debug)]
pub(super) struct LogFile(FileBackend);

impl LogFile {
    /// The backend over an open database file.
    pub(super) fn new(file: File) -> Result<Self, redb::DatabaseError> {
        Ok(LogFile(FileBackend::new(file)?))
    }
}

impl StorageBackend for LogFile {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0
            .sync_data()
            .map_err(|e| io::Error::other(format!("fsync failed: {e}")))
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.0.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.0.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.query_lock_range(start, end)
    }
}
