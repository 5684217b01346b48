//! The render controller: renders each fetched revision for every registered cluster and records
//! the result, and renders revisions still in use again for clusters registered or relabelled
//! since.
//!
//! A new revision that fails anywhere — it cannot be checked out, its `flotilla.yaml` is invalid,
//! a manifest is broken, a path or link leaves the repository, a variable is undefined, a
//! cluster falls into two stages — is recorded as failed with the first problem's file and line:
//! no stage can be pinned to it and no cluster assigned it, so every cluster keeps its last good
//! state. Only blobs the state does not hold yet travel in the command.
//!
//! Revisions in use (a stage's pin, a cluster's assignment, the source head) are rendered again
//! for a cluster whose labels differ from those it was last rendered with during this term; at
//! the start of a term that is every cluster, which costs one render of each revision in use
//! and proposes nothing when the results are unchanged. A cluster that fails such a render keeps
//! what it had and the error is recorded against it (`AmendRender`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::inventory::Cluster;
use flotilla_core::{Cancel, Tools};
use futures::future::BoxFuture;

use crate::controller::source::{SourceConfig, SourceMirror};
use crate::controller::{Controller, ControllerContext, Wake};
use crate::metrics::Metrics;
use crate::node::content::ContentError;
use crate::node::{Applied, ProposeError};
use crate::state::source::{
    Blob, BlobHash, BlobIndex, ObjectKey, RenderError, RevisionRef, RevisionStatus, Staged,
};
use crate::state::{Command, CommandError, RenderOutcome, State, Timestamp};
use flotilla_consensus::transport::net::MAX_MESSAGE_BYTES;

mod job;

use job::{Rendered, first_failure, render_commit, whole};

/// Largest encoded render command: it must cross the peer transport in one message.
const MAX_RENDER_COMMAND_BYTES: usize = MAX_MESSAGE_BYTES / 2;

/// The size (estimated) a render is split at: with the estimate's slack, each entry stays under
/// 1 MiB whatever the fleet's size.
const PART_BYTES: usize = 640 * 1024;

/// How often the controller looks again when nothing changed (a commit missing from the mirror
/// may arrive with the next fetch).
const IDLE_RECHECK: Duration = Duration::from_secs(2);

/// Renders revisions into per-cluster blobs.
pub struct RenderController {
    source: SourceConfig,
    mirror: Arc<SourceMirror>,
    metrics: Arc<Metrics>,
    tools: Arc<Tools>,
    work_dir: PathBuf,
}

impl RenderController {
    /// A controller rendering `source`'s revisions from `mirror` with its tools.
    pub fn new(source: SourceConfig, mirror: Arc<SourceMirror>, metrics: Arc<Metrics>) -> Self {
        let work_dir = mirror.path().with_extension("checkouts");
        RenderController {
            tools: Arc::new(source.render_tools.clone()),
            source,
            mirror,
            metrics,
            work_dir,
        }
    }
}

impl Controller for RenderController {
    fn name(&self) -> &'static str {
        "render"
    }

    fn run(&self, context: ControllerContext) -> BoxFuture<'static, ()> {
        let run = Run {
            source: self.source.clone(),
            mirror: self.mirror.clone(),
            metrics: self.metrics.clone(),
            tools: self.tools.clone(),
            work_dir: self.work_dir.clone(),
            checked: HashMap::new(),
            context,
        };
        Box::pin(run.run())
    }
}

/// The next thing to do.
#[derive(Debug)]
enum Work {
    /// Render a fetched revision for every cluster.
    Render(RevisionRef),
    /// Render a rendered revision again for these clusters.
    Amend(RevisionRef, Vec<Cluster>),
}

struct Run {
    source: SourceConfig,
    mirror: Arc<SourceMirror>,
    metrics: Arc<Metrics>,
    tools: Arc<Tools>,
    work_dir: PathBuf,
    /// Per revision, what each cluster was last rendered as during this term (its labels and
    /// what it serves).
    checked: HashMap<RevisionRef, BTreeMap<String, Cluster>>,
    context: ControllerContext,
}

impl Run {
    async fn run(mut self) {
        let mut applied = self.context.node.watch_applied();
        loop {
            let work = {
                let state = self.context.node.state();
                self.next_work(&state)
            };
            let done = match work {
                Some(Work::Render(revision)) => self.render(revision).await,
                Some(Work::Amend(revision, clusters)) => self.amend(revision, clusters).await,
                None => true,
            };
            if self.context.stop.is_cancelled() {
                return;
            }
            if done && self.context.wait(&mut applied, IDLE_RECHECK).await == Wake::Stop {
                return;
            }
        }
    }

    fn next_work(&self, state: &State) -> Option<Work> {
        let fetched_once = *self.mirror.watch_fetches().borrow() > 0;
        let mut pending: Vec<(&RevisionRef, u64)> = state
            .revisions
            .iter()
            .filter(|(r, rev)| {
                r.source == self.source.name && rev.status == RevisionStatus::Fetched
            })
            .map(|(r, rev)| (r, rev.seq))
            .collect();
        pending.sort_by_key(|(_, seq)| std::cmp::Reverse(*seq));
        // Newest first: an older revision waits while a newer one renders. A commit the mirror
        // lacks is rendered (and so fails) only once this node has fetched: before that it may
        // simply not have arrived yet.
        if let Some((revision, _)) = pending
            .into_iter()
            .find(|(r, _)| fetched_once || self.mirror.has_commit(&r.commit))
        {
            return Some(Work::Render(revision.clone()));
        }
        for revision in in_use(state, &self.source.name) {
            let checked = self.checked.get(&revision);
            let stale: Vec<Cluster> = registered(state)
                .into_iter()
                .filter(|cluster| checked.and_then(|c| c.get(&cluster.name)) != Some(cluster))
                .collect();
            if !stale.is_empty() {
                return Some(Work::Amend(revision, stale));
            }
        }
        None
    }

    /// Renders the commit for `clusters` off the async threads.
    async fn render_blocking(
        &self,
        commit: &str,
        clusters: Vec<Cluster>,
        cancel: Cancel,
    ) -> Result<Rendered, RenderError> {
        let mirror = self.mirror.clone();
        let tools = self.tools.clone();
        let work_dir = self.work_dir.clone();
        let commit = commit.to_owned();
        let limits = self.source.render_limits.clone();
        tokio::task::spawn_blocking(move || {
            render_commit(
                &mirror, &work_dir, &commit, &clusters, &tools, limits, cancel,
            )
        })
        .await
        .unwrap_or_else(|e| Err(whole(format!("the render task failed: {e}"))))
    }

    /// Renders a new revision for every registered cluster and records the outcome. Returns
    /// whether the work is settled (false: look again at once).
    async fn render(&mut self, revision: RevisionRef) -> bool {
        let clusters = registered(&self.context.node.state());
        let cancel = Cancel::default();
        let preemption = tokio::spawn(preempt_when_newer(
            self.context.node.clone(),
            self.source.name.clone(),
            revision.clone(),
            cancel.clone(),
        ));
        let started = std::time::Instant::now();
        let rendered = self
            .render_blocking(&revision.commit, clusters.clone(), cancel.clone())
            .await;
        let took = started.elapsed();
        preemption.abort();
        if cancel.is_cancelled() {
            // Newest first: the newer commit renders now, this one after it.
            tracing::info!(%revision, "render preempted by a newer commit");
            return false;
        }
        let rendered = match rendered {
            Err(error) => Err(error),
            Ok(rendered) => match first_failure(&rendered) {
                Some(error) => Err(error),
                None => Ok(rendered),
            },
        };
        if rendered.is_ok() && !self.record_signature(&revision).await {
            return false;
        }
        let failure = rendered.as_ref().err().map(RenderError::describe);
        let recorded = match rendered {
            Err(error) => {
                let command = Command::RecordRender {
                    revision: revision.clone(),
                    outcome: RenderOutcome::Failed { error },
                    at: self.context.clock.now(),
                };
                self.context
                    .node
                    .propose(&command)
                    .await
                    .map_err(Recording::from)
            }
            Ok(rendered) => self.record_success(&revision, rendered).await,
        };
        match recorded {
            Ok(_) => {
                self.metrics.render_duration.observe(took.as_secs_f64());
                if let Some(error) = failure {
                    self.metrics.render_errors.inc();
                    tracing::warn!(%revision, %error, "revision failed to render");
                } else {
                    self.metrics.revisions_rendered.inc();
                    tracing::info!(%revision, clusters = clusters.len(), "revision rendered");
                }
                self.remember(&revision, &clusters);
                true
            }
            Err(Recording::Propose(ProposeError::Rejected { error, .. })) => {
                // Another leader recorded it first, or it was forgotten meanwhile.
                tracing::debug!(%revision, %error, "render result not recorded");
                if let CommandError::AlreadyRendered(_) = error {
                    self.checked.remove(&revision);
                }
                false
            }
            Err(error) => {
                tracing::warn!(%revision, %error, "cannot record the render result");
                self.context.pause(Duration::from_secs(1)).await
            }
        }
    }

    /// Stores the new blobs of a successful render on a majority of the group, then records
    /// the hashes, in several entries when one would be too large. An entry too large even
    /// alone records the revision as failed, saying why.
    async fn record_success(
        &self,
        revision: &RevisionRef,
        rendered: Rendered,
    ) -> Result<Applied, Recording> {
        let bundles: BTreeMap<String, BTreeMap<String, BlobHash>> = rendered
            .clusters
            .into_iter()
            .filter_map(|(cluster, outcome)| outcome.ok().map(|b| (cluster, b)))
            .collect();
        let (blobs, index) = self.new_content(rendered.blobs, rendered.objects, |_| true);
        self.context.node.replicate(blobs).await?;
        let entries = render_entries(
            revision,
            bundles,
            BTreeMap::new(),
            index,
            rand::random(),
            self.context.clock.now(),
            rendered.spec.len(),
            |last, staged| Command::RecordRender {
                revision: revision.clone(),
                outcome: RenderOutcome::Rendered {
                    bundles: last.bundles,
                    index: last.index,
                    spec: rendered.spec,
                    charts: rendered.charts,
                    staged,
                },
                at: self.context.clock.now(),
            },
        );
        let recorded = self.propose_entries(entries).await;
        match recorded {
            Err(Recording::TooLarge(error)) => {
                let command = Command::RecordRender {
                    revision: revision.clone(),
                    outcome: RenderOutcome::Failed { error },
                    at: self.context.clock.now(),
                };
                Ok(self.context.node.propose(&command).await?)
            }
            other => other,
        }
    }

    /// Proposes the entries of a render in order, once each is known to fit in one entry.
    async fn propose_entries(&self, entries: Vec<Command>) -> Result<Applied, Recording> {
        for entry in &entries {
            fits(entry).map_err(Recording::TooLarge)?;
        }
        let mut applied = None;
        for entry in &entries {
            applied = Some(self.context.node.propose(entry).await?);
        }
        applied.ok_or(Recording::TooLarge(whole(
            "a render without entries".to_owned(),
        )))
    }

    /// Records the commit's signature, if it has one, before the revision counts as rendered,
    /// so stages requiring signatures judge it by what git holds. Returns false to look again.
    async fn record_signature(&self, revision: &RevisionRef) -> bool {
        let mirror = self.mirror.clone();
        let commit = revision.commit.clone();
        let signature = tokio::task::spawn_blocking(move || mirror.signature(&commit)).await;
        let signature = match signature {
            Ok(Ok(Some(signature))) => signature,
            // Unsigned: nothing to record; stages that require a signature refuse it.
            Ok(Ok(None)) => return true,
            Ok(Err(error)) => {
                tracing::warn!(%revision, %error, "cannot read the commit's signature");
                self.context.pause(Duration::from_secs(1)).await;
                return false;
            }
            Err(error) => {
                tracing::warn!(%revision, %error, "reading the commit's signature panicked");
                return false;
            }
        };
        let command = Command::RecordSignature {
            revision: revision.clone(),
            signature,
            at: self.context.clock.now(),
        };
        match self.context.node.propose(&command).await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%revision, %error, "cannot record the commit's signature");
                self.context.pause(Duration::from_secs(1)).await;
                false
            }
        }
    }

    /// The blobs the state does not index yet among `blobs` (those `wanted` keeps), and their
    /// index.
    fn new_content(
        &self,
        blobs: BTreeMap<BlobHash, Blob>,
        mut objects: BTreeMap<BlobHash, Vec<ObjectKey>>,
        wanted: impl Fn(&BlobHash) -> bool,
    ) -> (Vec<Blob>, BlobIndex) {
        let new: Vec<Blob> = {
            let state = self.context.node.state();
            blobs
                .into_values()
                .filter(|blob| !state.blobs.contains_key(&blob.hash) && wanted(&blob.hash))
                .collect()
        };
        let index = BlobIndex::of(new.iter().map(|blob| {
            let keys = objects.remove(&blob.hash).unwrap_or_default();
            (blob.hash, blob.size, keys)
        }));
        (new, index)
    }

    /// Why a render of `revision` again may not be used: a chart whose digest differs from the
    /// one the revision recorded.
    fn chart_changed(
        &self,
        revision: &RevisionRef,
        charts: &BTreeMap<String, crate::state::source::ChartRecord>,
    ) -> Option<RenderError> {
        let state = self.context.node.state();
        let Some(RevisionStatus::Rendered {
            charts: recorded, ..
        }) = state.revisions.get(revision).map(|r| &r.status)
        else {
            return None;
        };
        recorded.iter().find_map(|(bundle, was)| {
            let now = charts.get(bundle)?;
            (now.digest != was.digest).then(|| {
                whole(format!(
                    "bundle `{bundle}`: chart {} {} is not the one this revision rendered \
                     (digest {}, now {}): its source published different content under the \
                     same version; push a commit to render what it serves now",
                    was.source, was.version, was.digest, now.digest
                ))
            })
        })
    }

    /// Renders a revision in use again for some clusters; proposes only what changed.
    async fn amend(&mut self, revision: RevisionRef, clusters: Vec<Cluster>) -> bool {
        let rendered = self
            .render_blocking(&revision.commit, clusters.clone(), Cancel::default())
            .await;
        let mut bundles = BTreeMap::new();
        let mut errors = BTreeMap::new();
        let mut content = (BTreeMap::new(), BTreeMap::new());
        match rendered {
            // The commit rendered before, so a failure of the whole commit now (it left the
            // mirror after a force-push, kustomize went missing) says nothing about clusters
            // that hold its render: only the ones without an entry are told.
            Err(error) => {
                let state = self.context.node.state();
                let recorded = state.revisions.get(&revision);
                for cluster in &clusters {
                    if recorded.is_some_and(|r| r.bundles_for(&cluster.name).is_none()) {
                        errors.insert(cluster.name.clone(), error.clone());
                    }
                }
            }
            Ok(rendered) if let Some(error) = self.chart_changed(&revision, &rendered.charts) => {
                // A revision renders the charts it recorded: a source that republished a
                // version must not change what clusters hold without a new revision.
                for cluster in &clusters {
                    errors.insert(cluster.name.clone(), error.clone());
                }
            }
            Ok(rendered) => {
                for (cluster, outcome) in rendered.clusters {
                    match outcome {
                        Ok(hashes) => {
                            bundles.insert(cluster, hashes);
                        }
                        Err(error) => {
                            errors.insert(cluster, error);
                        }
                    }
                }
                content = (rendered.blobs, rendered.objects);
            }
        }
        {
            let state = self.context.node.state();
            let Some(recorded) = state.revisions.get(&revision) else {
                return false;
            };
            bundles.retain(|cluster, hashes| {
                recorded.bundles_for(cluster) != Some(hashes)
                    || recorded.error_for(cluster).is_some()
            });
            errors.retain(|cluster, error| recorded.error_for(cluster) != Some(error));
        }
        if bundles.is_empty() && errors.is_empty() {
            self.remember(&revision, &clusters);
            return true;
        }
        let referenced: BTreeSet<BlobHash> =
            bundles.values().flat_map(|b| b.values()).copied().collect();
        let (blobs, index) = self.new_content(content.0, content.1, |h| referenced.contains(h));
        let changed = bundles.len() + errors.len();
        let recorded = match self.context.node.replicate(blobs).await {
            Err(error) => Err(Recording::from(error)),
            Ok(()) => {
                let at = self.context.clock.now();
                let entries = render_entries(
                    &revision,
                    bundles,
                    errors,
                    index,
                    rand::random(),
                    at,
                    0,
                    |last, staged| Command::AmendRender {
                        revision: revision.clone(),
                        bundles: last.bundles,
                        errors: last.errors,
                        index: last.index,
                        staged,
                        at,
                    },
                );
                self.propose_entries(entries).await
            }
        };
        match recorded {
            Ok(_) => {
                tracing::info!(%revision, clusters = changed, "render amended for new or relabelled clusters");
                self.remember(&revision, &clusters);
                true
            }
            Err(Recording::TooLarge(error)) => {
                tracing::warn!(%revision, message = %error.message, "cannot amend the render");
                self.remember(&revision, &clusters);
                true
            }
            Err(Recording::Propose(ProposeError::Rejected { error, .. })) => {
                tracing::debug!(%revision, %error, "amendment refused; looking again");
                false
            }
            Err(error) => {
                tracing::warn!(%revision, %error, "cannot record the amendment");
                self.context.pause(Duration::from_secs(1)).await
            }
        }
    }

    fn remember(&mut self, revision: &RevisionRef, clusters: &[Cluster]) {
        let checked = self.checked.entry(revision.clone()).or_default();
        for cluster in clusters {
            checked.insert(cluster.name.clone(), cluster.clone());
        }
    }
}

/// Every registered cluster as rendering sees it.
fn registered(state: &State) -> Vec<Cluster> {
    state
        .clusters
        .iter()
        .map(|(name, cluster)| Cluster {
            name: name.clone(),
            labels: cluster.labels.clone(),
            capabilities: cluster.capabilities.as_ref().map(|c| c.read.clone()),
        })
        .collect()
}

/// Rendered revisions of `source` that clusters hold or will hold: stage pins, cluster
/// assignments and the source head.
fn in_use(state: &State, source: &str) -> Vec<RevisionRef> {
    let head = state.sources.get(source).and_then(|s| {
        s.head.as_ref().map(|commit| RevisionRef {
            source: source.to_owned(),
            commit: commit.clone(),
        })
    });
    let used: BTreeSet<RevisionRef> = state
        .stages
        .values()
        .filter_map(|s| s.pinned.clone())
        .chain(state.clusters.values().filter_map(|c| c.assigned.clone()))
        .chain(head)
        .filter(|r| {
            r.source == source
                && state
                    .revisions
                    .get(r)
                    .is_some_and(|rev| matches!(rev.status, RevisionStatus::Rendered { .. }))
        })
        .collect();
    used.into_iter().collect()
}

/// Entries of a render destined for one log entry.
#[derive(Debug, Default)]
pub struct RenderPart {
    /// cluster → bundle → blob hash.
    pub bundles: BTreeMap<String, BTreeMap<String, BlobHash>>,
    /// cluster → why it did not render.
    pub errors: BTreeMap<String, RenderError>,
    /// The blobs it introduces.
    pub index: BlobIndex,
}

/// The log entries that record a render: parts of about [`PART_BYTES`] each (so each entry
/// stays under 1 MiB whatever the fleet's size), every one but the last staged
/// (`StageRender`, under `attempt`), the last built by `last` from its part and the staged
/// parts it must take in (`None` when it is the only entry). `last_extra` is what the last
/// entry carries besides its part (the revision's `flotilla.yaml`): its part leaves room for
/// it.
#[allow(clippy::too_many_arguments)]
pub fn render_entries(
    revision: &RevisionRef,
    bundles: BTreeMap<String, BTreeMap<String, BlobHash>>,
    errors: BTreeMap<String, RenderError>,
    index: BlobIndex,
    attempt: u64,
    at: Timestamp,
    last_extra: usize,
    last: impl FnOnce(RenderPart, Option<Staged>) -> Command,
) -> Vec<Command> {
    let mut parts = split(bundles, errors, &index, last_extra);
    let final_part = parts.pop().unwrap_or_default();
    let staged = (!parts.is_empty()).then_some(Staged {
        attempt,
        parts: parts.len() as u32,
    });
    let mut entries: Vec<Command> = parts
        .into_iter()
        .enumerate()
        .map(|(number, part)| Command::StageRender {
            revision: revision.clone(),
            attempt,
            part: number as u32,
            bundles: part.bundles,
            errors: part.errors,
            index: part.index,
            at,
        })
        .collect();
    entries.push(last(final_part, staged));
    entries
}

/// Splits a render's entries into parts of about [`PART_BYTES`] encoded, cluster by cluster;
/// each blob's index entry travels with the first cluster that references it.
fn split(
    bundles: BTreeMap<String, BTreeMap<String, BlobHash>>,
    mut errors: BTreeMap<String, RenderError>,
    index: &BlobIndex,
    last_extra: usize,
) -> Vec<RenderPart> {
    // postcard: a hash is 32 bytes; strings carry a length byte or two.
    const HASH: usize = 32;
    let positions: HashMap<BlobHash, usize> = index
        .blobs
        .iter()
        .enumerate()
        .map(|(i, b)| (b.hash, i))
        .collect();
    let set_bytes: Vec<usize> = index
        .object_sets
        .iter()
        .map(|keys| {
            keys.iter()
                .map(|(g, k, n, name)| {
                    g.len() + k.len() + n.as_ref().map_or(1, |n| n.len() + 3) + name.len() + 6
                })
                .sum::<usize>()
                + 3
        })
        .collect();
    let mut parts = Vec::new();
    let mut part = RenderPart::default();
    let (mut bytes, mut placed) = (0usize, HashSet::new());
    let mut part_blobs: HashSet<BlobHash> = HashSet::new();
    let mut part_sets: HashSet<u32> = HashSet::new();
    let close = |part: &mut RenderPart, blobs: &mut HashSet<BlobHash>, sets: &mut HashSet<u32>| {
        part.index = index.subset(|h| blobs.contains(h));
        blobs.clear();
        sets.clear();
        std::mem::take(part)
    };
    let names: BTreeSet<String> = bundles.keys().chain(errors.keys()).cloned().collect();
    let mut bundles = bundles;
    for cluster in names {
        let mut cost = cluster.len() + 2;
        let entry = bundles.remove(&cluster);
        let error = errors.remove(&cluster);
        let mut new_blobs = Vec::new();
        if let Some(entry) = &entry {
            for (bundle, hash) in entry {
                cost += bundle.len() + 2 + HASH;
                if let Some(position) = positions.get(hash)
                    && !placed.contains(hash)
                {
                    new_blobs.push((*hash, index.blobs[*position].objects));
                }
            }
        }
        if let Some(error) = &error {
            cost += error.file.len() + error.message.len() + 12;
        }
        for (_, set) in &new_blobs {
            cost += HASH + 12;
            if !part_sets.contains(set) {
                cost += set_bytes.get(*set as usize).copied().unwrap_or(0);
            }
        }
        if bytes > 0 && bytes + cost > PART_BYTES {
            parts.push(close(&mut part, &mut part_blobs, &mut part_sets));
            bytes = 0;
        }
        bytes += cost;
        for (hash, set) in new_blobs {
            placed.insert(hash);
            part_blobs.insert(hash);
            part_sets.insert(set);
        }
        if let Some(entry) = entry {
            part.bundles.insert(cluster.clone(), entry);
        }
        if let Some(error) = error {
            part.errors.insert(cluster, error);
        }
    }
    // Blobs no cluster references (none are proposed so) travel with the last part.
    part_blobs.extend(
        index
            .blobs
            .iter()
            .map(|b| b.hash)
            .filter(|h| !placed.contains(h)),
    );
    if bytes > 0 && bytes + last_extra > PART_BYTES {
        // The last entry's own payload would not fit beside this part: stage it too.
        parts.push(close(&mut part, &mut part_blobs, &mut part_sets));
    }
    parts.push(close(&mut part, &mut part_blobs, &mut part_sets));
    parts
}

/// Why a render was not recorded.
#[derive(Debug, thiserror::Error)]
enum Recording {
    /// Its content did not reach a majority.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// A proposal failed.
    #[error(transparent)]
    Propose(#[from] ProposeError),
    /// One entry would be too large even alone.
    #[error("{}", .0.message)]
    TooLarge(RenderError),
}

/// Checks that a command crosses the peer transport in one message.
fn fits(command: &Command) -> Result<(), RenderError> {
    let size = command
        .encode()
        .map_err(|e| whole(format!("cannot encode the render result: {e}")))?
        .len();
    if size > MAX_RENDER_COMMAND_BYTES {
        return Err(whole(format!(
            "one replicated entry of this render would be {} MiB, over the {} MiB an entry may \
             carry (rendered content is not in it: its flotilla.yaml, or one cluster's object \
             ids, is that large); shrink flotilla.yaml or split bundles with thousands of objects",
            size / (1024 * 1024),
            MAX_RENDER_COMMAND_BYTES / (1024 * 1024)
        )));
    }
    Ok(())
}

/// Cancels `cancel` once a revision of `source` newer than `revision` is fetched and waits to
/// render: a fix pushed after a slow commit must not wait for the slow commit's renders.
async fn preempt_when_newer(
    node: crate::node::NodeHandle,
    source: String,
    revision: RevisionRef,
    cancel: Cancel,
) {
    let mut applied = node.watch_applied();
    loop {
        let newer = {
            let state = node.state();
            let seq = state.revisions.get(&revision).map_or(0, |r| r.seq);
            state.revisions.iter().any(|(r, rev)| {
                r.source == source && rev.status == RevisionStatus::Fetched && rev.seq > seq
            })
        };
        if newer {
            cancel.cancel();
            return;
        }
        if applied.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
