//! The durable raft log in redb: entries, hard state, the latest snapshot (its metadata, conf
//! state and state machine image) and the identity of the data dir.
//!
//! One redb file per node (tests may put it on a [`SimulatedDisk`] instead, to cut its power
//! or fail its syncs). Every write that raft relies on surviving a crash commits with
//! `Durability::Immediate` (fsync) before the caller goes on; the one exception is an append that
//! is immediately followed, in the same ready, by a durable hard-state write (redb makes the
//! earlier commit durable with the later one, so a single fsync covers both).
//!
//! The snapshot doubles as the persisted "applied index": the state machine is restored from it at
//! start and the entries after it are applied again, so `applied` never has to be written per
//! entry. The conf state returned by `initial_state` is the snapshot's, for the same reason: conf
//! changes after it are re-applied from the log, like every other entry.

use std::collections::VecDeque;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

mod disk;
mod file;
#[cfg(test)]
mod tests;

pub use disk::{DiskBackend, SimulatedDisk};

/// Name of the database file inside a node's data dir.
pub const DB_FILE: &str = "raft.redb";

/// Version of the on-disk layout; a data dir written by a newer layout is refused.
const FORMAT_VERSION: u64 = 1;

/// `ENOSPC`, for io errors whose kind was lost on the way.
const ENOSPC: i32 = 28;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const RAFT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft");

const KEY_FORMAT: &str = "format";
const KEY_GROUP: &str = "group";
const KEY_NODE_ID: &str = "node_id";
const KEY_HARD_STATE: &str = "hard_state";
const KEY_SNAPSHOT_META: &str = "snapshot_meta";
const KEY_SNAPSHOT_DATA: &str = "snapshot_data";

/// Which node of which group a data dir belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Name of the hub group.
    pub group: String,
    /// Raft id of this node within the group.
    pub node_id: u64,
}

/// Failures of the durable log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data dir could not be created or read.
    #[error("data dir {path}: {source}")]
    Io {
        /// The data dir.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Another process (or node in this process) holds the database open.
    #[error(
        "data dir {path} is in use by another hub process; stop it or choose another --data-dir"
    )]
    InUse {
        /// The data dir.
        path: PathBuf,
    },
    /// The database file is damaged: redb refused it or its contents contradict each other.
    #[error(
        "data dir {path} is damaged ({detail}); this node cannot rejoin safely with it: remove the \
         node from the group (`flotilla-hub member remove`), move the data dir away, and add the node \
         back with an empty data dir so it catches up from its peers"
    )]
    Damaged {
        /// The data dir.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The data dir was initialised for another node id or another group.
    #[error(
        "data dir {path} belongs to node {found_id} of group '{found_group}', not node {want_id} of \
         group '{want_group}'; start with --id {found_id} --group {found_group}, or point --data-dir \
         at an empty directory"
    )]
    WrongIdentity {
        /// The data dir.
        path: PathBuf,
        /// Group recorded in the data dir.
        found_group: String,
        /// Node id recorded in the data dir.
        found_id: u64,
        /// Group this process was started for.
        want_group: String,
        /// Node id this process was started for.
        want_id: u64,
    },
    /// The data dir was written by a newer version of the hub.
    #[error(
        "data dir {path} has layout version {found}, this hub understands up to {FORMAT_VERSION}; upgrade the hub binary"
    )]
    NewerFormat {
        /// The data dir.
        path: PathBuf,
        /// Layout version found.
        found: u64,
    },
    /// The device under the data dir is full. redb refuses every later write on the open log,
    /// so the store must be reopened once space is freed.
    #[error(
        "data dir {path}: no space left on the device; this node refuses writes until space is \
         freed on it"
    )]
    DiskFull {
        /// The data dir.
        path: PathBuf,
    },
    /// redb failed while reading or writing.
    #[error("data dir {path}: database error: {source}")]
    Db {
        /// The data dir.
        path: PathBuf,
        /// The redb error.
        source: Box<redb::Error>,
    },
    /// A raft record could not be encoded or decoded.
    #[error("data dir {path}: cannot decode {what}: {detail}")]
    Codec {
        /// The data dir.
        path: PathBuf,
        /// Which record.
        what: &'static str,
        /// Decoder message.
        detail: String,
    },
}

impl StoreError {
    /// Whether the open log is unusable after this error and must be reopened: redb latches any
    /// I/O error (a failed write or sync, a full disk) and fails every later transaction with
    /// `PreviousIo` until the database is closed.
    pub fn needs_reopen(&self) -> bool {
        match self {
            StoreError::DiskFull { .. } => true,
            StoreError::Db { source, .. } => {
                matches!(**source, redb::Error::Io(_) | redb::Error::PreviousIo)
            }
            _ => false,
        }
    }

    /// Sorts a redb failure: a full device is [`StoreError::DiskFull`], anything else
    /// [`StoreError::Db`].
    fn from_redb(path: &Path, e: redb::Error) -> StoreError {
        match &e {
            redb::Error::Io(io) if is_no_space(io) => StoreError::DiskFull {
                path: path.to_path_buf(),
            },
            _ => StoreError::Db {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        }
    }
}

fn is_no_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(ENOSPC)
}

/// The raft log of one node, kept in redb, with the small parts raft asks for often (indexes,
/// terms, hard state, snapshot metadata) mirrored in memory.
pub struct RaftStore {
    db: Database,
    path: PathBuf,
    hard_state: HardState,
    snapshot_meta: SnapshotMetadata,
    /// Terms of the entries `first_index..=last_index`, so `term()` never touches the disk.
    terms: VecDeque<u64>,
    /// Highest index some peer asked a snapshot for that the stored one does not cover.
    wanted_snapshot: AtomicU64,
}

/// Creates `dir` (and its parents) readable by its owner only, whatever the umask; an existing
/// one open to others is narrowed to its owner, with a warning, since it holds the node's secrets.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:o}"),
            "the data dir was open to other users; narrowed to its owner (0700)"
        );
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

impl RaftStore {
    /// Opens (creating if needed) the log in `dir`, checks it belongs to `identity`, and checks the
    /// log is whole: contiguous entries after the snapshot, reaching at least the commit index.
    pub fn open(dir: &Path, identity: &Identity) -> Result<Self, StoreError> {
        RaftStore::open_on(dir, identity, None)
    }

    /// [`RaftStore::open`] with the log on `disk` instead of in a file in `dir` (tests only);
    /// `dir` is still created, for the node's other files.
    pub fn open_on(
        dir: &Path,
        identity: &Identity,
        disk: Option<&SimulatedDisk>,
    ) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        private_dir(dir).map_err(io)?;
        let path = dir.to_path_buf();
        let opened = match disk {
            Some(disk) => Database::builder().create_with_backend(disk.backend()),
            None => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.join(DB_FILE))
                .map_err(redb::DatabaseError::from)
                .and_then(file::LogFile::new)
                .and_then(|file| Database::builder().create_with_backend(file)),
        };
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { path: path.clone() },
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => {
                StoreError::Damaged {
                    path: path.clone(),
                    detail,
                }
            }
            // A file shorter than its own header says (cut at any length, as a crash can leave
            // it) is a damaged log.
            redb::DatabaseError::Storage(redb::StorageError::Io(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                StoreError::Damaged {
                    path: path.clone(),
                    detail: format!("the file ends early: {e}"),
                }
            }
            // A failing or full device is not a damaged log: the same data dir may open once it
            // is fixed.
            redb::DatabaseError::Storage(redb::StorageError::Io(e)) => {
                StoreError::from_redb(&path, redb::Error::Io(e))
            }
            other => StoreError::Damaged {
                path: path.clone(),
                detail: other.to_string(),
            },
        })?;
        if disk.is_none() {
            // The log holds every decision of the state machine, secrets included (the hub's
            // token hashes and certificates): owner only, whatever the umask was when redb
            // created it.
            std::fs::set_permissions(dir.join(DB_FILE), std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        let mut store = RaftStore {
            db,
            path,
            hard_state: HardState::default(),
            snapshot_meta: SnapshotMetadata::default(),
            terms: VecDeque::new(),
            wanted_snapshot: AtomicU64::new(0),
        };
        store.check_identity(identity)?;
        store.load()?;
        Ok(store)
    }

    fn db_err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::from_redb(&self.path, e.into())
    }

    fn damaged(&self, detail: String) -> StoreError {
        StoreError::Damaged {
            path: self.path.clone(),
            detail,
        }
    }

    fn check_identity(&mut self, want: &Identity) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.db_err(e))?;
            let format = meta
                .get(KEY_FORMAT)
                .map_err(|e| self.db_err(e))?
                .map(|v| read_u64(v.value()));
            match format {
                None => {
                    meta.insert(KEY_FORMAT, FORMAT_VERSION.to_le_bytes().as_slice())
                        .map_err(|e| self.db_err(e))?;
                    meta.insert(KEY_GROUP, want.group.as_bytes())
                        .map_err(|e| self.db_err(e))?;
                    meta.insert(KEY_NODE_ID, want.node_id.to_le_bytes().as_slice())
                        .map_err(|e| self.db_err(e))?;
                }
                Some(None) => return Err(self.damaged("unreadable layout version".into())),
                Some(Some(found)) if found > FORMAT_VERSION => {
                    return Err(StoreError::NewerFormat {
                        path: self.path.clone(),
                        found,
                    });
                }
                Some(Some(_)) => {
                    let group = meta
                        .get(KEY_GROUP)
                        .map_err(|e| self.db_err(e))?
                        .map(|v| String::from_utf8_lossy(v.value()).into_owned())
                        .unwrap_or_default();
                    let node_id = meta
                        .get(KEY_NODE_ID)
                        .map_err(|e| self.db_err(e))?
                        .and_then(|v| read_u64(v.value()))
                        .unwrap_or(0);
                    if group != want.group || node_id != want.node_id {
                        return Err(StoreError::WrongIdentity {
                            path: self.path.clone(),
                            found_group: group,
                            found_id: node_id,
                            want_group: want.group.clone(),
                            want_id: want.node_id,
                        });
                    }
                }
            }
            txn.open_table(ENTRIES).map_err(|e| self.db_err(e))?;
            txn.open_table(RAFT).map_err(|e| self.db_err(e))?;
        }
        txn.commit().map_err(|e| self.db_err(e))
    }

    fn load(&mut self) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let raft = txn.open_table(RAFT).map_err(|e| self.db_err(e))?;
        if let Some(bytes) = raft.get(KEY_HARD_STATE).map_err(|e| self.db_err(e))? {
            self.hard_state = self.decode("hard state", bytes.value())?;
        }
        if let Some(bytes) = raft.get(KEY_SNAPSHOT_META).map_err(|e| self.db_err(e))? {
            self.snapshot_meta = self.decode("snapshot metadata", bytes.value())?;
        }
        let entries = txn.open_table(ENTRIES).map_err(|e| self.db_err(e))?;
        let first = self.snapshot_meta.index + 1;
        for (expected, item) in (first..).zip(entries.iter().map_err(|e| self.db_err(e))?) {
            let (key, value) = item.map_err(|e| self.db_err(e))?;
            let entry: Entry = self.decode("log entry", value.value())?;
            if key.value() != expected || entry.index != expected {
                return Err(self.damaged(format!(
                    "log entry {} found where entry {expected} was expected",
                    key.value()
                )));
            }
            self.terms.push_back(entry.term);
        }
        let last = self.last();
        if self.hard_state.commit > last {
            return Err(self.damaged(format!(
                "the log ends at entry {last} but entry {} was committed: its tail was lost",
                self.hard_state.commit
            )));
        }
        if self.hard_state.commit < self.snapshot_meta.index {
            self.hard_state.commit = self.snapshot_meta.index;
        }
        Ok(())
    }

    fn decode<M: protobuf::Message>(
        &self,
        what: &'static str,
        bytes: &[u8],
    ) -> Result<M, StoreError> {
        M::parse_from_bytes(bytes).map_err(|e| StoreError::Codec {
            path: self.path.clone(),
            what,
            detail: e.to_string(),
        })
    }

    fn encode(
        &self,
        what: &'static str,
        msg: &impl protobuf::Message,
    ) -> Result<Vec<u8>, StoreError> {
        msg.write_to_bytes().map_err(|e| StoreError::Codec {
            path: self.path.clone(),
            what,
            detail: e.to_string(),
        })
    }

    /// The data dir this log lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the log has a configuration (bootstrapped, or joined and caught up by snapshot).
    pub fn is_initialized(&self) -> bool {
        self.snapshot_meta.get_conf_state() != &ConfState::default()
    }

    fn first(&self) -> u64 {
        self.snapshot_meta.index + 1
    }

    fn last(&self) -> u64 {
        self.snapshot_meta.index + self.terms.len() as u64
    }

    /// The current hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Metadata of the stored snapshot: the index the persisted state machine image reflects.
    pub fn snapshot_metadata(&self) -> &SnapshotMetadata {
        &self.snapshot_meta
    }

    /// The stored state machine image (empty before the first snapshot).
    pub fn snapshot_data(&self) -> Result<Vec<u8>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let raft = txn.open_table(RAFT).map_err(|e| self.db_err(e))?;
        let data = raft.get(KEY_SNAPSHOT_DATA).map_err(|e| self.db_err(e))?;
        Ok(data.map(|v| v.value().to_vec()).unwrap_or_default())
    }

    /// Appends entries, first removing any suffix of the log they conflict with (raft's rule:
    /// entries at and after the first new index are replaced). With `durable` false the write is
    /// made durable by the next durable commit, which the caller must make before acting on it.
    pub fn append(&mut self, entries: &[Entry], durable: bool) -> Result<(), StoreError> {
        let Some(first_new) = entries.first().map(|e| e.index) else {
            return Ok(());
        };
        if first_new < self.first() {
            return Err(self.damaged(format!(
                "raft asked to overwrite compacted entry {first_new} (log starts at {})",
                self.first()
            )));
        }
        if first_new > self.last() + 1 {
            return Err(self.damaged(format!(
                "raft asked to append entry {first_new} after entry {}, leaving a gap",
                self.last()
            )));
        }
        let mut txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        if !durable {
            txn.set_durability(Durability::None)
                .map_err(|e| self.damaged(e.to_string()))?;
        }
        {
            let mut table = txn.open_table(ENTRIES).map_err(|e| self.db_err(e))?;
            if first_new <= self.last() {
                table
                    .retain_in(first_new.., |_, _| false)
                    .map_err(|e| self.db_err(e))?;
            }
            for entry in entries {
                let bytes = self.encode("log entry", entry)?;
                table
                    .insert(entry.index, bytes.as_slice())
                    .map_err(|e| self.db_err(e))?;
            }
        }
        txn.commit().map_err(|e| self.db_err(e))?;
        let keep = (first_new - self.first()) as usize;
        self.terms.truncate(keep);
        self.terms.extend(entries.iter().map(|e| e.term));
        Ok(())
    }

    /// Persists the hard state (term, vote, commit); durably unless `durable` is false, which
    /// raft allows when only the commit index changed.
    pub fn set_hard_state(&mut self, hs: &HardState, durable: bool) -> Result<(), StoreError> {
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        self.write_hard_state(hs, durability)
    }

    /// Records a new commit index. Not synced: raft can always re-learn its commit index from the
    /// leader, and the next durable write carries it to disk anyway.
    pub fn set_commit(&mut self, commit: u64) -> Result<(), StoreError> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.write_hard_state(&hs, Durability::None)
    }

    fn write_hard_state(
        &mut self,
        hs: &HardState,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let bytes = self.encode("hard state", hs)?;
        let mut txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        txn.set_durability(durability)
            .map_err(|e| self.damaged(e.to_string()))?;
        {
            let mut raft = txn.open_table(RAFT).map_err(|e| self.db_err(e))?;
            raft.insert(KEY_HARD_STATE, bytes.as_slice())
                .map_err(|e| self.db_err(e))?;
        }
        txn.commit().map_err(|e| self.db_err(e))?;
        self.hard_state = hs.clone();
        Ok(())
    }

    /// Replaces the whole log with a snapshot received from the leader (or the bootstrap
    /// snapshot): every entry is dropped, since the snapshot supersedes them.
    pub fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let meta = snapshot.get_metadata();
        if meta.index < self.snapshot_meta.index {
            return Err(self.damaged(format!(
                "raft asked to install snapshot {} older than the stored snapshot {}",
                meta.index, self.snapshot_meta.index
            )));
        }
        let mut hs = self.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        self.write_snapshot(meta, &snapshot.data, &hs, u64::MAX)?;
        self.terms.clear();
        Ok(())
    }

    /// Stores a snapshot of this node's own state machine taken at `meta.index` (already applied)
    /// and drops the entries it covers.
    pub fn compact(&mut self, meta: &SnapshotMetadata, data: &[u8]) -> Result<(), StoreError> {
        if meta.index <= self.snapshot_meta.index {
            return Ok(());
        }
        if meta.index > self.last() {
            return Err(self.damaged(format!(
                "asked to compact to entry {} beyond the log's end {}",
                meta.index,
                self.last()
            )));
        }
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        let drop_count = (meta.index - self.snapshot_meta.index) as usize;
        self.write_snapshot(meta, data, &hs, meta.index)?;
        self.terms.drain(..drop_count);
        let wanted = self.wanted_snapshot.load(Ordering::Relaxed);
        if wanted <= meta.index {
            self.wanted_snapshot.store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes snapshot metadata, data and hard state in one durable transaction, dropping entries
    /// up to and including `drop_through`.
    fn write_snapshot(
        &mut self,
        meta: &SnapshotMetadata,
        data: &[u8],
        hs: &HardState,
        drop_through: u64,
    ) -> Result<(), StoreError> {
        let meta_bytes = self.encode("snapshot metadata", meta)?;
        let hs_bytes = self.encode("hard state", hs)?;
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(|e| self.db_err(e))?;
            entries
                .retain_in(..=drop_through, |_, _| false)
                .map_err(|e| self.db_err(e))?;
            let mut raft = txn.open_table(RAFT).map_err(|e| self.db_err(e))?;
            raft.insert(KEY_SNAPSHOT_META, meta_bytes.as_slice())
                .map_err(|e| self.db_err(e))?;
            raft.insert(KEY_SNAPSHOT_DATA, data)
                .map_err(|e| self.db_err(e))?;
            raft.insert(KEY_HARD_STATE, hs_bytes.as_slice())
                .map_err(|e| self.db_err(e))?;
        }
        txn.commit().map_err(|e| self.db_err(e))?;
        self.snapshot_meta = meta.clone();
        self.hard_state = hs.clone();
        Ok(())
    }

    /// A peer needs a snapshot newer than the stored one: the index it must cover, if any.
    pub fn wanted_snapshot(&self) -> Option<u64> {
        match self.wanted_snapshot.load(Ordering::Relaxed) {
            0 => None,
            index => Some(index),
        }
    }

    /// Reads the log entries `low..high` from disk.
    fn read_entries(&self, low: u64, high: u64) -> Result<Vec<Entry>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = txn.open_table(ENTRIES).map_err(|e| self.db_err(e))?;
        let mut out = Vec::with_capacity((high - low) as usize);
        for item in table.range(low..high).map_err(|e| self.db_err(e))? {
            let (_, value) = item.map_err(|e| self.db_err(e))?;
            out.push(self.decode("log entry", value.value())?);
        }
        if out.len() as u64 != high - low {
            return Err(self.damaged(format!(
                "entries {low}..{high} are not all on disk (found {})",
                out.len()
            )));
        }
        Ok(out)
    }
}

fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

fn other(e: StoreError) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl raft::Storage for RaftStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.snapshot_meta.get_conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut entries = self.read_entries(low, high).map_err(other)?;
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot_meta.index {
            return Ok(self.snapshot_meta.term);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.terms[(idx - self.first()) as usize])
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let conf = self.snapshot_meta.get_conf_state();
        // A snapshot taken before `to` joined would be refused by it: it must see itself in the
        // configuration it restores.
        let knows_peer = conf.voters.contains(&to) || conf.learners.contains(&to);
        if self.snapshot_meta.index < request_index || !knows_peer {
            // The driver notices this and compacts at its applied index, then raft asks again.
            let wanted = request_index.max(self.snapshot_meta.index + 1);
            self.wanted_snapshot.fetch_max(wanted, Ordering::Relaxed);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(self.snapshot_meta.clone());
        snapshot.data = self.snapshot_data().map_err(other)?.into();
        Ok(snapshot)
    }
}
