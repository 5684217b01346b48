//! The fleet status and revisions as Admin API messages.

use flotilla_proto::v1::{
    AdminBundleStatus, AdminChart, AdminClusterError, AdminClusterPage, AdminClusterStatus,
    AdminCounts, AdminEvent, AdminFleetStatus, AdminFleetStatusRequest, AdminIdentityConflict,
    AdminRevision, AdminRevisionError, AdminRolloutStatus, AdminSource, AdminStageStatus,
};

use crate::state::Timestamp;
use crate::state::source::RenderError;
use crate::status::{
    BundleStatus, ClusterQuery, ClusterStatus, Counts, Event, FleetStatus, IdentityConflictStatus,
    RevisionSummary, RolloutSummary, SourceStatus, StageStatus,
};

/// A time as the Admin API's `*_ms` fields carry it (0 when unknown).
pub(super) fn ms(at: Option<Timestamp>) -> i64 {
    at.map_or(0, |t| t.0 as i64)
}

/// The fleet status message.
pub(super) fn fleet(status: FleetStatus) -> AdminFleetStatus {
    AdminFleetStatus {
        node: status.node,
        leader: status.leader,
        applied_index: status.applied_index,
        source: status.source.map(source),
        latest_revision: status.latest_revision.map(revision),
        stages: status.stages.into_iter().map(stage).collect(),
        clusters: status.clusters.into_iter().map(cluster).collect(),
        rollouts: status.rollouts.into_iter().map(rollout).collect(),
        events: status.events.into_iter().map(event).collect(),
        counts: Some(counts(status.counts)),
        cluster_page: status.cluster_page.map(|page| AdminClusterPage {
            total: page.total as u32,
            matched: page.matched as u32,
            offset: page.offset as u32,
            next_offset: page.next_offset.map(|n| n as u32),
        }),
    }
}

/// The clusters a fleet status request asks for.
pub(super) fn cluster_query(request: &AdminFleetStatusRequest) -> ClusterQuery {
    let text = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
    ClusterQuery {
        stage: text(&request.stage),
        cluster: text(&request.cluster),
        labels: request.labels.clone().into_iter().collect(),
        problems: request.problems,
        offset: request.offset as usize,
        limit: (request.limit > 0).then_some(request.limit as usize),
        ..ClusterQuery::default()
    }
}

/// The source message.
pub(super) fn source(source: SourceStatus) -> AdminSource {
    AdminSource {
        name: source.name,
        url: source.url,
        branch: source.branch,
        head: source.head.unwrap_or_default(),
        fetched_at_ms: ms(source.fetched_at),
        last_error: source.last_error.unwrap_or_default(),
    }
}

/// A render error message.
pub(super) fn error(error: RenderError) -> AdminRevisionError {
    AdminRevisionError {
        file: error.file,
        line: error.line.unwrap_or(0),
        message: error.message,
    }
}

/// A revision message.
pub(super) fn revision(revision: RevisionSummary) -> AdminRevision {
    AdminRevision {
        source: revision.source,
        commit: revision.commit,
        seq: revision.seq,
        fetched_at_ms: revision.fetched_at.0 as i64,
        status: revision.status.to_owned(),
        rendered_at_ms: ms(revision.rendered_at),
        error: revision.error.map(error),
        pinned_by: revision.pinned_by,
        clusters: revision.clusters as u32,
        cluster_errors: revision
            .cluster_errors
            .into_iter()
            .map(|(cluster, e)| AdminClusterError {
                cluster,
                error: Some(error(e)),
            })
            .collect(),
        signature_refusals: revision.signature_refusals,
        charts: revision
            .charts
            .into_iter()
            .map(|(bundle, chart)| AdminChart {
                bundle,
                source: chart.source,
                version: chart.version,
                digest: chart.digest,
            })
            .collect(),
    }
}

fn stage(stage: StageStatus) -> AdminStageStatus {
    AdminStageStatus {
        name: stage.name,
        pinned_revision: stage.pinned_revision.unwrap_or_default(),
        pinned_at_ms: ms(stage.pinned_at),
        source: stage.source,
        clusters: stage.clusters,
        blocked: stage.blocked.unwrap_or_default(),
        counts: Some(counts(stage.counts)),
        phase: format!("{:?}", stage.phase),
        phase_reason: stage.phase_reason.unwrap_or_default(),
        rollout: stage.rollout.unwrap_or_default(),
        waiting_revision: stage.waiting_revision.unwrap_or_default(),
        next: stage.next.unwrap_or_default(),
    }
}

fn counts(counts: Counts) -> AdminCounts {
    let n = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    AdminCounts {
        sync: counts
            .sync
            .into_iter()
            .map(|(state, count)| (state.as_str().to_owned(), n(count)))
            .collect(),
        health: counts
            .health
            .into_iter()
            .map(|(health, count)| (health, n(count)))
            .collect(),
    }
}

fn cluster(cluster: ClusterStatus) -> AdminClusterStatus {
    AdminClusterStatus {
        name: cluster.name,
        stage: cluster.stage.unwrap_or_default(),
        labels: cluster.labels.into_iter().collect(),
        online: cluster.online,
        api: match cluster.api_reachable {
            Some(true) => "reachable".to_owned(),
            Some(false) => "unreachable".to_owned(),
            None => String::new(),
        },
        api_since_ms: ms(cluster.api_since),
        api_error: cluster.api_error.unwrap_or_default(),
        kube_version: cluster.kube_version.unwrap_or_default(),
        last_seen_ms: ms(cluster.last_seen),
        assigned_revision: cluster.assigned_revision.unwrap_or_default(),
        render_error: cluster.render_error.map(error),
        bundles: cluster.bundles.into_iter().map(bundle).collect(),
        kube_system_uid: cluster.kube_system_uid.unwrap_or_default(),
        identity_conflict: cluster.identity_conflict.map(identity_conflict),
    }
}

/// A conflict as the API shows it.
pub(super) fn identity_conflict(conflict: IdentityConflictStatus) -> AdminIdentityConflict {
    AdminIdentityConflict {
        kube_system_uid: conflict.kube_system_uid,
        first_at_ms: conflict.first_at.0 as i64,
        last_at_ms: conflict.last_at.0 as i64,
        message: conflict.message,
    }
}

fn bundle(bundle: BundleStatus) -> AdminBundleStatus {
    let hash = |h: Option<flotilla_core::ContentHash>| h.map(|h| h.to_string()).unwrap_or_default();
    AdminBundleStatus {
        name: bundle.name,
        desired_revision: bundle.desired_revision.unwrap_or_default(),
        applied_revision: bundle.applied_revision.unwrap_or_default(),
        desired_hash: hash(bundle.desired_hash),
        applied_hash: hash(bundle.applied_hash),
        sync_state: bundle.sync_state.as_str().to_owned(),
        health: bundle.health,
        drifted: bundle.drifted,
        added: bundle.added,
        message: bundle.message,
        updated_at_ms: ms(bundle.updated_at),
    }
}

fn rollout(rollout: RolloutSummary) -> AdminRolloutStatus {
    AdminRolloutStatus {
        id: rollout.id,
        stage: rollout.stage,
        from_revision: rollout.from_revision.unwrap_or_default(),
        to_revision: rollout.to_revision,
        status: rollout.status,
        waves_started: rollout.waves_started as u32,
        waves: rollout.waves as u32,
        updated_at_ms: rollout.updated_at.0 as i64,
        deletion_hold: rollout.deletion_hold.unwrap_or_default(),
    }
}

fn event(event: Event) -> AdminEvent {
    AdminEvent {
        at_ms: event.at.0 as i64,
        kind: event.kind.to_owned(),
        subject: event.subject,
        message: event.message,
    }
}
