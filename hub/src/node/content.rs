//! Content: the rendered bundles the replicated state names by hash, kept outside the raft log.
//!
//! The log carries decisions and hashes (which blob each cluster's bundle is at a revision, and
//! each blob's size and object ids); the compressed manifests live in a content-addressed store
//! on every node ([`ContentStore`], `content.redb` beside the raft log). So log entries and
//! snapshots do not grow with what the fleet's manifests hold, and a follower's memory holds no
//! manifests.
//!
//! Before the leader proposes hashes, it stores their blobs and pushes them to the other nodes
//! (`HubContent.Put`, on the peer listener) until a majority of the group holds each durably
//! ([`replicate`]): any later quorum then includes a node that holds it. A node that lacks a blob
//! the state names — it was down, cut off, restored from a snapshot, or new — fetches it from a
//! peer (`HubContent.Get`) and checks it against its hash before storing it ([`keep_up`], and
//! [`blob`] when an agent or the API needs one at once). Blobs arrive checked: a peer's bytes
//! that do not hash to their name are refused.
//!
//! Garbage: a blob no revision references any more (its revisions were forgotten, its clusters
//! removed) is deleted from a node's store once it was stored more than [`GC_GRACE`] ago.
//! Storing a held blob again renews that time, so a blob pushed for a proposal that has not
//! applied yet is kept even if it was garbage before; the state is asked again just before a
//! blob goes, with writers held off.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_proto::v1::hub_content_client::HubContentClient;
use flotilla_proto::v1::hub_content_server::{HubContent, HubContentServer};
use flotilla_proto::v1::{ContentBlob, ContentBlobs, ContentPut, ContentStored, ContentWanted};
use parking_lot::Mutex;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::NodeHandle;
use crate::state::NodeId;
use crate::state::source::{Blob, BlobHash};
use flotilla_consensus::transport::net;

#[cfg(test)]
mod tests;

/// The store's file in the node's data directory.
pub const CONTENT_FILE: &str = "content.redb";

/// hash (32 bytes) → size (8 bytes LE), zstd frame.
const BLOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blobs");

/// hash → when it was last stored or stored again (ms since the epoch): what collection reads,
/// without touching the blobs.
const STORED: TableDefinition<&[u8], u64> = TableDefinition::new("stored");

/// The largest blob accepted from a peer (uncompressed): well above what a render may produce
/// (`Limits::max_rendered_bytes`), and a bound on what a claimed size may make a node allocate.
const MAX_BLOB_BYTES: u64 = 64 * 1024 * 1024;

/// redb's page cache for the store: the OS page cache holds recent blobs anyway, and the
/// default (1 GiB) would let the store alone outgrow the hub's memory limit.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Bytes of blob data in one `Put` or `Get` message: well under the peer transport's limit.
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Hashes asked in one `Get`.
const BATCH_HASHES: usize = 512;

/// How long the leader waits for a majority to hold new content before giving up the proposal.
const REPLICATE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one `Get` may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// Batches fetched at once, spread over the peers.
const FETCH_PARALLEL: usize = 4;

/// How often a node looks for content it lacks when nothing applied meanwhile.
const KEEP_UP_PERIOD: Duration = Duration::from_secs(2);

/// Least time between two looks for missing content (a busy log applies many entries a second).
const KEEP_UP_SPACING: Duration = Duration::from_millis(500);

/// Longest wait between two attempts to fetch content no peer gave.
const KEEP_UP_BACKOFF: Duration = Duration::from_secs(30);

/// How often unreferenced content is collected.
const GC_PERIOD: Duration = Duration::from_secs(60);

/// Unreferenced content younger than this is kept: it may belong to a proposal in flight.
pub const GC_GRACE: Duration = Duration::from_secs(600);

/// Why content could not be stored, found or replicated.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The store file failed.
    #[error("content store {path}: {detail}")]
    Store {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// Bytes that are not the blob they claim to be.
    #[error("blob {hash}: {detail}")]
    Corrupt {
        /// The claimed hash.
        hash: BlobHash,
        /// What is wrong.
        detail: String,
    },
    /// No node that answered holds the blob.
    #[error("blob {hash} is held by no node that answered ({detail})")]
    Unavailable {
        /// The blob.
        hash: BlobHash,
        /// Which nodes were asked and what they said.
        detail: String,
    },
    /// Fewer nodes than a majority acknowledged holding new content.
    #[error(
        "new content reached {held} of the {needed} nodes a majority needs within {}s: {detail}",
        REPLICATE_TIMEOUT.as_secs()
    )]
    NotReplicated {
        /// Nodes holding it, this one included.
        held: usize,
        /// A majority of the group.
        needed: usize,
        /// What the others said.
        detail: String,
    },
}

/// A node's content-addressed store of blobs: a redb file, every write fsynced before it is
/// acknowledged.
pub struct ContentStore {
    /// `None` once closed (the node stopped), so a node restarted in the same process can open
    /// the file again while stray handles linger.
    db: parking_lot::RwLock<Option<Database>>,
    path: PathBuf,
    /// The hashes held, so "is it here" costs no read. Changed only with `writing` held,
    /// together with the file.
    held: Mutex<HashSet<BlobHash>>,
    /// Serialises what writes (storing, collecting), so the file and `held` change together.
    writing: Mutex<()>,
}

impl ContentStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, ContentError> {
        let path = dir.join(CONTENT_FILE);
        let failed = |detail: String| ContentError::Store {
            path: path.clone(),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => failed(
                    "in use by another hub process; stop it or choose another --data-dir"
                        .to_owned(),
                ),
                e => failed(e.to_string()),
            })?;
        let mut held = HashSet::new();
        {
            let txn = db.begin_write().map_err(|e| failed(e.to_string()))?;
            txn.open_table(BLOBS).map_err(|e| failed(e.to_string()))?;
            txn.open_table(STORED).map_err(|e| failed(e.to_string()))?;
            txn.commit().map_err(|e| failed(e.to_string()))?;
            let txn = db.begin_read().map_err(|e| failed(e.to_string()))?;
            let table = txn.open_table(STORED).map_err(|e| failed(e.to_string()))?;
            for entry in table.iter().map_err(|e| failed(e.to_string()))? {
                let (key, _) = entry.map_err(|e| failed(e.to_string()))?;
                if let Ok(bytes) = <[u8; 32]>::try_from(key.value()) {
                    held.insert(BlobHash::from_bytes(bytes));
                }
            }
            // A blob record without its stored-at row (a write of an older layout): dropped,
            // so it is fetched again rather than read in a shape it does not have.
            let blobs = txn.open_table(BLOBS).map_err(|e| failed(e.to_string()))?;
            let mut orphans: Vec<Vec<u8>> = Vec::new();
            for entry in blobs.iter().map_err(|e| failed(e.to_string()))? {
                let (key, _) = entry.map_err(|e| failed(e.to_string()))?;
                let known = <[u8; 32]>::try_from(key.value())
                    .is_ok_and(|bytes| held.contains(&BlobHash::from_bytes(bytes)));
                if !known {
                    orphans.push(key.value().to_vec());
                }
            }
            drop(blobs);
            drop(table);
            drop(txn);
            if !orphans.is_empty() {
                let txn = db.begin_write().map_err(|e| failed(e.to_string()))?;
                {
                    let mut blobs = txn.open_table(BLOBS).map_err(|e| failed(e.to_string()))?;
                    for key in &orphans {
                        blobs
                            .remove(key.as_slice())
                            .map_err(|e| failed(e.to_string()))?;
                    }
                }
                txn.commit().map_err(|e| failed(e.to_string()))?;
            }
        }
        Ok(ContentStore {
            db: parking_lot::RwLock::new(Some(db)),
            path,
            held: Mutex::new(held),
            writing: Mutex::new(()),
        })
    }

    fn failed(&self, detail: impl ToString) -> ContentError {
        ContentError::Store {
            path: self.path.clone(),
            detail: detail.to_string(),
        }
    }

    /// Closes the file; every later call fails.
    pub fn close(&self) {
        self.db.write().take();
    }

    fn db(&self) -> Result<parking_lot::MappedRwLockReadGuard<'_, Database>, ContentError> {
        parking_lot::RwLockReadGuard::try_map(self.db.read(), Option::as_ref)
            .map_err(|_| self.failed("closed: the node stopped"))
    }

    /// Whether the blob is held.
    pub fn holds(&self, hash: &BlobHash) -> bool {
        self.held.lock().contains(hash)
    }

    /// Those of `hashes` not held.
    pub fn missing<'a>(&self, hashes: impl IntoIterator<Item = &'a BlobHash>) -> Vec<BlobHash> {
        let held = self.held.lock();
        hashes
            .into_iter()
            .filter(|h| !held.contains(*h))
            .copied()
            .collect()
    }

    /// How many blobs are held.
    pub fn len(&self) -> usize {
        self.held.lock().len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores the blobs in one fsynced transaction — those held already only have their
    /// stored-at time renewed, so a blob pushed again for a new proposal is not collected as
    /// the old garbage it was — and returns how many were new. The caller has checked them
    /// (content hashes to the name). Blocking.
    pub fn put(&self, blobs: &[Blob]) -> Result<usize, ContentError> {
        if blobs.is_empty() {
            return Ok(0);
        }
        let _writing = self.writing.lock();
        let now = now_ms();
        let db = self.db()?;
        let mut txn = db.begin_write().map_err(|e| self.failed(e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.failed(e))?;
        let mut new = 0;
        {
            let mut table = txn.open_table(BLOBS).map_err(|e| self.failed(e))?;
            let mut stored = txn.open_table(STORED).map_err(|e| self.failed(e))?;
            let mut value = Vec::new();
            for blob in blobs {
                let key = blob.hash.as_bytes().as_slice();
                let present = table.get(key).map_err(|e| self.failed(e))?.is_some();
                if !present {
                    value.clear();
                    value.extend_from_slice(&blob.size.to_le_bytes());
                    value.extend_from_slice(&blob.compressed);
                    table
                        .insert(key, value.as_slice())
                        .map_err(|e| self.failed(e))?;
                    new += 1;
                }
                stored.insert(key, now).map_err(|e| self.failed(e))?;
            }
        }
        txn.commit().map_err(|e| self.failed(e))?;
        self.held.lock().extend(blobs.iter().map(|b| b.hash));
        Ok(new)
    }

    /// The blob, if held, as stored (not checked). Blocking (one read).
    pub fn get(&self, hash: &BlobHash) -> Result<Option<Blob>, ContentError> {
        if !self.holds(hash) {
            return Ok(None);
        }
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| self.failed(e))?;
        let table = txn.open_table(BLOBS).map_err(|e| self.failed(e))?;
        let Some(value) = table
            .get(hash.as_bytes().as_slice())
            .map_err(|e| self.failed(e))?
        else {
            return Ok(None);
        };
        let value = value.value();
        let Some((header, compressed)) = value.split_first_chunk::<8>() else {
            return Err(ContentError::Corrupt {
                hash: *hash,
                detail: format!("stored record of {} bytes is truncated", value.len()),
            });
        };
        Ok(Some(Blob {
            hash: *hash,
            size: u64::from_le_bytes(*header),
            compressed: compressed.to_vec(),
        }))
    }

    /// Forgets one blob (found damaged), so it is fetched again. Blocking.
    pub fn forget(&self, hash: &BlobHash) -> Result<(), ContentError> {
        let _writing = self.writing.lock();
        self.delete(&[*hash])?;
        self.held.lock().remove(hash);
        Ok(())
    }

    fn delete(&self, hashes: &[BlobHash]) -> Result<(), ContentError> {
        let db = self.db()?;
        let txn = db.begin_write().map_err(|e| self.failed(e))?;
        {
            let mut table = txn.open_table(BLOBS).map_err(|e| self.failed(e))?;
            let mut stored = txn.open_table(STORED).map_err(|e| self.failed(e))?;
            for hash in hashes {
                let key = hash.as_bytes().as_slice();
                table.remove(key).map_err(|e| self.failed(e))?;
                stored.remove(key).map_err(|e| self.failed(e))?;
            }
        }
        txn.commit().map_err(|e| self.failed(e))
    }

    /// Deletes the blobs stored (or stored again) more than `grace` ago that no state
    /// references; returns how many. `live` is a quick first look (a copy of the state's
    /// references); `still_dead` is asked again, of the few candidates, just before they go,
    /// with writers held off, so a blob referenced or stored again meanwhile stays. Blocking.
    pub fn collect(
        &self,
        live: &dyn Fn(&BlobHash) -> bool,
        still_dead: &dyn Fn(&[BlobHash]) -> Vec<BlobHash>,
        grace: Duration,
    ) -> Result<usize, ContentError> {
        let cutoff = now_ms().saturating_sub(grace.as_millis() as u64);
        let candidates = self.stored_before(cutoff, live)?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let _writing = self.writing.lock();
        let mut dead = Vec::new();
        {
            let db = self.db()?;
            let txn = db.begin_read().map_err(|e| self.failed(e))?;
            let stored = txn.open_table(STORED).map_err(|e| self.failed(e))?;
            for hash in still_dead(&candidates) {
                let at = stored
                    .get(hash.as_bytes().as_slice())
                    .map_err(|e| self.failed(e))?
                    .map(|v| v.value());
                if at.is_some_and(|at| at <= cutoff) {
                    dead.push(hash);
                }
            }
        }
        if dead.is_empty() {
            return Ok(0);
        }
        self.delete(&dead)?;
        let mut held = self.held.lock();
        for hash in &dead {
            held.remove(hash);
        }
        Ok(dead.len())
    }

    /// Hashes `live` rejects, stored at or before `cutoff`, read without holding off writers.
    fn stored_before(
        &self,
        cutoff: u64,
        live: &dyn Fn(&BlobHash) -> bool,
    ) -> Result<Vec<BlobHash>, ContentError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| self.failed(e))?;
        let stored = txn.open_table(STORED).map_err(|e| self.failed(e))?;
        let mut out = Vec::new();
        for entry in stored.iter().map_err(|e| self.failed(e))? {
            let (key, at) = entry.map_err(|e| self.failed(e))?;
            let Ok(bytes) = <[u8; 32]>::try_from(key.value()) else {
                continue;
            };
            let hash = BlobHash::from_bytes(bytes);
            if at.value() <= cutoff && !live(&hash) {
                out.push(hash);
            }
        }
        Ok(out)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A node's content store and its clients to the other nodes' content services.
pub struct Content {
    store: Arc<ContentStore>,
    clients: Mutex<HashMap<NodeId, (String, HubContentClient<Channel>)>>,
    /// Held while fetching from peers: callers missing blobs wait for one fetch of all.
    fetching: tokio::sync::Mutex<()>,
}

impl Content {
    /// Content kept in `store`.
    pub fn new(store: Arc<ContentStore>) -> Self {
        Content {
            store,
            clients: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The node's store.
    pub fn store(&self) -> &Arc<ContentStore> {
        &self.store
    }

    fn client(
        &self,
        node: &NodeHandle,
        id: NodeId,
        address: &str,
    ) -> Result<HubContentClient<Channel>, String> {
        let mut clients = self.clients.lock();
        if let Some((known, client)) = clients.get(&id)
            && known == address
        {
            return Ok(client.clone());
        }
        let channel = net::channel(address, node.security()).map_err(|e| e.to_string())?;
        let client = HubContentClient::new(channel)
            .max_decoding_message_size(net::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(net::MAX_MESSAGE_BYTES);
        clients.insert(id, (address.to_owned(), client.clone()));
        Ok(client)
    }
}

/// The other members of the group, the leader first.
fn peers(node: &NodeHandle) -> Vec<(NodeId, String)> {
    let leader = node.leadership().leader;
    let mut peers: Vec<(NodeId, String)> = node
        .state()
        .members
        .iter()
        .filter(|(id, _)| **id != node.id())
        .map(|(id, address)| (*id, address.clone()))
        .collect();
    peers.sort_by_key(|(id, _)| Some(*id) != leader);
    peers
}

/// Checks that a blob's bytes are what its name says (and its size what the bytes hold).
fn check(blob: &Blob) -> Result<(), ContentError> {
    if blob.size > MAX_BLOB_BYTES {
        return Err(ContentError::Corrupt {
            hash: blob.hash,
            detail: format!(
                "a claimed size of {} bytes, over the {MAX_BLOB_BYTES} accepted",
                blob.size
            ),
        });
    }
    blob.content()
        .map(|_| ())
        .map_err(|e| ContentError::Corrupt {
            hash: blob.hash,
            detail: e.to_string(),
        })
}

/// Stores `blobs` here and pushes them to the other nodes; returns once a majority of the group
/// holds them durably. Pushes to the rest go on in the background.
pub async fn replicate(node: &NodeHandle, blobs: Vec<Blob>) -> Result<(), ContentError> {
    if blobs.is_empty() {
        return Ok(());
    }
    let blobs = Arc::new(blobs);
    let store = node.content().store().clone();
    let local = blobs.clone();
    tokio::task::spawn_blocking(move || store.put(&local))
        .await
        .map_err(|e| node.content().store().failed(e))??;
    let peers = peers(node);
    let members = peers.len() + 1;
    let needed = members / 2 + 1;
    if needed <= 1 {
        return Ok(());
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(peers.len().max(1));
    for (id, address) in peers {
        let (node, blobs, tx) = (node.clone(), blobs.clone(), tx.clone());
        tokio::spawn(async move {
            let pushed = push(&node, id, &address, &blobs).await;
            let _ = tx.send((id, pushed)).await;
        });
    }
    drop(tx);
    let deadline = Instant::now() + REPLICATE_TIMEOUT;
    let mut held = 1;
    let mut refused = Vec::new();
    while held < needed {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((_, Ok(())))) => held += 1,
            Ok(Some((id, Err(why)))) => refused.push(format!("node {id}: {why}")),
            Ok(None) => break,
            Err(_) => {
                refused.push("the others did not answer in time".to_owned());
                break;
            }
        }
    }
    if held >= needed {
        return Ok(());
    }
    Err(ContentError::NotReplicated {
        held,
        needed,
        detail: refused.join("; "),
    })
}

/// Sends `blobs` to one node in batches.
async fn push(node: &NodeHandle, id: NodeId, address: &str, blobs: &[Blob]) -> Result<(), String> {
    let mut client = node.content().client(node, id, address)?;
    for batch in batches(blobs) {
        let request = ContentPut {
            group: node.group().to_owned(),
            from: node.id(),
            blobs: batch.iter().map(message).collect(),
        };
        tokio::time::timeout(REPLICATE_TIMEOUT, client.put(request))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|status| status.message().to_owned())?;
    }
    Ok(())
}

/// Consecutive runs of blobs of at most [`BATCH_BYTES`] each (a larger blob alone).
fn batches(blobs: &[Blob]) -> Vec<&[Blob]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, blob) in blobs.iter().enumerate() {
        if i > start && bytes + blob.compressed.len() > BATCH_BYTES {
            out.push(&blobs[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += blob.compressed.len();
    }
    if start < blobs.len() {
        out.push(&blobs[start..]);
    }
    out
}

fn message(blob: &Blob) -> ContentBlob {
    ContentBlob {
        hash: blob.hash.as_bytes().to_vec(),
        size: blob.size,
        compressed: blob.compressed.clone(),
    }
}

fn from_message(message: ContentBlob) -> Result<Blob, String> {
    let bytes = <[u8; 32]>::try_from(message.hash.as_slice())
        .map_err(|_| format!("a hash of {} bytes, not 32", message.hash.len()))?;
    Ok(Blob {
        hash: BlobHash::from_bytes(bytes),
        size: message.size,
        compressed: message.compressed,
    })
}

/// The blob, from this node's store (checked: a damaged record is forgotten and fetched
/// again) or else from a peer.
///
/// A held blob is read on the calling task: one read of a few KiB that was written moments
/// before (the OS page cache holds it) costs microseconds, while a blocking-pool task per read
/// grows hundreds of threads when ten thousand agents are sent their bundles at once. A missing
/// one makes this node fetch everything it lacks, once for all the callers waiting: a node that
/// restarted behind does not ask its peers once per agent.
pub async fn blob(node: &NodeHandle, hash: &BlobHash) -> Result<Blob, ContentError> {
    let store = node.content().store();
    if let Some(blob) = store.get(hash)? {
        match check(&blob) {
            Ok(()) => return Ok(blob),
            Err(error) => {
                tracing::error!(%error, "a stored blob is damaged; fetching it again");
                let (store, hash) = (store.clone(), *hash);
                tokio::task::spawn_blocking(move || store.forget(&hash))
                    .await
                    .map_err(|e| node.content().store().failed(e))??;
            }
        }
    }
    {
        let _fetching = node.content().fetching.lock().await;
        if !store.holds(hash) {
            let mut wanted = vec![*hash];
            wanted.extend(
                store
                    .missing(node.state().referenced_blobs())
                    .into_iter()
                    .filter(|h| h != hash),
            );
            // Another blob no peer has is not this caller's failure.
            if let Err(error) = fetch(node, wanted).await
                && !store.holds(hash)
            {
                return Err(error);
            }
        }
    }
    store.get(hash)?.ok_or_else(|| ContentError::Unavailable {
        hash: *hash,
        detail: "no peer returned it".to_owned(),
    })
}

/// Fetches `hashes` from the peers, checks and stores them; returns how many came. A hash no
/// peer holds is an error naming what each peer said (those found are stored all the same).
///
/// Batches go to the peers in turn, [`FETCH_PARALLEL`] at a time, so a node catching up is
/// fed by every peer at once and checks one batch while the next is on the wire; a batch a
/// peer cannot complete is asked of the others.
pub async fn fetch(node: &NodeHandle, hashes: Vec<BlobHash>) -> Result<usize, ContentError> {
    use futures::StreamExt;

    let peers = peers(node);
    if peers.is_empty() {
        return match hashes.first() {
            Some(hash) => Err(ContentError::Unavailable {
                hash: *hash,
                detail: "this node has no peers".to_owned(),
            }),
            None => Ok(0),
        };
    }
    // The state may name a hash twice (a pending render and the revisions); ask once.
    let mut seen = HashSet::new();
    let hashes: Vec<BlobHash> = hashes.into_iter().filter(|h| seen.insert(*h)).collect();
    let batches: Vec<Vec<BlobHash>> = hashes.chunks(BATCH_HASHES).map(<[_]>::to_vec).collect();
    let failed = Mutex::new(HashSet::new());
    let results: Vec<(usize, Vec<BlobHash>, Vec<String>)> =
        futures::stream::iter(batches.into_iter().enumerate())
            .map(|(index, batch)| fetch_batch(node, &peers, &failed, index, batch))
            .buffer_unordered(FETCH_PARALLEL)
            .collect()
            .await;
    let mut found = 0;
    let mut left = Vec::new();
    let mut said: Vec<String> = Vec::new();
    for (got, missing, reasons) in results {
        found += got;
        left.extend(missing);
        for reason in reasons {
            if !said.contains(&reason) {
                said.push(reason);
            }
        }
    }
    if let Some(hash) = left.first() {
        return Err(ContentError::Unavailable {
            hash: *hash,
            detail: said.join("; "),
        });
    }
    Ok(found)
}

/// Fetches one batch, from the peer its index picks first and then from the others (those
/// that failed an earlier batch of this fetch last, so a dead peer costs one timeout, not
/// one per batch); returns how many were stored, those no peer gave, and what the peers said.
async fn fetch_batch(
    node: &NodeHandle,
    peers: &[(NodeId, String)],
    failed: &Mutex<HashSet<NodeId>>,
    index: usize,
    mut wanted: Vec<BlobHash>,
) -> (usize, Vec<BlobHash>, Vec<String>) {
    let mut found = 0;
    let mut said = Vec::new();
    let mut order: Vec<&(NodeId, String)> = (0..peers.len())
        .map(|turn| &peers[(index + turn) % peers.len()])
        .collect();
    {
        let failed = failed.lock();
        order.sort_by_key(|(id, _)| failed.contains(id));
    }
    for (id, address) in order {
        if wanted.is_empty() {
            break;
        }
        match fetch_from(node, *id, address, &wanted).await {
            Ok(got) => {
                found += got.len();
                wanted.retain(|h| !got.contains(h));
                if !wanted.is_empty() {
                    said.push(format!("node {id} does not hold them"));
                }
            }
            Err(why) => {
                failed.lock().insert(*id);
                said.push(format!("node {id}: {why}"));
            }
        }
    }
    (found, wanted, said)
}

/// Asks one peer for `wanted` until it has returned all it holds; checks and stores what was
/// asked for (anything else is dropped). Returns the hashes stored.
async fn fetch_from(
    node: &NodeHandle,
    id: NodeId,
    address: &str,
    wanted: &[BlobHash],
) -> Result<HashSet<BlobHash>, String> {
    let mut client = node.content().client(node, id, address)?;
    let mut found = HashSet::new();
    for asked in wanted.chunks(BATCH_HASHES) {
        let mut left: HashSet<BlobHash> = asked.iter().copied().collect();
        while !left.is_empty() {
            let request = ContentWanted {
                group: node.group().to_owned(),
                hashes: left.iter().map(|h| h.as_bytes().to_vec()).collect(),
            };
            let reply = tokio::time::timeout(FETCH_TIMEOUT, client.get(request))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|status| status.message().to_owned())?
                .into_inner();
            let blobs: Vec<Blob> = reply
                .blobs
                .into_iter()
                .map(from_message)
                .collect::<Result<Vec<Blob>, String>>()?
                .into_iter()
                .filter(|b| left.contains(&b.hash))
                .collect();
            if blobs.is_empty() {
                // Nothing more comes from this peer: what is left it lacks.
                break;
            }
            let stored = checked_put(node, blobs).await.map_err(|e| e.to_string())?;
            for hash in stored {
                left.remove(&hash);
                found.insert(hash);
            }
            for missing in reply.missing {
                if let Ok(bytes) = <[u8; 32]>::try_from(missing.as_slice()) {
                    left.remove(&BlobHash::from_bytes(bytes));
                }
            }
        }
    }
    Ok(found)
}

/// Checks blobs against their hashes and stores them here, off the async threads; returns
/// their hashes.
async fn checked_put(node: &NodeHandle, blobs: Vec<Blob>) -> Result<Vec<BlobHash>, ContentError> {
    let store = node.content().store().clone();
    tokio::task::spawn_blocking(move || {
        for blob in &blobs {
            check(blob)?;
        }
        store.put(&blobs)?;
        Ok(blobs.iter().map(|b| b.hash).collect())
    })
    .await
    .map_err(|e| node.content().store().failed(e))?
}

/// Fetches every blob the state references and this node lacks; returns how many came.
async fn catch_up(node: &NodeHandle) -> Result<usize, ContentError> {
    let referenced: Vec<BlobHash> = node.state().referenced_blobs().copied().collect();
    let missing = node.content().store().missing(&referenced);
    if missing.is_empty() {
        return Ok(0);
    }
    let _fetching = node.content().fetching.lock().await;
    let missing = node.content().store().missing(&missing);
    if missing.is_empty() {
        return Ok(0);
    }
    fetch(node, missing).await
}

/// Keeps this node's store holding every blob the state references, and collects what it no
/// longer references; ends when the node stops.
pub(crate) async fn keep_up(node: NodeHandle) {
    let stop = node.stopping();
    let mut applied = node.watch_applied();
    let mut collected = Instant::now();
    let mut failures = 0u32;
    let mut warned: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = applied.changed() => {}
            _ = tokio::time::sleep(KEEP_UP_PERIOD) => {}
        }
        let mut pause = KEEP_UP_SPACING;
        match catch_up(&node).await {
            Ok(0) => failures = 0,
            Ok(count) => {
                failures = 0;
                tracing::info!(blobs = count, "fetched content from peers");
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                pause = KEEP_UP_SPACING
                    .saturating_mul(1 << failures.min(6))
                    .min(KEEP_UP_BACKOFF);
                if warned.is_none_or(|at| at.elapsed() > KEEP_UP_BACKOFF) {
                    warned = Some(Instant::now());
                    tracing::warn!(%error, "cannot fetch content the state references");
                }
            }
        }
        if collected.elapsed() >= GC_PERIOD {
            collected = Instant::now();
            collect(&node).await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Deletes unreferenced content older than [`GC_GRACE`].
pub(crate) async fn collect(node: &NodeHandle) {
    let live: HashSet<BlobHash> = node.state().referenced_blobs().copied().collect();
    let (store, handle) = (node.content().store().clone(), node.clone());
    let collected = tokio::task::spawn_blocking(move || {
        let still_dead = |candidates: &[BlobHash]| {
            let state = handle.state();
            candidates
                .iter()
                .filter(|h| !state.references_blob(h))
                .copied()
                .collect()
        };
        store.collect(&|h| live.contains(h), &still_dead, GC_GRACE)
    })
    .await;
    match collected {
        Ok(Ok(0)) => {}
        Ok(Ok(count)) => tracing::info!(blobs = count, "collected unreferenced content"),
        Ok(Err(error)) => tracing::warn!(%error, "cannot collect unreferenced content"),
        Err(error) => tracing::warn!(%error, "content collection panicked"),
    }
}

/// The `HubContent` service of a node, served on its peer listener.
pub(crate) fn server(node: NodeHandle) -> HubContentServer<ContentService> {
    HubContentServer::new(ContentService { node })
        .max_decoding_message_size(net::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(net::MAX_MESSAGE_BYTES)
}

/// Stores pushed blobs and serves held ones to peers.
pub(crate) struct ContentService {
    node: NodeHandle,
}

impl ContentService {
    fn same_group(&self, group: &str) -> Result<(), Status> {
        if group != self.node.group() {
            return Err(Status::failed_precondition(format!(
                "content for group '{group}' reached a node of group '{}'",
                self.node.group()
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl HubContent for ContentService {
    async fn put(&self, request: Request<ContentPut>) -> Result<Response<ContentStored>, Status> {
        let put = request.into_inner();
        self.same_group(&put.group)?;
        let blobs = put
            .blobs
            .into_iter()
            .map(from_message)
            .collect::<Result<Vec<Blob>, String>>()
            .map_err(Status::invalid_argument)?;
        let store = self.node.content().store().clone();
        let stored = tokio::task::spawn_blocking(move || {
            for blob in &blobs {
                check(blob)?;
            }
            store.put(&blobs)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| match e {
            ContentError::Corrupt { .. } => Status::invalid_argument(e.to_string()),
            _ => Status::unavailable(e.to_string()),
        })?;
        Ok(Response::new(ContentStored {
            stored: u32::try_from(stored).unwrap_or(u32::MAX),
        }))
    }

    async fn get(&self, request: Request<ContentWanted>) -> Result<Response<ContentBlobs>, Status> {
        let wanted = request.into_inner();
        self.same_group(&wanted.group)?;
        if wanted.hashes.len() > BATCH_HASHES {
            return Err(Status::invalid_argument(format!(
                "{} hashes asked at once; at most {BATCH_HASHES}",
                wanted.hashes.len()
            )));
        }
        let store = self.node.content().store().clone();
        let reply = tokio::task::spawn_blocking(move || -> Result<ContentBlobs, ContentError> {
            let mut reply = ContentBlobs::default();
            let mut bytes = 0;
            for raw in wanted.hashes {
                let Ok(array) = <[u8; 32]>::try_from(raw.as_slice()) else {
                    reply.missing.push(raw);
                    continue;
                };
                match store.get(&BlobHash::from_bytes(array))? {
                    None => reply.missing.push(raw),
                    Some(blob) => {
                        if !reply.blobs.is_empty() && bytes + blob.compressed.len() > BATCH_BYTES {
                            break;
                        }
                        bytes += blob.compressed.len();
                        reply.blobs.push(message(&blob));
                    }
                }
            }
            Ok(reply)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(reply))
    }
}
