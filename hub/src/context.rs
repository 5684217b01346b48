//! What the services of one hub node share — the node, its clock, metrics, the followed
//! source, the agent streams, the audit trail — and what they do with it together: the fleet
//! status every surface shows and the audit events they record. The composition root
//! (`server`) builds it; the Admin API, HTTP and their helpers take it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{self, AuditTrail, Entry};
use crate::clock::Clock;
use crate::controller::source::SourceConfig;
use crate::metrics::Metrics;
use crate::node::NodeHandle;
use crate::status::{self, ClusterDetail, FleetStatus, StageDetail, Timeline, TimelineError};
use crate::sync::SyncHub;

/// How agents register: how long a bootstrap token and an agent certificate last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationConfig {
    /// How long a bootstrap token issued by `AddCluster` stays usable.
    pub bootstrap_token_ttl: Duration,
    /// Lifetime of the client certificates agents get at registration and renewal.
    pub agent_cert_lifetime: Duration,
}

/// Default lifetime of a bootstrap token.
pub const DEFAULT_BOOTSTRAP_TOKEN_TTL: Duration = Duration::from_secs(3600);

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            bootstrap_token_ttl: DEFAULT_BOOTSTRAP_TOKEN_TTL,
            agent_cert_lifetime: flotilla_pki::DEFAULT_AGENT_CERT_LIFETIME,
        }
    }
}

/// What the services and controllers of one hub share.
#[derive(Clone)]
pub struct HubContext {
    /// The node.
    pub node: NodeHandle,
    /// Wall-clock time for proposed commands.
    pub clock: Arc<dyn Clock>,
    /// Counters and gauges.
    pub metrics: Arc<Metrics>,
    /// The followed source, if any.
    pub source: Option<SourceConfig>,
    /// Agent streams served by this node.
    pub sync: Arc<SyncHub>,
    /// Whether the Admin API is open to everyone (an insecure hub) rather than checking
    /// bearer tokens.
    pub insecure: bool,
    /// What this node records of unprivileged events (refusals, failures, webhook deliveries).
    pub audit: Arc<AuditTrail>,
    /// Lifetimes of bootstrap tokens and agent certificates.
    pub registration: RegistrationConfig,
    /// This node's clusters file and the clusters it lists: their labels come from it.
    pub clusters_file: Option<(PathBuf, BTreeSet<String>)>,
    /// The fleet status last computed, shared by every reader until the state moves on.
    pub status_cache: Arc<StatusCache>,
}

/// The fleet status of one applied index and leader: computed once, however many pages and
/// watchers read it (at 10,000 clusters computing it takes tens of milliseconds).
#[derive(Default)]
pub struct StatusCache {
    latest: std::sync::Mutex<Option<Arc<FleetStatus>>>,
    computing: std::sync::Mutex<()>,
}

impl HubContext {
    /// The fleet status from this node's replica, computed once per applied index and leader:
    /// readers arriving together wait for the one computing it.
    pub fn status(&self) -> Arc<FleetStatus> {
        let cached = || {
            self.status_cache
                .latest
                .lock()
                .expect("status cache")
                .clone()
        };
        // What the caller asks for is the state as of now: a status computed for this index or
        // a later one (by a reader it waited for) answers it.
        let (index, leader) = (
            self.node.state().applied(),
            self.node.leadership().leader.unwrap_or(0),
        );
        let fresh = |status: &FleetStatus| status.applied_index >= index && status.leader == leader;
        if let Some(status) = cached().filter(|s| fresh(s)) {
            return status;
        }
        let _computing = self
            .status_cache
            .computing
            .lock()
            .expect("status computing");
        if let Some(status) = cached().filter(|s| fresh(s)) {
            return status;
        }
        let leader = self.node.leadership().leader;
        let status = {
            let state = self.node.state();
            Arc::new(status::fleet_status(
                &state,
                self.source_view().as_ref(),
                self.node.id(),
                leader,
                state.applied(),
            ))
        };
        let mut latest = self.status_cache.latest.lock().expect("status cache");
        if latest
            .as_ref()
            .is_none_or(|l| l.applied_index <= status.applied_index)
        {
            *latest = Some(Arc::clone(&status));
        }
        status
    }

    /// A cluster in detail, from this node's replica; none when it is not registered.
    pub fn cluster_detail(&self, name: &str) -> Option<ClusterDetail> {
        let state = self.node.state();
        status::cluster_detail(&state, self.source_view().as_ref(), name)
    }

    /// `bundle` across the clusters `select` lets through (at most `limit`, problems first).
    pub fn bundle_detail(
        &self,
        bundle: &str,
        select: &dyn Fn(&status::ClusterStatus, &status::BundleStatus) -> bool,
        limit: usize,
    ) -> status::BundleDetail {
        // The status first: it reads the replica itself (see `stage_detail`).
        let fleet = self.status();
        let state = self.node.state();
        status::bundle_detail(&state, &fleet, bundle, select, limit)
    }

    /// A stage in detail, with the fleet status it is part of; none when there is no such stage.
    pub fn stage_detail(&self, name: &str) -> Option<StageDetail> {
        // The status first: it reads the replica itself, and a second read lock taken by the
        // same thread could wait behind a writer waiting for the first.
        let fleet = self.status();
        let state = self.node.state();
        status::stage_detail(&state, &fleet, name)
    }

    /// The timeline of the commit `prefix` names, over the stages `visible` lets through, with
    /// one page of its clusters.
    pub fn timeline(
        &self,
        prefix: &str,
        visible: impl Fn(Option<&str>) -> bool,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Timeline, TimelineError> {
        let state = self.node.state();
        let commit = status::resolve_commit(&state, prefix)?;
        let source = self.source_view();
        Ok(status::timeline(
            &state,
            source.as_ref(),
            &commit,
            visible,
            offset,
            limit,
        ))
    }

    fn source_view(&self) -> Option<status::SourceView> {
        self.source.as_ref().map(SourceConfig::view)
    }

    /// Records an audit event; a failure to record is logged, never fails the call it
    /// describes. Unprivileged events are rate-limited per actor (`crate::audit`).
    pub async fn record_audit(&self, entry: Entry<'_>) {
        audit::record_on(&self.node, self.clock.as_ref(), &self.audit, entry).await;
    }
}
