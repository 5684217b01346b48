//! The Admin gRPC API (`flotilla.v1.Admin`), served by every node on the API listener: reads
//! from the node's own replica, writes proposed through the node (which forwards them to the
//! leader) and answered once applied here, so a read right after a write sees it.

use std::pin::Pin;
use std::time::Duration;

use flotilla_core::inventory::Cluster as InventoryCluster;
use flotilla_proto::v1::admin_server::Admin;
use flotilla_proto::v1::{
    AdminAddClusterRequest, AdminCluster, AdminClusterList, AdminDiffReply, AdminDiffRequest,
    AdminFleetStatus, AdminFleetStatusRequest, AdminListClustersRequest, AdminListRevisionsRequest,
    AdminPromoteRequest, AdminRemoveClusterReply, AdminRemoveClusterRequest,
    AdminRequestFetchReply, AdminRequestFetchRequest, AdminRevisionList, AdminRollbackRequest,
    AdminRolloutProgress, AdminRolloutStatusRequest, AdminStageActionReply,
    AdminStageActionRequest, AdminStageHistory, AdminStageHistoryRequest,
};
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::controller::source::{RequestFetchError, request_fetch};
use crate::node::ProposeError;
use crate::server::HubContext;
use crate::state::access::Role;
use crate::state::audit::AuditEvent;
use crate::state::{Command, CommandError, Labels, RolloutAction};
use crate::{pipeline, status};

pub mod caller;
mod convert;
pub mod diff;
mod progress;
mod stage;

use caller::{Caller, identify};

/// Coalesces bursts of state changes into one watch update.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(100);

/// Serves `flotilla.v1.Admin` from a hub.
pub struct AdminService {
    hub: HubContext,
}

impl AdminService {
    /// The service for a hub.
    pub fn new(hub: HubContext) -> Self {
        AdminService { hub }
    }

    fn fleet_status(&self) -> AdminFleetStatus {
        convert::fleet(current_status(&self.hub))
    }

    /// Records who did what; a failure is logged, never fails the call that already applied.
    async fn audit(&self, caller: &Caller, action: &str, target: String, detail: String) {
        let event = AuditEvent {
            actor: caller.name.clone(),
            action: action.to_owned(),
            target,
            detail,
            at: self.hub.clock.now(),
        };
        if let Err(e) = self.hub.node.propose(&Command::RecordAudit { event }).await {
            tracing::warn!(error = %e, action, "audit event not recorded");
        }
    }
}

/// The fleet status of a hub's replica.
pub fn current_status(hub: &HubContext) -> status::FleetStatus {
    let leader = hub.node.leadership().leader;
    let state = hub.node.state();
    status::fleet_status(
        &state,
        hub.source.as_ref(),
        hub.node.id(),
        leader,
        state.applied(),
    )
}

/// A proposal's failure as a gRPC status that says what to do.
fn propose_status(error: ProposeError) -> Status {
    match &error {
        ProposeError::Rejected { error: e, .. } => match e {
            CommandError::ClusterExists(_) => Status::already_exists(e.to_string()),
            CommandError::UnknownStage(_) => Status::not_found(e.to_string()),
            CommandError::UnknownCluster(_) => Status::not_found(format!(
                "{e}; `flotilla clusters` lists the registered clusters"
            )),
            _ => Status::failed_precondition(e.to_string()),
        },
        ProposeError::Refused(_) => Status::failed_precondition(error.to_string()),
        ProposeError::Encode(_) => Status::invalid_argument(error.to_string()),
        _ => Status::unavailable(format!("{error}; the hub group may be electing a leader")),
    }
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<AdminFleetStatus, Status>> + Send>>;
type ProgressStream = Pin<Box<dyn Stream<Item = Result<AdminRolloutProgress, Status>> + Send>>;

/// How often a rollout watch looks again when the state does not change: deadlines and soaks
/// move with time alone.
const PROGRESS_TICK: Duration = Duration::from_secs(1);

#[tonic::async_trait]
impl Admin for AdminService {
    async fn list_clusters(
        &self,
        request: Request<AdminListClustersRequest>,
    ) -> Result<Response<AdminClusterList>, Status> {
        identify(&request)?.require(Role::Viewer)?;
        let state = self.hub.node.state();
        let source = self.hub.source.as_ref().map(|s| s.name.as_str());
        let spec = source
            .and_then(|s| pipeline::current(&state, s))
            .map(|(_, spec)| spec);
        let clusters = state
            .clusters
            .iter()
            .map(|(name, cluster)| AdminCluster {
                name: name.clone(),
                labels: cluster.labels.clone().into_iter().collect(),
                stage: spec
                    .as_ref()
                    .and_then(|s| s.stage_for(&cluster.labels).ok().flatten())
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                online: cluster.online,
                assigned_revision: cluster
                    .assigned
                    .as_ref()
                    .map(|r| r.commit.clone())
                    .unwrap_or_default(),
                registered_at_ms: cluster.registered_at.0 as i64,
            })
            .collect();
        Ok(Response::new(AdminClusterList { clusters }))
    }

    async fn add_cluster(
        &self,
        request: Request<AdminAddClusterRequest>,
    ) -> Result<Response<AdminCluster>, Status> {
        let caller = identify(&request)?;
        caller.require(Role::Admin)?;
        let request = request.into_inner();
        let labels: Labels = request.labels.into_iter().collect();
        let cluster = InventoryCluster {
            name: request.name.clone(),
            labels: labels.clone(),
        };
        let problems = cluster.validate();
        if !problems.is_empty() {
            return Err(Status::invalid_argument(format!(
                "cluster `{}`: {}",
                request.name,
                problems.join("; ")
            )));
        }
        let at = self.hub.clock.now();
        self.hub
            .node
            .propose(&Command::RegisterCluster {
                name: request.name.clone(),
                labels: labels.clone(),
                at,
            })
            .await
            .map_err(propose_status)?;
        let detail = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        self.audit(
            &caller,
            "cluster.add",
            format!("cluster/{}", request.name),
            detail,
        )
        .await;
        Ok(Response::new(AdminCluster {
            name: request.name,
            labels: labels.into_iter().collect(),
            stage: String::new(),
            online: false,
            assigned_revision: String::new(),
            registered_at_ms: at.0 as i64,
        }))
    }

    async fn remove_cluster(
        &self,
        request: Request<AdminRemoveClusterRequest>,
    ) -> Result<Response<AdminRemoveClusterReply>, Status> {
        let caller = identify(&request)?;
        caller.require(Role::Admin)?;
        let name = request.into_inner().name;
        self.hub
            .node
            .propose(&Command::RemoveCluster {
                name: name.clone(),
                at: self.hub.clock.now(),
            })
            .await
            .map_err(propose_status)?;
        self.audit(
            &caller,
            "cluster.remove",
            format!("cluster/{name}"),
            String::new(),
        )
        .await;
        Ok(Response::new(AdminRemoveClusterReply {}))
    }

    async fn list_revisions(
        &self,
        request: Request<AdminListRevisionsRequest>,
    ) -> Result<Response<AdminRevisionList>, Status> {
        identify(&request)?.require(Role::Viewer)?;
        let state = self.hub.node.state();
        let source_name = self.hub.source.as_ref().map_or("", |s| s.name.as_str());
        let revisions = status::revisions(&state, source_name)
            .into_iter()
            .map(convert::revision)
            .collect();
        let source = self.hub.source.as_ref().map(|config| {
            let known = state.sources.get(&config.name);
            convert::source(status::SourceStatus {
                name: config.name.clone(),
                url: config.url.clone(),
                branch: config.branch.clone(),
                head: known.and_then(|s| s.head.clone()),
                fetched_at: known.and_then(|s| s.fetched_at),
                last_error: known.and_then(|s| s.last_error.clone()),
            })
        });
        Ok(Response::new(AdminRevisionList { revisions, source }))
    }

    async fn fleet_status(
        &self,
        request: Request<AdminFleetStatusRequest>,
    ) -> Result<Response<AdminFleetStatus>, Status> {
        identify(&request)?.require(Role::Viewer)?;
        Ok(Response::new(self.fleet_status()))
    }

    type WatchFleetStatusStream = StatusStream;

    async fn watch_fleet_status(
        &self,
        request: Request<AdminFleetStatusRequest>,
    ) -> Result<Response<Self::WatchFleetStatusStream>, Status> {
        identify(&request)?.require(Role::Viewer)?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let hub = self.hub.clone();
        tokio::spawn(async move {
            let mut applied = hub.node.watch_applied();
            let mut last: Option<status::FleetStatus> = None;
            loop {
                let current = current_status(&hub);
                // The index moves with every entry; only a change of what is shown is news.
                let mut shown = current.clone();
                shown.applied_index = 0;
                if last.as_ref() != Some(&shown) {
                    if sender.send(Ok(convert::fleet(current))).await.is_err() {
                        return;
                    }
                    last = Some(shown);
                }
                tokio::select! {
                    _ = sender.closed() => return,
                    changed = applied.changed() => if changed.is_err() { return },
                }
                tokio::time::sleep(WATCH_DEBOUNCE).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn diff(
        &self,
        request: Request<AdminDiffRequest>,
    ) -> Result<Response<AdminDiffReply>, Status> {
        identify(&request)?.require(Role::Viewer)?;
        let request = request.into_inner();
        let state = self.hub.node.state();
        let from = diff::resolve(&state, &request.from_revision)?;
        let to = diff::resolve(&state, &request.to_revision)?;
        let cluster = Some(request.cluster.as_str()).filter(|c| !c.is_empty());
        Ok(Response::new(diff::diff(&state, &from, &to, cluster)?))
    }

    async fn request_fetch(
        &self,
        request: Request<AdminRequestFetchRequest>,
    ) -> Result<Response<AdminRequestFetchReply>, Status> {
        let caller = identify(&request)?;
        caller.require(Role::Deployer)?;
        let reason = format!("{}: {}", caller.name, request.into_inner().reason);
        let index = request_fetch(
            &self.hub.node,
            self.hub.clock.as_ref(),
            self.hub.source.as_ref(),
            &reason,
        )
        .await
        .map_err(|e| match e {
            RequestFetchError::NoSource => Status::failed_precondition(e.to_string()),
            RequestFetchError::Propose(e) => propose_status(e),
        })?;
        Ok(Response::new(AdminRequestFetchReply { index }))
    }

    async fn promote(
        &self,
        request: Request<AdminPromoteRequest>,
    ) -> Result<Response<AdminStageActionReply>, Status> {
        let caller = identify(&request)?;
        let reply = stage::promote(&self.hub, &caller, request.into_inner()).await?;
        Ok(Response::new(reply))
    }

    async fn rollback(
        &self,
        request: Request<AdminRollbackRequest>,
    ) -> Result<Response<AdminStageActionReply>, Status> {
        let caller = identify(&request)?;
        let reply = stage::rollback(&self.hub, &caller, request.into_inner()).await?;
        Ok(Response::new(reply))
    }

    async fn pause(
        &self,
        request: Request<AdminStageActionRequest>,
    ) -> Result<Response<AdminStageActionReply>, Status> {
        let caller = identify(&request)?;
        let request = request.into_inner();
        let reply = stage::set_status(&self.hub, &caller, request, RolloutAction::Pause).await?;
        Ok(Response::new(reply))
    }

    async fn resume(
        &self,
        request: Request<AdminStageActionRequest>,
    ) -> Result<Response<AdminStageActionReply>, Status> {
        let caller = identify(&request)?;
        let request = request.into_inner();
        let reply = stage::set_status(&self.hub, &caller, request, RolloutAction::Resume).await?;
        Ok(Response::new(reply))
    }

    async fn approve(
        &self,
        request: Request<AdminStageActionRequest>,
    ) -> Result<Response<AdminStageActionReply>, Status> {
        let caller = identify(&request)?;
        let request = request.into_inner();
        let reply = stage::set_status(&self.hub, &caller, request, RolloutAction::Approve).await?;
        Ok(Response::new(reply))
    }

    async fn stage_history(
        &self,
        request: Request<AdminStageHistoryRequest>,
    ) -> Result<Response<AdminStageHistory>, Status> {
        let caller = identify(&request)?;
        let name = request.into_inner().stage;
        caller.require_for_stage(Role::Viewer, &name)?;
        Ok(Response::new(stage::history(&self.hub, &name)?))
    }

    async fn rollout_status(
        &self,
        request: Request<AdminRolloutStatusRequest>,
    ) -> Result<Response<AdminRolloutProgress>, Status> {
        let caller = identify(&request)?;
        let request = request.into_inner();
        caller.require_for_stage(Role::Viewer, &request.stage)?;
        Ok(Response::new(rollout_progress(&self.hub, &request)?))
    }

    type WatchRolloutStatusStream = ProgressStream;

    async fn watch_rollout_status(
        &self,
        request: Request<AdminRolloutStatusRequest>,
    ) -> Result<Response<Self::WatchRolloutStatusStream>, Status> {
        let caller = identify(&request)?;
        let mut request = request.into_inner();
        caller.require_for_stage(Role::Viewer, &request.stage)?;
        // Follow the rollout that is the newest now, even when a newer one starts later.
        request.rollout = rollout_progress(&self.hub, &request)?.id;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let hub = self.hub.clone();
        tokio::spawn(async move {
            let mut applied = hub.node.watch_applied();
            let mut last: Option<AdminRolloutProgress> = None;
            loop {
                let current = rollout_progress(&hub, &request);
                let shown = current.as_ref().ok().map(|p| AdminRolloutProgress {
                    now_ms: 0,
                    ..p.clone()
                });
                if shown.is_none() || last != shown {
                    let failed = current.is_err();
                    if sender.send(current).await.is_err() || failed {
                        return;
                    }
                    last = shown;
                }
                tokio::select! {
                    _ = sender.closed() => return,
                    changed = applied.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(PROGRESS_TICK) => {}
                }
                tokio::time::sleep(WATCH_DEBOUNCE).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// A rollout's progress on this node's replica, judged at the hub's clock.
fn rollout_progress(
    hub: &HubContext,
    request: &AdminRolloutStatusRequest,
) -> Result<AdminRolloutProgress, Status> {
    let state = hub.node.state();
    let (id, rollout) = progress::find(&state, &request.stage, request.rollout)?;
    let source = hub.source.as_ref().map(|s| s.name.as_str());
    Ok(progress::progress(
        &state,
        source,
        id,
        rollout,
        hub.clock.now(),
    ))
}
