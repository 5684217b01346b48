//! One render job, run on a blocking thread: check a commit out of the mirror into a temporary
//! directory, load the repository, and render every bundle for the given clusters with
//! flotilla-core. Problems become `RenderError`s located by file and line.

use std::collections::BTreeMap;
use std::path::Path;

use flotilla_core::inventory::Cluster;
use flotilla_core::render::render_fleet;
use flotilla_core::spec::SPEC_FILE;
use flotilla_core::{Cancel, ContentHash, Limits, Repository, SourceLocation, Tools};

use crate::controller::source::SourceMirror;
use crate::state::source::{Blob, ChartRecord, ObjectKey, RenderError, object_keys};

/// What rendering one commit for a set of clusters produced.
pub(super) struct Rendered {
    /// The `flotilla.yaml` text.
    pub(super) spec: String,
    /// Per cluster: its bundles (name → hash), or why it did not render.
    pub(super) clusters: BTreeMap<String, Result<BTreeMap<String, ContentHash>, RenderError>>,
    /// Every distinct rendered bundle, compressed.
    pub(super) blobs: BTreeMap<ContentHash, Blob>,
    /// The object ids of each.
    pub(super) objects: BTreeMap<ContentHash, Vec<ObjectKey>>,
    /// Per chart bundle, the chart it rendered from.
    pub(super) charts: BTreeMap<String, ChartRecord>,
}

/// Renders `commit` for `clusters`. `Err` is a problem of the whole commit (it cannot be checked
/// out, or its spec is invalid); per-cluster problems are in the result.
pub(super) fn render_commit(
    mirror: &SourceMirror,
    work_dir: &Path,
    commit: &str,
    clusters: &[Cluster],
    tools: &Tools,
    limits: Limits,
    cancel: Cancel,
) -> Result<Rendered, RenderError> {
    std::fs::create_dir_all(work_dir)
        .map_err(|e| whole(format!("cannot prepare a work dir: {e}")))?;
    let checkout = tempfile::Builder::new()
        .prefix("checkout-")
        .tempdir_in(work_dir)
        .map_err(|e| whole(format!("cannot create a checkout dir: {e}")))?;
    mirror
        .checkout(commit, checkout.path())
        .map_err(|e| whole(e.to_string()))?;
    let mut repo = Repository::load(checkout.path(), limits).map_err(|errors| {
        let count = errors.errors.len();
        match errors.errors.first() {
            Some(first) => with_more(
                located(Some(first.location()), first.to_string()),
                count - 1,
            ),
            None => whole("the repository could not be loaded".into()),
        }
    })?;
    repo.cancel_with(cancel);
    let spec = std::fs::read_to_string(repo.root().join(SPEC_FILE))
        .map_err(|e| located(Some(&SourceLocation::file(SPEC_FILE)), e.to_string()))?;
    let mut outcome = BTreeMap::new();
    let mut renderable = Vec::new();
    for cluster in clusters {
        match repo.spec().stage_for(&cluster.labels) {
            Err(stages) => {
                let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
                let error = located(
                    stages.last().map(|s| &s.location),
                    format!(
                        "cluster `{}` is selected by stages {}; a cluster belongs to at most one stage: narrow their clusterSelectors",
                        cluster.name,
                        names.join(" and ")
                    ),
                );
                outcome.insert(cluster.name.clone(), Err(error));
            }
            Ok(_) => renderable.push(cluster.clone()),
        }
    }
    let fleet = render_fleet(&repo, &renderable, tools);
    let charts = fleet
        .charts
        .iter()
        .map(|(bundle, chart)| {
            (
                bundle.clone(),
                ChartRecord {
                    source: chart.source.clone(),
                    version: chart.version.clone(),
                    digest: chart.digest.to_string(),
                },
            )
        })
        .collect();
    for (cluster, bundles) in fleet.clusters {
        let mut hashes = BTreeMap::new();
        let mut failure = None;
        for (bundle, result) in bundles {
            match result {
                Ok(hash) => {
                    hashes.insert(bundle, hash);
                }
                Err(error) if failure.is_none() => {
                    let mut located = located(error.location(), error.to_string());
                    located.message = format!("bundle `{bundle}`: {}", located.message);
                    failure = Some(located);
                }
                Err(_) => {}
            }
        }
        outcome.insert(cluster, failure.map_or(Ok(hashes), Err));
    }
    let contents: Vec<&[u8]> = fleet.encoded.values().map(Vec::as_slice).collect();
    let compressed = Blob::from_contents(&contents)
        .map_err(|e| whole(format!("cannot compress a rendered bundle: {e}")))?;
    let blobs: BTreeMap<_, _> = compressed
        .into_iter()
        .map(|blob| (blob.hash, blob))
        .collect();
    let objects = fleet
        .blobs
        .iter()
        .map(|(hash, bundle)| (*hash, object_keys(bundle)))
        .collect();
    Ok(Rendered {
        spec,
        clusters: outcome,
        blobs,
        objects,
        charts,
    })
}

/// The first failure of a render for the whole revision, naming the clusters it concerns and
/// how many other problems there are.
pub(super) fn first_failure(rendered: &Rendered) -> Option<RenderError> {
    let mut grouped: Vec<(&RenderError, Vec<&str>)> = Vec::new();
    for (cluster, outcome) in &rendered.clusters {
        let Err(error) = outcome else { continue };
        match grouped.iter_mut().find(|(e, _)| *e == error) {
            Some((_, clusters)) => clusters.push(cluster),
            None => grouped.push((error, vec![cluster])),
        }
    }
    let mut groups = grouped.into_iter();
    let (first, clusters) = groups.next()?;
    let mut error = first.clone();
    let noun = if clusters.len() == 1 {
        "cluster"
    } else {
        "clusters"
    };
    error.message = format!("{} ({noun} {})", error.message, clusters.join(", "));
    Some(with_more(error, groups.count()))
}

/// An error of the whole commit, not of one file.
pub(super) fn whole(message: String) -> RenderError {
    RenderError {
        file: String::new(),
        line: None,
        message,
    }
}

/// A replicated render error from core's location and message (which starts with the location).
pub(super) fn located(location: Option<&SourceLocation>, text: String) -> RenderError {
    match location {
        Some(location) => {
            let prefix = format!("{location}: ");
            let message = text.strip_prefix(&prefix).unwrap_or(&text).to_owned();
            RenderError {
                file: location.file.clone(),
                line: location.line,
                message,
            }
        }
        None => whole(text),
    }
}

fn with_more(mut error: RenderError, more: usize) -> RenderError {
    if more > 0 {
        error.message = format!(
            "{} (and {more} more problem{}; `flotilla lint` lists them all)",
            error.message,
            if more == 1 { "" } else { "s" }
        );
    }
    error
}
