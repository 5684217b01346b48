//! Git sources, their revisions, render results and the content-addressed blobs they reference.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::command::RenderOutcome;
use super::{CommandError, State, Timestamp};

/// zstd level blobs are compressed with: a good ratio for YAML at a small CPU cost.
const ZSTD_LEVEL: i32 = 3;

/// A revision: one commit of one source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RevisionRef {
    /// Source name.
    pub source: String,
    /// Commit id.
    pub commit: String,
}

impl fmt::Display for RevisionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.source, self.commit)
    }
}

/// A Git source the hub follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Repository URL.
    pub url: String,
    /// Commit most recently fetched.
    pub head: Option<String>,
    /// When the last successful fetch was recorded.
    pub fetched_at: Option<Timestamp>,
    /// The last fetch error, cleared by the next successful fetch.
    pub last_error: Option<String>,
    /// Fetches asked for so far (webhooks, operators); the leader fetches when it grows.
    pub fetch_requests: u64,
    /// When the last fetch was asked for.
    pub requested_at: Option<Timestamp>,
    /// Revisions recorded so far; each new revision gets the next number as its `seq`.
    pub revisions_recorded: u64,
}

impl Source {
    fn new(url: &str) -> Self {
        Source {
            url: url.to_owned(),
            head: None,
            fetched_at: None,
            last_error: None,
            fetch_requests: 0,
            requested_at: None,
            revisions_recorded: 0,
        }
    }
}

/// A fetched commit and what rendering it produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    /// Order of arrival among its source's revisions (1 for the first), independent of clocks.
    pub seq: u64,
    /// When it was fetched.
    pub fetched_at: Timestamp,
    /// Render result.
    pub status: RevisionStatus,
    /// The commit's signature, recorded before it renders; `None`: unsigned (or not looked at
    /// yet, which counts the same).
    pub signature: Option<super::signature::CommitSignature>,
}

/// The chart a chart bundle rendered from, as a revision records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartRecord {
    /// Its directory in the repository, or `REPO/NAME:VERSION` for a remote one.
    pub source: String,
    /// The version its `Chart.yaml` declares.
    pub version: String,
    /// The digest of its files or package, fetched dependencies included (hex).
    pub digest: String,
}

/// Where a revision is in its life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RevisionStatus {
    /// Fetched, not rendered yet.
    Fetched,
    /// Rendered: per cluster, per bundle, the blob of its manifests.
    Rendered {
        /// cluster → bundle → blob.
        bundles: BTreeMap<String, BTreeMap<String, BlobHash>>,
        /// Clusters registered or relabelled later for which it did not render: they keep
        /// their previous entry (or none).
        cluster_errors: BTreeMap<String, RenderError>,
        /// The `flotilla.yaml` text it was rendered from.
        spec: String,
        /// Per chart bundle, the chart it rendered from.
        #[serde(default)]
        charts: BTreeMap<String, ChartRecord>,
        /// When.
        at: Timestamp,
    },
    /// Rendering failed; it never reaches a cluster.
    Failed {
        /// Where and why.
        error: RenderError,
        /// When.
        at: Timestamp,
    },
}

impl Revision {
    /// The bundles rendered for one cluster, if the revision rendered.
    pub fn bundles_for(&self, cluster: &str) -> Option<&BTreeMap<String, BlobHash>> {
        match &self.status {
            RevisionStatus::Rendered { bundles, .. } => bundles.get(cluster),
            _ => None,
        }
    }

    /// Why the revision did not render for a cluster registered or relabelled after it.
    pub fn error_for(&self, cluster: &str) -> Option<&RenderError> {
        match &self.status {
            RevisionStatus::Rendered { cluster_errors, .. } => cluster_errors.get(cluster),
            _ => None,
        }
    }

    /// The `flotilla.yaml` text, when it rendered.
    pub fn spec(&self) -> Option<&str> {
        match &self.status {
            RevisionStatus::Rendered { spec, .. } => Some(spec),
            _ => None,
        }
    }
}

/// A render failure, located in the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderError {
    /// File, relative to the repository root.
    pub file: String,
    /// Line in that file, if known.
    pub line: Option<u32>,
    /// What is wrong and what to do.
    pub message: String,
}

impl RenderError {
    /// `file:line: message`, or the message alone for problems of the whole commit.
    pub fn describe(&self) -> String {
        match (self.file.as_str(), self.line) {
            ("", _) => self.message.clone(),
            (file, Some(line)) => format!("{file}:{line}: {}", self.message),
            (file, None) => format!("{file}: {}", self.message),
        }
    }
}

/// blake3 of a blob's uncompressed content (core's content hash).
pub type BlobHash = flotilla_core::ContentHash;

/// Rendered manifests, zstd-compressed, named by the hash of their uncompressed content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// Content hash.
    pub hash: BlobHash,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// zstd frame.
    pub compressed: Vec<u8>,
}

/// Why blob content could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// zstd failed.
    #[error("zstd: {0}")]
    Zstd(#[from] std::io::Error),
    /// The content does not hash to the blob's name.
    #[error("content hashes to {actual}, not {expected}")]
    HashMismatch {
        /// The blob's name.
        expected: BlobHash,
        /// The content's hash.
        actual: BlobHash,
    },
}

impl Blob {
    /// Compresses content and names it by its hash.
    pub fn from_content(content: &[u8]) -> Result<Self, BlobError> {
        Ok(Blob {
            hash: BlobHash::of(content),
            size: content.len() as u64,
            compressed: compress(content)?,
        })
    }

    /// Decompresses the content and checks it against the hash.
    pub fn content(&self) -> Result<Vec<u8>, BlobError> {
        let content = decompress(&self.compressed, self.size as usize)?;
        let actual = BlobHash::of(&content);
        if actual != self.hash {
            return Err(BlobError::HashMismatch {
                expected: self.hash,
                actual,
            });
        }
        Ok(content)
    }
}

/// zstd at [`ZSTD_LEVEL`] with a context kept per thread: creating one costs more than
/// compressing a small bundle (it was a third of compressing 100,000 blobs).
fn compress(content: &[u8]) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { RefCell::new(None) };
    }
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match slot.as_mut() {
            Some(compressor) => compressor,
            None => slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        compressor.compress(content)
    })
}

/// zstd decompression of at most `capacity` bytes, with a context kept per thread.
fn decompress(compressed: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { RefCell::new(None) };
    }
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match slot.as_mut() {
            Some(decompressor) => decompressor,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(compressed, capacity)
    })
}

/// Checks that a revision exists and rendered successfully.
pub(super) fn require_rendered(state: &State, revision: &RevisionRef) -> Result<(), CommandError> {
    match state.revisions.get(revision).map(|r| &r.status) {
        None => Err(CommandError::UnknownRevision(revision.clone())),
        Some(RevisionStatus::Rendered { .. }) => Ok(()),
        Some(_) => Err(CommandError::RevisionNotRendered(revision.clone())),
    }
}

pub(super) fn record_fetch(
    state: &mut State,
    name: &str,
    url: &str,
    commit: &str,
    at: Timestamp,
) -> Result<(), CommandError> {
    if name.is_empty() || commit.is_empty() {
        return Err(CommandError::Invalid(
            "source name and commit are required".into(),
        ));
    }
    let source = state
        .sources
        .entry(name.to_owned())
        .or_insert_with(|| Source::new(url));
    source.url = url.to_owned();
    source.head = Some(commit.to_owned());
    source.fetched_at = Some(at);
    source.last_error = None;
    let key = RevisionRef {
        source: name.to_owned(),
        commit: commit.to_owned(),
    };
    if let std::collections::btree_map::Entry::Vacant(entry) = state.revisions.entry(key) {
        source.revisions_recorded += 1;
        entry.insert(Revision {
            seq: source.revisions_recorded,
            fetched_at: at,
            status: RevisionStatus::Fetched,
            signature: None,
        });
    }
    Ok(())
}

pub(super) fn record_fetch_error(
    state: &mut State,
    name: &str,
    url: &str,
    error: &str,
    _at: Timestamp,
) -> Result<(), CommandError> {
    if name.is_empty() {
        return Err(CommandError::Invalid("source name is required".into()));
    }
    let source = state
        .sources
        .entry(name.to_owned())
        .or_insert_with(|| Source::new(url));
    source.last_error = Some(error.to_owned());
    Ok(())
}

pub(super) fn request_fetch(
    state: &mut State,
    name: &str,
    url: &str,
    at: Timestamp,
) -> Result<(), CommandError> {
    if name.is_empty() {
        return Err(CommandError::Invalid("source name is required".into()));
    }
    let source = state
        .sources
        .entry(name.to_owned())
        .or_insert_with(|| Source::new(url));
    source.fetch_requests += 1;
    source.requested_at = Some(at);
    Ok(())
}

pub(super) fn record_render(
    state: &mut State,
    revision: &RevisionRef,
    outcome: &RenderOutcome,
    at: Timestamp,
) -> Result<(), CommandError> {
    let current = state
        .revisions
        .get(revision)
        .ok_or_else(|| CommandError::UnknownRevision(revision.clone()))?;
    if current.status != RevisionStatus::Fetched {
        return Err(CommandError::AlreadyRendered(revision.clone()));
    }
    let status = match outcome {
        RenderOutcome::Failed { error } => RevisionStatus::Failed {
            error: error.clone(),
            at,
        },
        RenderOutcome::Rendered {
            bundles,
            blobs,
            spec,
            charts,
        } => {
            store_blobs(state, bundles, blobs)?;
            RevisionStatus::Rendered {
                bundles: bundles.clone(),
                cluster_errors: BTreeMap::new(),
                spec: spec.clone(),
                charts: charts.clone(),
                at,
            }
        }
    };
    if let Some(rev) = state.revisions.get_mut(revision) {
        rev.status = status;
    }
    Ok(())
}

/// Checks that every referenced blob is stored or carried (and sound), then stores the carried
/// ones. Nothing is stored when any check fails.
fn store_blobs(
    state: &mut State,
    bundles: &BTreeMap<String, BTreeMap<String, BlobHash>>,
    blobs: &[Blob],
) -> Result<(), CommandError> {
    let carried = verify_blobs(blobs)?;
    let referenced = bundles.values().flat_map(|b| b.values());
    for hash in referenced {
        if !state.blobs.contains_key(hash) && !carried.contains_key(hash) {
            return Err(CommandError::MissingBlob(*hash));
        }
    }
    for (hash, blob) in carried {
        state.blobs.entry(hash).or_insert_with(|| blob.clone());
    }
    Ok(())
}

pub(super) fn amend_render(
    state: &mut State,
    revision: &RevisionRef,
    bundles: &BTreeMap<String, BTreeMap<String, BlobHash>>,
    errors: &BTreeMap<String, RenderError>,
    blobs: &[Blob],
    _at: Timestamp,
) -> Result<(), CommandError> {
    require_rendered(state, revision)?;
    if let Some(unknown) = bundles
        .keys()
        .chain(errors.keys())
        .find(|c| !state.clusters.contains_key(*c))
    {
        return Err(CommandError::UnknownCluster(unknown.clone()));
    }
    store_blobs(state, bundles, blobs)?;
    if let Some(Revision {
        status:
            RevisionStatus::Rendered {
                bundles: current,
                cluster_errors,
                ..
            },
        ..
    }) = state.revisions.get_mut(revision)
    {
        for (cluster, rendered) in bundles {
            current.insert(cluster.clone(), rendered.clone());
            cluster_errors.remove(cluster);
        }
        for (cluster, error) in errors {
            cluster_errors.insert(cluster.clone(), error.clone());
        }
    }
    collect_garbage(state);
    Ok(())
}

/// Drops every blob no rendered revision references.
pub(super) fn collect_garbage(state: &mut State) {
    let live: std::collections::BTreeSet<&BlobHash> = state
        .revisions
        .values()
        .filter_map(|r| match &r.status {
            RevisionStatus::Rendered { bundles, .. } => Some(bundles),
            _ => None,
        })
        .flat_map(|b| b.values().flat_map(|m| m.values()))
        .collect();
    let dead: Vec<BlobHash> = state
        .blobs
        .keys()
        .filter(|h| !live.contains(h))
        .cloned()
        .collect();
    for hash in dead {
        state.blobs.remove(&hash);
    }
}

/// Forgets a removed cluster's entries in every revision (and the blobs only it used).
pub(super) fn drop_cluster(state: &mut State, cluster: &str) {
    for revision in state.revisions.values_mut() {
        if let RevisionStatus::Rendered {
            bundles,
            cluster_errors,
            ..
        } = &mut revision.status
        {
            bundles.remove(cluster);
            cluster_errors.remove(cluster);
        }
    }
    collect_garbage(state);
}

/// Checks every carried blob decompresses to content with its hash.
fn verify_blobs(blobs: &[Blob]) -> Result<BTreeMap<BlobHash, &Blob>, CommandError> {
    let mut out = BTreeMap::new();
    for blob in blobs {
        blob.content().map_err(|e| CommandError::CorruptBlob {
            hash: blob.hash,
            detail: e.to_string(),
        })?;
        out.insert(blob.hash, blob);
    }
    Ok(out)
}

pub(super) fn forget(state: &mut State, revision: &RevisionRef) -> Result<(), CommandError> {
    if !state.revisions.contains_key(revision) {
        return Err(CommandError::UnknownRevision(revision.clone()));
    }
    if let Some(user) = user_of(state, revision) {
        return Err(CommandError::RevisionInUse {
            revision: revision.clone(),
            user,
        });
    }
    state.revisions.remove(revision);
    collect_garbage(state);
    Ok(())
}

/// What still needs a revision: a stage pin, a cluster assignment or an active rollout.
fn user_of(state: &State, revision: &RevisionRef) -> Option<String> {
    if let Some((name, _)) = state
        .stages
        .iter()
        .find(|(_, s)| s.pinned.as_ref() == Some(revision))
    {
        return Some(format!("stage '{name}'"));
    }
    if let Some((name, _)) = state
        .clusters
        .iter()
        .find(|(_, c)| c.assigned.as_ref() == Some(revision))
    {
        return Some(format!("cluster '{name}'"));
    }
    state
        .rollouts
        .iter()
        .find(|(_, r)| r.is_active() && (&r.to == revision || r.from.as_ref() == Some(revision)))
        .map(|(id, _)| format!("rollout {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_compression_context_gives_one_shot_zstd_bytes_and_round_trips() {
        // Larger first, so a context sized by it then compresses a small one.
        let large = "kind: ConfigMap\n".repeat(4_000).into_bytes();
        for content in [large.as_slice(), b"small", b""] {
            let blob = Blob::from_content(content).expect("compress");
            let one_shot = zstd::bulk::compress(content, ZSTD_LEVEL).expect("zstd");
            assert_eq!(blob.compressed, one_shot);
            assert_eq!(blob.content().expect("decompress"), content);
        }
    }
}
