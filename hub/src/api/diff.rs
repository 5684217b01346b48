//! The difference between two revisions, per cluster: the bundles whose blobs differ are read
//! from the node's content store (or a peer's) and compared with flotilla-core's diff.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_core::RenderedBundle;
use flotilla_core::diff::{BundleDiff, Change, FieldDiff, diff_cluster};
use flotilla_proto::v1::{
    AdminBundleDiff, AdminClusterDiff, AdminDiffReply, AdminFieldDiff, AdminObjectDiff,
};
use tonic::Status;

use crate::state::State;
use crate::state::source::{BlobHash, RevisionRef, RevisionStatus};

/// Shortest commit prefix accepted.
const MIN_PREFIX: usize = 4;

/// Finds the revision whose commit is `text` or starts with it.
pub fn resolve(state: &State, text: &str) -> Result<RevisionRef, Status> {
    let text = text.trim().to_ascii_lowercase();
    if text.len() < MIN_PREFIX {
        return Err(Status::invalid_argument(format!(
            "revision `{text}`: give a commit id or a prefix of at least {MIN_PREFIX} hex digits (see `flotilla revisions`)"
        )));
    }
    let matches: Vec<&RevisionRef> = state
        .revisions
        .keys()
        .filter(|r| r.commit.starts_with(&text))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Status::not_found(format!(
            "no revision `{text}`: `flotilla revisions` lists the revisions the hub keeps (older ones are forgotten after the retention count)"
        ))),
        many => Err(Status::invalid_argument(format!(
            "revision `{text}` is ambiguous ({} revisions start with it); give more digits",
            many.len()
        ))),
    }
}

/// What a diff compares: per cluster, the blobs of the bundles that changed on each side.
pub struct DiffPlan {
    from: RevisionRef,
    to: RevisionRef,
    clusters: Vec<ChangedCluster>,
}

/// A cluster's bundles that differ between the two revisions: bundle → blob on each side.
struct ChangedCluster {
    name: String,
    old: BTreeMap<String, BlobHash>,
    new: BTreeMap<String, BlobHash>,
}

/// Per cluster, which bundles change from `from` to `to` (only `cluster` when given).
pub fn plan(
    state: &State,
    from: &RevisionRef,
    to: &RevisionRef,
    cluster: Option<&str>,
) -> Result<DiffPlan, Status> {
    let from_bundles = rendered(state, from)?;
    let to_bundles = rendered(state, to)?;
    let names: BTreeSet<&String> = from_bundles.keys().chain(to_bundles.keys()).collect();
    if let Some(cluster) = cluster
        && !names.iter().any(|n| n.as_str() == cluster)
    {
        return Err(Status::not_found(format!(
            "neither revision is rendered for cluster `{cluster}`; `flotilla clusters` lists the clusters"
        )));
    }
    let empty = BTreeMap::new();
    let mut clusters = Vec::new();
    for name in names {
        if cluster.is_some_and(|c| c != name.as_str()) {
            continue;
        }
        let old = from_bundles.get(name).unwrap_or(&empty);
        let new = to_bundles.get(name).unwrap_or(&empty);
        let changed: BTreeSet<&String> = old
            .keys()
            .chain(new.keys())
            .filter(|b| old.get(*b) != new.get(*b))
            .collect();
        if changed.is_empty() {
            continue;
        }
        let keep = |bundles: &BTreeMap<String, BlobHash>| {
            bundles
                .iter()
                .filter(|(b, _)| changed.contains(b))
                .map(|(b, h)| (b.clone(), *h))
                .collect()
        };
        clusters.push(ChangedCluster {
            name: name.clone(),
            old: keep(old),
            new: keep(new),
        });
    }
    Ok(DiffPlan {
        from: from.clone(),
        to: to.clone(),
        clusters,
    })
}

/// The diff a plan describes, one cluster at a time: `read` gives the content of a blob
/// (decompressed and checked), so only one cluster's bundles are in memory at once.
pub async fn diff<F, Fut>(plan: DiffPlan, read: F) -> Result<AdminDiffReply, Status>
where
    F: Fn(BlobHash) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, Status>>,
{
    let mut clusters = Vec::new();
    for ChangedCluster { name, old, new } in plan.clusters {
        let mut sides = Vec::with_capacity(2);
        for bundles in [&old, &new] {
            let mut decoded = BTreeMap::new();
            for (bundle, hash) in bundles {
                let content = read(*hash).await?;
                decoded.insert(bundle.clone(), decode(&content, hash)?);
            }
            sides.push(decoded);
        }
        let bundles = diff_cluster(&sides[0], &sides[1]);
        clusters.push(AdminClusterDiff {
            cluster: name,
            bundles: bundles.into_iter().map(bundle_message).collect(),
        });
    }
    Ok(AdminDiffReply {
        from_revision: plan.from.commit,
        to_revision: plan.to.commit,
        clusters,
    })
}

fn rendered<'s>(
    state: &'s State,
    revision: &RevisionRef,
) -> Result<&'s BTreeMap<String, BTreeMap<String, BlobHash>>, Status> {
    match state.revisions.get(revision).map(|r| &r.status) {
        Some(RevisionStatus::Rendered { bundles, .. }) => Ok(bundles),
        Some(RevisionStatus::Failed { .. }) => Err(Status::failed_precondition(format!(
            "revision {} failed to render; `flotilla revisions` shows why",
            revision.commit
        ))),
        Some(RevisionStatus::Fetched) => Err(Status::unavailable(format!(
            "revision {} is not rendered yet; try again in a moment",
            revision.commit
        ))),
        None => Err(Status::not_found(format!(
            "revision {} is unknown",
            revision.commit
        ))),
    }
}

fn decode(bytes: &[u8], hash: &BlobHash) -> Result<RenderedBundle, Status> {
    RenderedBundle::from_blob(bytes, hash)
        .map_err(|e| Status::data_loss(format!("blob {hash}: {e}")))
}

fn bundle_message(bundle: BundleDiff) -> AdminBundleDiff {
    let mut objects: Vec<AdminObjectDiff> = Vec::new();
    if !bundle.settings.is_empty() {
        objects.push(AdminObjectDiff {
            object: "(bundle settings)".to_owned(),
            change: Change::Changed.as_str().to_owned(),
            fields: bundle.settings.into_iter().map(field_message).collect(),
        });
    }
    objects.extend(bundle.objects.into_iter().map(|o| AdminObjectDiff {
        object: o.object.to_string(),
        change: o.change.as_str().to_owned(),
        fields: o.fields.into_iter().map(field_message).collect(),
    }));
    AdminBundleDiff {
        bundle: bundle.bundle,
        change: bundle.change.as_str().to_owned(),
        objects,
    }
}

fn field_message(field: FieldDiff) -> AdminFieldDiff {
    let text = |value: Option<serde_json::Value>| value.map(|v| v.to_string()).unwrap_or_default();
    AdminFieldDiff {
        path: field.path,
        change: field.change.as_str().to_owned(),
        from_value: text(field.from),
        to_value: text(field.to),
    }
}
