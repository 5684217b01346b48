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
    /// The content is not a rendered bundle.
    #[error("not a rendered bundle: {0}")]
    Bundle(String),
    /// The content is not the size the blob claims.
    #[error("content of {actual} bytes, not the {claimed} claimed")]
    Size {
        /// The blob's size.
        claimed: u64,
        /// The content's.
        actual: u64,
    },
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

    /// Compresses each content, on all cores (a render of a large fleet has a hundred
    /// thousand of them), in the order given.
    pub fn from_contents(contents: &[&[u8]]) -> Result<Vec<Self>, BlobError> {
        let workers = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(contents.len().div_ceil(64))
            .max(1);
        let chunk = contents.len().div_ceil(workers).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = contents
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|content| Blob::from_content(content))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let mut blobs = Vec::with_capacity(contents.len());
            for handle in handles {
                let part = handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
                blobs.extend(part);
            }
            Ok(blobs)
        })
    }

    /// Decompresses the content and checks it against the size and the hash.
    pub fn content(&self) -> Result<Vec<u8>, BlobError> {
        let content = decompress(&self.compressed, self.size as usize)?;
        if content.len() as u64 != self.size {
            return Err(BlobError::Size {
                claimed: self.size,
                actual: content.len() as u64,
            });
        }
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

/// An object's identity across API versions: group, kind, namespace, name (core's).
pub use flotilla_core::render::ObjectKey;

/// What the replicated state knows of a blob: never its content (that lives in each node's
/// content store, `node::content`), only what decisions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    /// Uncompressed size in bytes.
    pub size: u64,
    /// The set of objects it holds (a key of `State::object_sets`), which the deletion guard
    /// counts.
    pub objects: ObjectSetId,
}

/// Names a set of object ids: the hash of its encoding, so equal sets are stored once.
pub type ObjectSetId = BlobHash;

/// The id of a set of object ids.
pub fn object_set_id(keys: &[ObjectKey]) -> ObjectSetId {
    let bytes = postcard::to_allocvec(keys).unwrap_or_default();
    ObjectSetId::of(&bytes)
}

/// Blobs a command introduces, described without their content: hash, size and the objects
/// each holds, equal object sets written once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobIndex {
    /// The blobs.
    pub blobs: Vec<IndexedBlob>,
    /// The object sets they hold, each once; `IndexedBlob::objects` is a position here.
    pub object_sets: Vec<Vec<ObjectKey>>,
}

/// One blob of a [`BlobIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedBlob {
    /// Content hash.
    pub hash: BlobHash,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Position of its object set in `BlobIndex::object_sets`.
    pub objects: u32,
}

impl BlobIndex {
    /// An index of `entries` (hash, size, object ids), equal object sets written once.
    pub fn of(entries: impl IntoIterator<Item = (BlobHash, u64, Vec<ObjectKey>)>) -> Self {
        let mut index = BlobIndex::default();
        let mut positions: std::collections::HashMap<Vec<ObjectKey>, u32> =
            std::collections::HashMap::new();
        for (hash, size, mut keys) in entries {
            keys.sort();
            keys.dedup();
            let objects = match positions.get(&keys) {
                Some(position) => *position,
                None => {
                    let position = index.object_sets.len() as u32;
                    positions.insert(keys.clone(), position);
                    index.object_sets.push(keys);
                    position
                }
            };
            index.blobs.push(IndexedBlob {
                hash,
                size,
                objects,
            });
        }
        index
    }

    /// An index of blobs, read from their content (tests and tools; the render controller
    /// indexes what it rendered directly).
    pub fn describe<'a>(blobs: impl IntoIterator<Item = &'a Blob>) -> Result<Self, BlobError> {
        let mut entries = Vec::new();
        for blob in blobs {
            let content = blob.content()?;
            let bundle = flotilla_core::render::RenderedBundle::from_blob(&content, &blob.hash)
                .map_err(|e| BlobError::Bundle(e.to_string()))?;
            entries.push((blob.hash, blob.size, object_keys(&bundle)));
        }
        Ok(Self::of(entries))
    }

    /// The part of the index `keep` selects, its object sets renumbered.
    pub fn subset(&self, keep: impl Fn(&BlobHash) -> bool) -> Self {
        let mut index = BlobIndex::default();
        let mut renumbered: BTreeMap<u32, u32> = BTreeMap::new();
        for blob in self.blobs.iter().filter(|b| keep(&b.hash)) {
            let objects = *renumbered.entry(blob.objects).or_insert_with(|| {
                index.object_sets.push(
                    self.object_sets
                        .get(blob.objects as usize)
                        .cloned()
                        .unwrap_or_default(),
                );
                (index.object_sets.len() - 1) as u32
            });
            index.blobs.push(IndexedBlob { objects, ..*blob });
        }
        index
    }

    /// Whether it names no blob.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}

/// An index of test blobs: those holding a rendered bundle with its objects, others (any
/// bytes) with none.
#[cfg(test)]
pub(crate) fn test_index(blobs: &[Blob]) -> BlobIndex {
    BlobIndex::of(blobs.iter().map(|blob| {
        let keys = blob
            .content()
            .ok()
            .and_then(|c| flotilla_core::render::RenderedBundle::from_blob(&c, &blob.hash).ok())
            .map(|bundle| object_keys(&bundle))
            .unwrap_or_default();
        (blob.hash, blob.size, keys)
    }))
}

/// The object ids of a rendered bundle, as the index and the deletion guard key them.
pub fn object_keys(bundle: &flotilla_core::render::RenderedBundle) -> Vec<ObjectKey> {
    bundle.objects.iter().map(|o| o.id.key()).collect()
}

/// A render recorded in several entries: the parts staged so far (`Command::StageRender`),
/// which the final `RecordRender` or `AmendRender` takes in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingRender {
    /// The attempt the parts belong to; a part 0 of another attempt starts over.
    pub attempt: u64,
    /// Parts staged.
    pub parts: u32,
    /// cluster → bundle → blob hash, so far.
    pub bundles: BTreeMap<String, BTreeMap<String, BlobHash>>,
    /// cluster → why it did not render (amendments), so far.
    pub errors: BTreeMap<String, RenderError>,
    /// Blobs the parts introduce.
    pub blobs: BTreeMap<BlobHash, BlobInfo>,
    /// Object sets the parts introduce.
    pub object_sets: BTreeMap<ObjectSetId, Vec<ObjectKey>>,
}

/// Which staged parts a final render command takes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    /// The attempt its parts were staged under.
    pub attempt: u64,
    /// How many parts (all must be staged).
    pub parts: u32,
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
        RenderOutcome::Failed { error } => {
            let about = super::notice::About {
                commit: Some(revision.commit.clone()),
                ..Default::default()
            };
            let message = format!("{revision}: {}", error.describe());
            state
                .notices
                .push(super::notice::NoticeKind::RenderFailed, at, about, &message);
            RevisionStatus::Failed {
                error: error.clone(),
                at,
            }
        }
        RenderOutcome::Rendered {
            bundles,
            index,
            spec,
            charts,
            staged,
        } => {
            let (bundles, _, resolved) =
                with_staged(state, revision, *staged, bundles, &BTreeMap::new(), index)?;
            store_index(state, &bundles, resolved)?;
            RevisionStatus::Rendered {
                bundles,
                cluster_errors: BTreeMap::new(),
                spec: spec.clone(),
                charts: charts.clone(),
                at,
            }
        }
    };
    state.pending_renders.remove(revision);
    if let Some(rev) = state.revisions.get_mut(revision) {
        rev.status = status;
    }
    // Staged parts may have indexed blobs of clusters removed before the final entry.
    collect_garbage(state);
    Ok(())
}

/// Blobs and object sets an index introduces, checked and keyed.
#[derive(Default)]
struct Resolved {
    blobs: BTreeMap<BlobHash, BlobInfo>,
    object_sets: BTreeMap<ObjectSetId, Vec<ObjectKey>>,
}

fn resolve(index: &BlobIndex) -> Result<Resolved, CommandError> {
    let ids: Vec<ObjectSetId> = index
        .object_sets
        .iter()
        .map(|keys| object_set_id(keys))
        .collect();
    let mut resolved = Resolved::default();
    for blob in &index.blobs {
        let Some(id) = ids.get(blob.objects as usize) else {
            return Err(CommandError::Invalid(format!(
                "blob {} names object set {} of {}",
                blob.hash,
                blob.objects,
                ids.len()
            )));
        };
        resolved.blobs.insert(
            blob.hash,
            BlobInfo {
                size: blob.size,
                objects: *id,
            },
        );
    }
    for (id, keys) in ids.into_iter().zip(&index.object_sets) {
        resolved
            .object_sets
            .entry(id)
            .or_insert_with(|| keys.clone());
    }
    Ok(resolved)
}

/// A final render command's entries with those of its staged parts; refused unless exactly the
/// parts it names are staged.
#[allow(clippy::type_complexity)]
fn with_staged(
    state: &State,
    revision: &RevisionRef,
    staged: Option<Staged>,
    bundles: &BTreeMap<String, BTreeMap<String, BlobHash>>,
    errors: &BTreeMap<String, RenderError>,
    index: &BlobIndex,
) -> Result<
    (
        BTreeMap<String, BTreeMap<String, BlobHash>>,
        BTreeMap<String, RenderError>,
        Resolved,
    ),
    CommandError,
> {
    let mut resolved = resolve(index)?;
    let Some(staged) = staged else {
        return Ok((bundles.clone(), errors.clone(), resolved));
    };
    let pending = state
        .pending_renders
        .get(revision)
        .filter(|p| p.attempt == staged.attempt && p.parts == staged.parts)
        .ok_or_else(|| {
            CommandError::Outdated(format!(
                "the render of {revision} names {} staged parts of attempt {:x}, which are not \
                 all recorded",
                staged.parts, staged.attempt
            ))
        })?;
    let mut all = pending.bundles.clone();
    all.extend(bundles.iter().map(|(c, b)| (c.clone(), b.clone())));
    let mut all_errors = pending.errors.clone();
    all_errors.extend(errors.iter().map(|(c, e)| (c.clone(), e.clone())));
    for (hash, info) in &pending.blobs {
        resolved.blobs.entry(*hash).or_insert(*info);
    }
    for (id, keys) in &pending.object_sets {
        resolved
            .object_sets
            .entry(*id)
            .or_insert_with(|| keys.clone());
    }
    Ok((all, all_errors, resolved))
}

/// Checks that every referenced blob is indexed already or by `resolved`, then records the new
/// entries. Nothing is recorded when any check fails.
fn store_index(
    state: &mut State,
    bundles: &BTreeMap<String, BTreeMap<String, BlobHash>>,
    resolved: Resolved,
) -> Result<(), CommandError> {
    let referenced = bundles.values().flat_map(|b| b.values());
    for hash in referenced {
        if !state.blobs.contains_key(hash) && !resolved.blobs.contains_key(hash) {
            return Err(CommandError::MissingBlob(*hash));
        }
    }
    for (id, keys) in resolved.object_sets {
        state.object_sets.entry(id).or_insert(keys);
    }
    for (hash, info) in resolved.blobs {
        state.blobs.entry(hash).or_insert(info);
    }
    Ok(())
}

/// Stages one part of a render recorded in several entries.
pub(super) fn stage_render(
    state: &mut State,
    revision: &RevisionRef,
    attempt: u64,
    part: u32,
    bundles: &BTreeMap<String, BTreeMap<String, BlobHash>>,
    errors: &BTreeMap<String, RenderError>,
    index: &BlobIndex,
) -> Result<(), CommandError> {
    if !state.revisions.contains_key(revision) {
        return Err(CommandError::UnknownRevision(revision.clone()));
    }
    let follows = state
        .pending_renders
        .get(revision)
        .is_some_and(|p| p.attempt == attempt && p.parts == part);
    if part != 0 && !follows {
        return Err(CommandError::Outdated(format!(
            "render part {part} of attempt {attempt:x} of {revision} does not follow the parts \
             recorded"
        )));
    }
    let resolved = resolve(index)?;
    let pending = state.pending_renders.entry(revision.clone()).or_default();
    if part == 0 {
        *pending = PendingRender {
            attempt,
            ..PendingRender::default()
        };
    }
    pending.parts += 1;
    pending
        .bundles
        .extend(bundles.iter().map(|(c, b)| (c.clone(), b.clone())));
    pending
        .errors
        .extend(errors.iter().map(|(c, e)| (c.clone(), e.clone())));
    pending.blobs.extend(resolved.blobs);
    pending.object_sets.extend(resolved.object_sets);
    Ok(())
}

pub(super) fn amend_render(
    state: &mut State,
    revision: &RevisionRef,
    bundles: &BTreeMap<String, BTreeMap<String, BlobHash>>,
    errors: &BTreeMap<String, RenderError>,
    index: &BlobIndex,
    staged: Option<Staged>,
    _at: Timestamp,
) -> Result<(), CommandError> {
    require_rendered(state, revision)?;
    let (bundles, errors, resolved) = with_staged(state, revision, staged, bundles, errors, index)?;
    if let Some(unknown) = bundles
        .keys()
        .chain(errors.keys())
        .find(|c| !state.clusters.contains_key(*c))
    {
        return Err(CommandError::UnknownCluster(unknown.clone()));
    }
    store_index(state, &bundles, resolved)?;
    // A final entry ends any attempt: parts of another (a leader that stopped midway, an
    // attempt refused at its end) would otherwise stay until the revision is forgotten.
    state.pending_renders.remove(revision);
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
            cluster_errors.remove(&cluster);
            current.insert(cluster, rendered);
        }
        for (cluster, error) in errors {
            cluster_errors.insert(cluster, error);
        }
    }
    collect_garbage(state);
    Ok(())
}

/// Drops every blob no rendered revision (nor staged render part) references, and every object
/// set no blob holds.
pub(super) fn collect_garbage(state: &mut State) {
    let live: std::collections::BTreeSet<&BlobHash> = state
        .revisions
        .values()
        .filter_map(|r| match &r.status {
            RevisionStatus::Rendered { bundles, .. } => Some(bundles),
            _ => None,
        })
        .chain(state.pending_renders.values().map(|p| &p.bundles))
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
    let sets: std::collections::BTreeSet<ObjectSetId> =
        state.blobs.values().map(|b| b.objects).collect();
    state.object_sets.retain(|id, _| sets.contains(id));
}

/// Forgets a removed cluster's entries in every revision and staged render part (and the blobs
/// only it used).
pub(super) fn drop_cluster(state: &mut State, cluster: &str) {
    for pending in state.pending_renders.values_mut() {
        pending.bundles.remove(cluster);
        pending.errors.remove(cluster);
    }
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
    state.pending_renders.remove(revision);
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
