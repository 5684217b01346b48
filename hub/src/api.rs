//! The Admin gRPC API (`flotilla.v1.Admin`), served by every node on the API listener: reads
//! from the node's own replica, writes proposed through the node (which forwards them to the
//! leader) and answered once applied here, so a read right after a write sees it.

use std::pin::Pin;
use std::time::Duration;

use flotilla_core::inventory::Cluster as InventoryCluster;
use flotilla_proto::v1::admin_server::Admin;
use flotilla_proto::v1::{
    AdminAddClusterRequest, AdminAuditList, AdminBundleDetailRequest, AdminCluster,
    AdminClusterDetailRequest, AdminClusterIdentity, AdminClusterList, AdminCreateTokenReply,
    AdminCreateTokenRequest, AdminDiffReply, AdminDiffRequest, AdminFleetStatus,
    AdminFleetStatusRequest, AdminIssueBootstrapTokenRequest, AdminJsonReply,
    AdminLabelClusterRequest, AdminListAuditRequest, AdminListClustersRequest,
    AdminListRevisionsRequest, AdminListTokensRequest, AdminPromoteRequest,
    AdminRemoveClusterReply, AdminRemoveClusterRequest, AdminRequestFetchReply,
    AdminRequestFetchRequest, AdminResetClusterIdentityRequest, AdminRevisionList,
    AdminRevokeTokenRequest, AdminRollbackRequest, AdminRolloutProgress, AdminRolloutStatusRequest,
    AdminStageActionReply, AdminStageActionRequest, AdminStageHistory, AdminStageHistoryRequest,
    AdminToken, AdminTokenList,
};
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::Action;
use crate::context::HubContext;
use crate::controller::source::{RequestFetchError, request_fetch};
use crate::node::ProposeError;
use crate::state::audit::{AuditClass, Outcome};
use crate::state::rollout::pipeline;
use crate::state::{Command, CommandError, Labels, RolloutAction};
use crate::status::{self, ClusterQuery};

pub mod audit;
pub mod caller;
mod convert;
pub mod diff;
mod identity;
mod progress;
mod stage;
pub mod tokens;

use crate::audit::{Entry, UNAUTHENTICATED_ACTOR};
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

    fn fleet_status(&self, caller: &Caller, query: &ClusterQuery) -> AdminFleetStatus {
        convert::fleet(view(caller, &self.hub.status(), query))
    }

    /// Identifies the caller of a read and checks it may view `stage` (or, without one, the
    /// fleet: any token may).
    fn viewer<T>(&self, request: &Request<T>, stage: Option<&str>) -> Result<Caller, Status> {
        let caller = identify(&self.hub, request)?;
        caller.allow(Action::View, stage)?;
        Ok(caller)
    }

    /// Identifies the caller of a change and checks it may make it; a refusal is audited.
    async fn actor<T>(&self, request: &Request<T>, change: &Change<'_>) -> Result<Caller, Status> {
        let (actor, refused) = match identify(&self.hub, request) {
            Ok(caller) => match caller.allow(change.action, change.stage) {
                Ok(()) => return Ok(caller),
                Err(refused) => (caller.name, refused),
            },
            Err(refused) => (UNAUTHENTICATED_ACTOR.to_owned(), refused),
        };
        let entry = Entry {
            actor: &actor,
            action: change.verb,
            target: &change.target,
            detail: String::new(),
            outcome: Outcome::Denied(refused.to_string()),
            class: AuditClass::Unprivileged,
        };
        self.hub.record_audit(entry).await;
        Err(refused.into())
    }

    /// A change made for an allowed caller, audited: a refusal and a failure always, a success
    /// when `change.audit_success` (stage actions are audited by the state machine as they
    /// apply). `detail` describes the request (and the caller) for the audit trail.
    async fn audited<T, R, F>(
        &self,
        request: Request<T>,
        change: Change<'_>,
        detail: impl FnOnce(&Caller, &T) -> String,
        call: impl FnOnce(Caller, T) -> F,
    ) -> Result<Response<R>, Status>
    where
        F: Future<Output = Result<R, Status>>,
    {
        let caller = self.actor(&request, &change).await?;
        let request = request.into_inner();
        let detail = detail(&caller, &request);
        let actor = caller.name.clone();
        let result = call(caller, request).await;
        let outcome = match &result {
            Ok(_) if !change.audit_success => return result.map(Response::new),
            Ok(_) => Outcome::Succeeded,
            Err(status) => Outcome::Failed(status.message().to_owned()),
        };
        let entry = Entry {
            actor: &actor,
            action: change.verb,
            target: &change.target,
            detail,
            class: AuditClass::of(&outcome),
            outcome,
        };
        self.hub.record_audit(entry).await;
        result.map(Response::new)
    }

    /// Registers a cluster (the caller is checked).
    async fn add_cluster(&self, request: AdminAddClusterRequest) -> Result<AdminCluster, Status> {
        let labels: Labels = request.labels.into_iter().collect();
        let cluster = InventoryCluster {
            name: request.name.clone(),
            labels: labels.clone(),
            capabilities: None,
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
        let mut added = AdminCluster {
            name: request.name,
            labels: labels.into_iter().collect(),
            stage: String::new(),
            online: false,
            assigned_revision: String::new(),
            registered_at_ms: at.0 as i64,
            ..AdminCluster::default()
        };
        self.attach_bootstrap_token(&mut added).await?;
        Ok(added)
    }

    /// Sets and removes labels of a registered cluster, all or nothing.
    async fn label_cluster(
        &self,
        request: AdminLabelClusterRequest,
    ) -> Result<AdminCluster, Status> {
        let name = request.name;
        if let Some((path, listed)) = &self.hub.clusters_file
            && listed.contains(&name)
        {
            return Err(Status::failed_precondition(format!(
                "cluster `{name}` is listed in this hub's clusters file {}: its labels come from \
                 there; change them in the file (every hub node reads its own copy at start)",
                path.display()
            )));
        }
        let (answer, labels, changed) = {
            let state = self.hub.node.state();
            let cluster = state
                .clusters
                .get(&name)
                .ok_or_else(|| Status::not_found(format!("cluster `{name}` is not registered")))?;
            let labels = relabelled(&name, &cluster.labels, request.set, &request.remove)?;
            let answer = AdminCluster {
                name: name.clone(),
                labels: labels.clone().into_iter().collect(),
                online: cluster.online,
                registered_at_ms: cluster.registered_at.0 as i64,
                ..AdminCluster::default()
            };
            let changed = labels != cluster.labels;
            (answer, labels, changed)
        };
        if changed {
            let command = Command::RelabelCluster {
                name,
                labels,
                at: self.hub.clock.now(),
            };
            self.hub
                .node
                .propose(&command)
                .await
                .map_err(propose_status)?;
        }
        Ok(answer)
    }

    /// On a hub with TLS, issues the cluster's agent a one-time bootstrap token and puts it in
    /// the answer (the only place it is ever shown).
    async fn attach_bootstrap_token(&self, cluster: &mut AdminCluster) -> Result<(), Status> {
        if self.hub.node.security().tls().is_none() {
            return Ok(());
        }
        let issued = crate::sync::register::issue_bootstrap_token(
            &self.hub.node,
            self.hub.clock.as_ref(),
            &cluster.name,
            self.hub.registration.bootstrap_token_ttl,
        )
        .await
        .map_err(propose_status)?;
        cluster.bootstrap_token = issued.token.reveal().to_owned();
        cluster.bootstrap_token_expires_ms = i64::try_from(issued.expires.0).unwrap_or(i64::MAX);
        Ok(())
    }

    /// A new bootstrap token for a registered cluster.
    async fn issue_bootstrap_token(
        &self,
        request: AdminIssueBootstrapTokenRequest,
    ) -> Result<AdminCluster, Status> {
        if self.hub.node.security().tls().is_none() {
            return Err(Status::failed_precondition(
                "this hub runs --insecure: agents connect without a bootstrap token",
            ));
        }
        let registered_at = self
            .hub
            .node
            .state()
            .clusters
            .get(&request.name)
            .map(|cluster| cluster.registered_at)
            .ok_or_else(|| {
                Status::not_found(format!("cluster '{}' is not registered", request.name))
            })?;
        let mut cluster = AdminCluster {
            name: request.name,
            registered_at_ms: registered_at.0 as i64,
            ..AdminCluster::default()
        };
        self.attach_bootstrap_token(&mut cluster).await?;
        Ok(cluster)
    }

    /// Removes a cluster (the caller is checked).
    async fn remove_cluster(
        &self,
        request: AdminRemoveClusterRequest,
    ) -> Result<AdminRemoveClusterReply, Status> {
        let name = request.name;
        self.hub
            .node
            .propose(&Command::RemoveCluster {
                name: name.clone(),
                at: self.hub.clock.now(),
            })
            .await
            .map_err(propose_status)?;
        Ok(AdminRemoveClusterReply {})
    }

    /// Pause, resume or approve: checked, done, and audited when refused or failed (the state
    /// machine audits the transition itself).
    async fn stage_action(
        &self,
        request: Request<AdminStageActionRequest>,
        action: RolloutAction,
    ) -> Result<Response<AdminStageActionReply>, Status> {
        let stage = request.get_ref().stage.clone();
        let needs = match action {
            RolloutAction::Pause | RolloutAction::Resume => Action::Pause,
            RolloutAction::Approve | RolloutAction::ApproveByPolicy => Action::Promote,
        };
        let change = Change::stage(needs, &stage, action.verb());
        self.audited(request, change, no_detail, |caller, request| async move {
            stage::set_status(&self.hub, &caller, request, action).await
        })
        .await
    }
}

/// A cluster's labels with `set` added and `remove` taken away, checked as a whole.
fn relabelled(
    name: &str,
    current: &Labels,
    set: std::collections::HashMap<String, String>,
    remove: &[String],
) -> Result<Labels, Status> {
    let mut labels = current.clone();
    for key in remove {
        if set.contains_key(key) {
            return Err(Status::invalid_argument(format!(
                "label `{key}` is both set and removed; give it once"
            )));
        }
        if labels.remove(key).is_none() {
            return Err(Status::invalid_argument(format!(
                "cluster `{name}` has no label `{key}` to remove"
            )));
        }
    }
    labels.extend(set);
    let problems = InventoryCluster {
        name: name.to_owned(),
        labels: labels.clone(),
        capabilities: None,
    }
    .validate();
    if !problems.is_empty() {
        return Err(Status::invalid_argument(format!(
            "cluster `{name}`: {}",
            problems.join("; ")
        )));
    }
    Ok(labels)
}

/// A change through the Admin API: what the caller must be allowed, and how the audit trail
/// names it.
struct Change<'a> {
    action: Action,
    stage: Option<&'a str>,
    verb: &'a str,
    target: String,
    /// Whether a success is audited here (stage actions are audited as they apply).
    audit_success: bool,
}

impl<'a> Change<'a> {
    /// A change to the fleet (clusters, tokens, the source), audited here.
    fn fleet(action: Action, verb: &'a str, target: String) -> Self {
        Change {
            action,
            stage: None,
            verb,
            target,
            audit_success: true,
        }
    }

    /// A change to a stage, which the state machine audits when it applies.
    fn stage(action: Action, stage: &'a str, verb: &'a str) -> Self {
        Change {
            action,
            stage: Some(stage),
            verb,
            target: format!("stage/{stage}"),
            audit_success: false,
        }
    }
}

/// No detail for the audit trail.
fn no_detail<C, T>(_: &C, _: &T) -> String {
    String::new()
}

/// `source/NAME` for the followed source, as audit events name it.
fn source_target(hub: &HubContext) -> String {
    format!(
        "source/{}",
        hub.source.as_ref().map_or("none", |s| s.name.as_str())
    )
}

/// The stage of the current `flotilla.yaml` that selects a cluster, if any.
fn cluster_stage(hub: &HubContext, state: &crate::state::State, cluster: &str) -> Option<String> {
    let labels = &state.clusters.get(cluster)?.labels;
    let source = hub.source.as_ref()?;
    let (_, spec) = pipeline::current(state, &source.name)?;
    let stage = spec.stage_for(labels).ok().flatten()?;
    Some(stage.name.clone())
}

/// What `caller` may view of a fleet status — everything for a viewer of every stage; else the
/// stages it may view, their clusters, counts and rollouts, and no fleet-wide events — with the
/// clusters `query` selects.
pub(crate) fn view(
    caller: &Caller,
    status: &status::FleetStatus,
    query: &ClusterQuery,
) -> status::FleetStatus {
    if caller.sees_everything() {
        return status.view(&status::Scope::Everything, query);
    }
    let can = |stage: &str| caller.can(Action::View, Some(stage));
    status.view(&status::Scope::Stages(&can), query)
}

/// A linearizable read that could not be served: this node cannot tell whether its replica
/// has every acknowledged write.
fn read_status(error: crate::node::ReadError) -> Status {
    Status::unavailable(format!(
        "this hub node cannot confirm it has the group's latest state: {error}; retry, or ask \
         another node of the group"
    ))
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
        let caller = self.viewer(&request, None)?;
        let everything = caller.sees_everything();
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
                ..AdminCluster::default()
            })
            .filter(|c| everything || caller.can(Action::View, Some(&c.stage)))
            .collect();
        Ok(Response::new(AdminClusterList { clusters }))
    }

    async fn add_cluster(
        &self,
        request: Request<AdminAddClusterRequest>,
    ) -> Result<Response<AdminCluster>, Status> {
        let target = format!("cluster/{}", request.get_ref().name);
        let change = Change::fleet(Action::ManageClusters, "cluster.add", target);
        let labels = |_: &Caller, request: &AdminAddClusterRequest| {
            let labels: Vec<String> = request
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            labels.join(",")
        };
        self.audited(request, change, labels, |_, request| {
            self.add_cluster(request)
        })
        .await
    }

    async fn label_cluster(
        &self,
        request: Request<AdminLabelClusterRequest>,
    ) -> Result<Response<AdminCluster>, Status> {
        let target = format!("cluster/{}", request.get_ref().name);
        let change = Change::fleet(Action::ManageClusters, "cluster.label", target);
        let labels = |_: &Caller, request: &AdminLabelClusterRequest| {
            let set = request.set.iter().map(|(k, v)| format!("{k}={v}"));
            let removed = request.remove.iter().map(|k| format!("{k}-"));
            set.chain(removed).collect::<Vec<_>>().join(",")
        };
        self.audited(request, change, labels, |_, request| {
            self.label_cluster(request)
        })
        .await
    }

    async fn issue_bootstrap_token(
        &self,
        request: Request<AdminIssueBootstrapTokenRequest>,
    ) -> Result<Response<AdminCluster>, Status> {
        let target = format!("cluster/{}", request.get_ref().name);
        let change = Change::fleet(Action::ManageClusters, "cluster.token", target);
        self.audited(request, change, no_detail, |_, request| {
            self.issue_bootstrap_token(request)
        })
        .await
    }

    async fn remove_cluster(
        &self,
        request: Request<AdminRemoveClusterRequest>,
    ) -> Result<Response<AdminRemoveClusterReply>, Status> {
        let target = format!("cluster/{}", request.get_ref().name);
        let change = Change::fleet(Action::ManageClusters, "cluster.remove", target);
        self.audited(request, change, no_detail, |_, request| {
            self.remove_cluster(request)
        })
        .await
    }

    async fn reset_cluster_identity(
        &self,
        request: Request<AdminResetClusterIdentityRequest>,
    ) -> Result<Response<AdminClusterIdentity>, Status> {
        let target = format!("cluster/{}", request.get_ref().name);
        let change = Change::fleet(Action::ManageClusters, "cluster.reset-identity", target);
        let detail = |_: &Caller, request: &AdminResetClusterIdentityRequest| {
            identity::detail(&self.hub, request)
        };
        self.audited(request, change, detail, |caller, request| async move {
            identity::reset(&self.hub, &caller, request).await
        })
        .await
    }

    async fn list_revisions(
        &self,
        request: Request<AdminListRevisionsRequest>,
    ) -> Result<Response<AdminRevisionList>, Status> {
        // Revisions are the repository's, which every token's holder may read anyway.
        self.viewer(&request, None)?;
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
        let caller = self.viewer(&request, None)?;
        let query = convert::cluster_query(request.get_ref());
        Ok(Response::new(self.fleet_status(&caller, &query)))
    }

    type WatchFleetStatusStream = StatusStream;

    async fn watch_fleet_status(
        &self,
        request: Request<AdminFleetStatusRequest>,
    ) -> Result<Response<Self::WatchFleetStatusStream>, Status> {
        let caller = self.viewer(&request, None)?;
        let query = convert::cluster_query(request.get_ref());
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let hub = self.hub.clone();
        tokio::spawn(async move {
            let mut applied = hub.node.watch_applied();
            let mut last: Option<status::FleetStatus> = None;
            loop {
                let current = view(&caller, &hub.status(), &query);
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
        let caller = self.viewer(&request, None)?;
        let request = request.into_inner();
        let plan = {
            let state = self.hub.node.state();
            // A diff shows manifests: of every cluster only to viewers of every stage.
            if !caller.sees_everything() {
                let stage = cluster_stage(&self.hub, &state, &request.cluster);
                caller
                    .allow(Action::View, Some(stage.as_deref().unwrap_or("")))
                    .map_err(|refused| {
                        Status::permission_denied(format!(
                            "{refused}; name a cluster of a stage the token may view with --cluster"
                        ))
                    })?;
            }
            let from = diff::resolve(&state, &request.from_revision)?;
            let to = diff::resolve(&state, &request.to_revision)?;
            let cluster = Some(request.cluster.as_str()).filter(|c| !c.is_empty());
            diff::plan(&state, &from, &to, cluster)?
        };
        let node = &self.hub.node;
        let read = |hash| async move {
            let blob = node
                .blob(&hash)
                .await
                .map_err(|e| Status::unavailable(format!("cannot read a rendered bundle: {e}")))?;
            blob.content()
                .map_err(|e| Status::data_loss(format!("blob {hash}: {e}")))
        };
        Ok(Response::new(diff::diff(plan, read).await?))
    }

    async fn request_fetch(
        &self,
        request: Request<AdminRequestFetchRequest>,
    ) -> Result<Response<AdminRequestFetchReply>, Status> {
        let change = Change::fleet(Action::RequestFetch, "fetch", source_target(&self.hub));
        let reason = |caller: &Caller, request: &AdminRequestFetchRequest| {
            format!("{}: {}", caller.name, request.reason)
        };
        self.audited(request, change, reason, |caller, request| async move {
            let reason = request.reason;
            if reason.len() > stage::MAX_REASON_BYTES {
                return Err(Status::invalid_argument(format!(
                    "the reason is {} bytes; keep it under {}",
                    reason.len(),
                    stage::MAX_REASON_BYTES
                )));
            }
            let index = request_fetch(
                &self.hub.node,
                self.hub.clock.as_ref(),
                self.hub.source.as_ref(),
                &format!("{}: {reason}", caller.name),
            )
            .await
            .map_err(|e| match e {
                RequestFetchError::NoSource => Status::failed_precondition(e.to_string()),
                RequestFetchError::Propose(e) => propose_status(e),
            })?;
            Ok(AdminRequestFetchReply { index })
        })
        .await
    }

    async fn promote(
        &self,
        request: Request<AdminPromoteRequest>,
    ) -> Result<Response<AdminStageActionReply>, Status> {
        let stage = request.get_ref().stage.clone();
        let change = match request.get_ref().force {
            true => Change::stage(Action::ForcePromote, &stage, "force-promote"),
            false => Change::stage(Action::Promote, &stage, "promote"),
        };
        let revision = |_: &Caller, request: &AdminPromoteRequest| request.revision.clone();
        self.audited(request, change, revision, |caller, request| async move {
            stage::promote(&self.hub, &caller, request).await
        })
        .await
    }

    async fn rollback(
        &self,
        request: Request<AdminRollbackRequest>,
    ) -> Result<Response<AdminStageActionReply>, Status> {
        let stage = request.get_ref().stage.clone();
        let change = Change::stage(Action::Rollback, &stage, "rollback");
        let revision = |_: &Caller, request: &AdminRollbackRequest| request.to_revision.clone();
        self.audited(request, change, revision, |caller, request| async move {
            stage::rollback(&self.hub, &caller, request).await
        })
        .await
    }

    async fn pause(
        &self,
        request: Request<AdminStageActionRequest>,
    ) -> Result<Response<AdminStageActionReply>, Status> {
        self.stage_action(request, RolloutAction::Pause).await
    }

    async fn resume(
        &self,
        request: Request<AdminStageActionRequest>,
    ) -> Result<Response<AdminStageActionReply>, Status> {
        self.stage_action(request, RolloutAction::Resume).await
    }

    async fn approve(
        &self,
        request: Request<AdminStageActionRequest>,
    ) -> Result<Response<AdminStageActionReply>, Status> {
        self.stage_action(request, RolloutAction::Approve).await
    }

    async fn stage_history(
        &self,
        request: Request<AdminStageHistoryRequest>,
    ) -> Result<Response<AdminStageHistory>, Status> {
        self.viewer(&request, Some(&request.get_ref().stage))?;
        let name = request.into_inner().stage;
        Ok(Response::new(stage::history(&self.hub, &name)?))
    }

    async fn rollout_status(
        &self,
        request: Request<AdminRolloutStatusRequest>,
    ) -> Result<Response<AdminRolloutProgress>, Status> {
        self.viewer(&request, Some(&request.get_ref().stage))?;
        let request = request.into_inner();
        Ok(Response::new(rollout_progress(&self.hub, &request)?))
    }

    type WatchRolloutStatusStream = ProgressStream;

    async fn watch_rollout_status(
        &self,
        request: Request<AdminRolloutStatusRequest>,
    ) -> Result<Response<Self::WatchRolloutStatusStream>, Status> {
        self.viewer(&request, Some(&request.get_ref().stage))?;
        let mut request = request.into_inner();
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

    async fn create_token(
        &self,
        request: Request<AdminCreateTokenRequest>,
    ) -> Result<Response<AdminCreateTokenReply>, Status> {
        let target = format!("token/{}", request.get_ref().name.trim());
        let change = Change::fleet(Action::ManageTokens, "token.create", target);
        let grant = |_: &Caller, request: &AdminCreateTokenRequest| {
            let scope = match request.stages.is_empty() {
                true => "every stage".to_owned(),
                false => request.stages.join(","),
            };
            format!("{} on {scope}", request.role)
        };
        self.audited(request, change, grant, |caller, request| async move {
            tokens::create(&self.hub, &caller, &request).await
        })
        .await
    }

    async fn list_tokens(
        &self,
        request: Request<AdminListTokensRequest>,
    ) -> Result<Response<AdminTokenList>, Status> {
        identify(&self.hub, &request)?.allow(Action::ManageTokens, None)?;
        // Linearizable: a token created or revoked through any node is listed as it is now,
        // even by a node behind the leader.
        let tokens = self
            .hub
            .node
            .linearizable(|state| {
                state
                    .access
                    .tokens
                    .iter()
                    .map(|(id, token)| tokens::to_proto(id, token))
                    .collect()
            })
            .await
            .map_err(read_status)?;
        Ok(Response::new(AdminTokenList { tokens }))
    }

    async fn revoke_token(
        &self,
        request: Request<AdminRevokeTokenRequest>,
    ) -> Result<Response<AdminToken>, Status> {
        let target = format!("token/{}", request.get_ref().name.trim());
        let change = Change::fleet(Action::ManageTokens, "token.revoke", target);
        self.audited(request, change, no_detail, |_, request| async move {
            tokens::revoke(&self.hub, &request).await
        })
        .await
    }

    async fn list_audit(
        &self,
        request: Request<AdminListAuditRequest>,
    ) -> Result<Response<AdminAuditList>, Status> {
        let stage = Some(request.get_ref().stage.as_str()).filter(|s| !s.is_empty());
        let caller = self.viewer(&request, stage)?;
        let state = self.hub.node.state();
        Ok(Response::new(audit::list(
            &state,
            &caller,
            request.get_ref(),
        )))
    }

    async fn cluster_detail(
        &self,
        request: Request<AdminClusterDetailRequest>,
    ) -> Result<Response<AdminJsonReply>, Status> {
        let caller = self.viewer(&request, None)?;
        let name = &request.get_ref().name;
        let detail = self
            .hub
            .cluster_detail(name)
            .filter(|d| caller.may_view(d.status.stage.as_deref()))
            .ok_or_else(|| {
                Status::not_found(format!(
                    "cluster '{name}' is not registered (or not on a stage you may view); \
                     `flotilla clusters` lists them"
                ))
            })?;
        json_reply(&detail)
    }

    async fn bundle_detail(
        &self,
        request: Request<AdminBundleDetailRequest>,
    ) -> Result<Response<AdminJsonReply>, Status> {
        let caller = self.viewer(&request, None)?;
        let query = request.get_ref();
        let stage = Some(query.stage.as_str()).filter(|s| !s.is_empty());
        let select = |cluster: &status::ClusterStatus, bundle: &status::BundleStatus| {
            caller.may_view(cluster.stage.as_deref())
                && stage.is_none_or(|s| cluster.stage.as_deref() == Some(s))
                && (!query.problems || status::bundle_problem(bundle))
        };
        let limit = match query.limit {
            0 => BUNDLE_DETAIL_LIMIT,
            n => (n as usize).min(BUNDLE_DETAIL_MAX),
        };
        let detail = self.hub.bundle_detail(&query.name, &select, limit);
        if detail.matched == 0 && !query.problems && stage.is_none() {
            return Err(Status::not_found(format!(
                "no cluster you may view holds bundle '{}'; `flotilla status` lists the bundles",
                query.name
            )));
        }
        json_reply(&detail)
    }
}

/// Clusters `BundleDetail` shows unless asked for another number.
const BUNDLE_DETAIL_LIMIT: usize = 100;

/// Most clusters one `BundleDetail` shows, however many are asked for.
const BUNDLE_DETAIL_MAX: usize = 1000;

fn json_reply<T: serde::Serialize>(value: &T) -> Result<Response<AdminJsonReply>, Status> {
    let json = serde_json::to_string(value)
        .map_err(|e| Status::internal(format!("encoding the answer: {e}")))?;
    Ok(Response::new(AdminJsonReply { json }))
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
