//! One agent stream on a node: the hello, the welcome with only the bundles that differ, then
//! pushes as the node's applied index advances, heartbeats both ways, and the agent's acks and
//! reports.
//!
//! Two tasks serve a stream. The reader takes everything the agent sends (acks, reports,
//! heartbeats) and notes when it last heard from it; the writer sends bundles, removals and
//! heartbeats. Splitting them means a long bundle upload never delays reading the agent's
//! heartbeats, so a busy stream is never mistaken for a dead one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::ContentHash;
use flotilla_pki::PeerCertificate;
use flotilla_proto::v1::{
    AgentMessage, BundleRemoval, ClusterApi, ClusterCapabilities, HeldBundle, Hello, HubMessage,
    Welcome, agent_message, hub_message,
};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status, Streaming};

use super::chunk::{self, MIN_AGENT_MESSAGE_BYTES};
use super::refusal::{Reason, Refusal, refuse};
use super::reports::BundleReports;
use super::streams::{Liveness, StreamGuard};
use super::{Shared, identity, register};
use crate::audit::AGENT_ACTOR_PREFIX;
use crate::node::presence;
use crate::state::fleet::ApiReachability;
use crate::state::{Command, State, Timestamp};

/// Messages queued for one agent: enough to keep the connection busy, few enough that a slow
/// agent holds back the writer instead of the node's memory.
const OUTBOUND_QUEUE: usize = 8;

/// Slowest heartbeat an agent may ask for, and the default when it names none.
const MAX_AGENT_HEARTBEAT: Duration = Duration::from_secs(60);
const DEFAULT_AGENT_HEARTBEAT: Duration = Duration::from_secs(5);

type Outbound = mpsc::Sender<Result<HubMessage, Status>>;

/// Reads the hello, checks it — the certificate, the cluster the agent talks to, that no other
/// agent instance streams for the cluster — and starts the stream's tasks. Refusals are
/// returned as the call's status, before any message.
pub(super) async fn open(
    shared: Arc<Shared>,
    request: Request<Streaming<AgentMessage>>,
) -> Result<ReceiverStream<Result<HubMessage, Status>>, Status> {
    let opened = admit(&shared, request).await;
    let (inbound, hello, certificate, guard, liveness) = match opened {
        Ok(opened) => opened,
        Err(status) => {
            shared.counters.stream_refused();
            return Err(status);
        }
    };
    let cluster = hello.cluster.clone();
    shared.counters.stream_opened();
    tracing::info!(
        %cluster,
        agent = %hello.agent_version,
        instance = %hello.instance,
        held = hello.held.len(),
        "agent stream opened"
    );
    let (out, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let ended = CancellationToken::new();
    let reports = BundleReports::new(&cluster, &shared.node.state());
    tokio::spawn(read(
        Arc::clone(&shared),
        inbound,
        reports,
        agent_version(&hello.agent_version),
        Arc::clone(&liveness.heard),
        ended.clone(),
        out.clone(),
    ));
    let writer = Writer::new(shared, &hello, certificate, guard, out, liveness, ended);
    tokio::spawn(write(writer));
    Ok(ReceiverStream::new(rx))
}

/// What a stream that passed every check starts with.
type Admitted = (
    Streaming<AgentMessage>,
    Hello,
    Option<PeerCertificate>,
    StreamGuard,
    Liveness,
);

/// Every check of a new stream, in order: the certificate, the hello, the cluster identity,
/// and the cluster's place (on this node, then in the group).
async fn admit(
    shared: &Shared,
    request: Request<Streaming<AgentMessage>>,
) -> Result<Admitted, Status> {
    let certificate = register::caller(shared, &request)?;
    let mut inbound = request.into_inner();
    let hello = read_hello(shared, &mut inbound, certificate.as_ref()).await?;
    let actor = actor(certificate.as_ref(), &hello.cluster);
    let caller = identity::Caller {
        cluster: &hello.cluster,
        actor: &actor,
    };
    identity::admit(
        shared,
        identity::Call::Hello,
        &caller,
        hello.identity.as_ref(),
    )
    .await?;
    let agent_heartbeat = match hello.heartbeat_interval_ms {
        0 => DEFAULT_AGENT_HEARTBEAT,
        ms => Duration::from_millis(u64::from(ms)).min(MAX_AGENT_HEARTBEAT),
    };
    let liveness = Liveness::new(agent_heartbeat * shared.config.heartbeat_misses.max(1));
    let guard = take_place(shared, &hello, &actor, liveness.clone()).await?;
    Ok((inbound, hello, certificate, guard, liveness))
}

/// How audit events and logs name the agent: by its certificate on a TLS hub, by the cluster
/// its hello names on an insecure one.
fn actor(certificate: Option<&PeerCertificate>, cluster: &str) -> String {
    match certificate {
        Some(certificate) => format!("{AGENT_ACTOR_PREFIX}{}", certificate.identity),
        None => format!("{AGENT_ACTOR_PREFIX}cluster {cluster}"),
    }
}

/// Registers the stream as its cluster's on this node, then asks the leader whether another
/// node serves the cluster to another agent instance; refused while another instance's stream
/// lives (see `streams`).
async fn take_place(
    shared: &Shared,
    hello: &Hello,
    actor: &str,
    liveness: Liveness,
) -> Result<StreamGuard, Status> {
    let cluster = &hello.cluster;
    let holder = match shared.streams.open(cluster, &hello.instance, liveness) {
        Ok(guard) => {
            let claimed = presence::claim(
                &shared.node,
                &shared.leader,
                cluster,
                &hello.instance,
                shared.config.presence_interval,
            )
            .await;
            match claimed {
                Ok(()) => return Ok(guard),
                // Dropping the guard gives the place back.
                Err(refused) => format!("hub node {}", refused.holder),
            }
        }
        Err(held) => format!(
            "this hub node, heard from {} ms ago",
            held.heard_ago.as_millis()
        ),
    };
    shared.counters.stream_held();
    let status = Status::already_exists(format!(
        "another agent already streams for cluster '{cluster}' (through {holder}); one agent \
         serves a cluster at a time. Stop the other one if the cluster runs two, or fix the \
         agent that was pointed at this cluster by mistake; an agent gone silent loses its \
         stream after its heartbeat allowance, and this one is let in then"
    ));
    let refusal = Refusal {
        reason: Reason::StreamHeld,
        actor,
        action: "agent.sync",
        cluster,
    };
    Err(refuse(shared, refusal, status).await)
}

/// The first message, which must be a valid hello for a registered cluster, answered by a node
/// that has caught up with what the agent has already seen.
async fn read_hello(
    shared: &Shared,
    inbound: &mut Streaming<AgentMessage>,
    certificate: Option<&PeerCertificate>,
) -> Result<Hello, Status> {
    let first = tokio::time::timeout(shared.config.hello_timeout, inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no hello within the hello timeout"))??;
    let Some(message) = first else {
        return Err(Status::cancelled("stream closed before the hello"));
    };
    shared.counters.received(&message);
    let Some(agent_message::Kind::Hello(hello)) = message.kind else {
        return Err(Status::invalid_argument(
            "the first message on a sync stream must be a hello",
        ));
    };
    check_hello(&hello)?;
    catch_up(shared, hello.known_index).await?;
    if let Some(certificate) = certificate {
        check_identity(shared, certificate, &hello).await?;
    }
    if !shared.node.state().clusters.contains_key(&hello.cluster) {
        return Err(Status::not_found(format!(
            "cluster '{}' is not registered with this hub; register it (flotilla cluster add {}) \
             or check the agent's --cluster",
            hello.cluster, hello.cluster
        )));
    }
    Ok(hello)
}

/// On a TLS hub the cluster is the verified certificate's, never the hello's: a certificate that
/// no longer stands (cluster removed, serial revoked) is refused, and so is a hello naming
/// another cluster, which is audited as an impersonation attempt.
async fn check_identity(
    shared: &Shared,
    certificate: &PeerCertificate,
    hello: &Hello,
) -> Result<(), Status> {
    let actor = actor(Some(certificate), &hello.cluster);
    let checked =
        register::certificate_cluster(&shared.node.state(), certificate, shared.clock.now());
    let (reason, status) = match checked {
        Ok(cluster) if cluster == hello.cluster => return Ok(()),
        Ok(cluster) => (
            Reason::OtherCluster,
            Status::permission_denied(format!(
                "the hello names cluster '{}', but the agent's certificate is for cluster \
                 '{cluster}'",
                hello.cluster
            )),
        ),
        Err(status) => (Reason::Certificate, status),
    };
    let refusal = Refusal {
        reason,
        actor: &actor,
        action: "agent.sync",
        cluster: &hello.cluster,
    };
    Err(refuse(shared, refusal, status).await)
}

/// The identity and limits a hello declares. On an insecure hub the cluster name is taken from
/// the hello; with TLS, `check_identity` has matched it against the certificate.
fn check_hello(hello: &Hello) -> Result<(), Status> {
    if hello.cluster.is_empty() {
        return Err(Status::invalid_argument("hello names no cluster"));
    }
    let limit = hello.max_message_bytes as usize;
    if limit != 0 && limit < MIN_AGENT_MESSAGE_BYTES {
        return Err(Status::invalid_argument(format!(
            "hello max_message_bytes {limit} is below the minimum of {MIN_AGENT_MESSAGE_BYTES}"
        )));
    }
    // Held hashes that do not parse (a bundle from another source) count as not held: the
    // hub's revision is sent and replaces it.
    Ok(())
}

/// Waits until this node's state is at least as new as what the agent has seen, so a lagging
/// node never sends an agent older bundles. A node that cannot catch up (cut off from the
/// leader) refuses, and the agent tries another.
async fn catch_up(shared: &Shared, known: u64) -> Result<(), Status> {
    let node = &shared.node;
    if known <= node.applied_index() {
        return Ok(());
    }
    let deadline = shared.config.catch_up_timeout;
    let caught_up = async {
        // The group's commit index bounds what the agent can have seen from this group; an
        // index beyond it comes from another (rebuilt) group and is not waited for.
        let target = known.min(node.read_index().await.ok()?);
        node.wait_applied(target).await.ok()
    };
    match tokio::time::timeout(deadline, caught_up).await {
        Ok(Some(_)) => Ok(()),
        _ => Err(Status::unavailable(format!(
            "hub node {} is behind (applied {}, agent has seen {known}); try another node",
            node.id(),
            node.applied_index()
        ))),
    }
}

/// Takes the agent's messages until the stream ends, then ends the writer.
async fn read(
    shared: Arc<Shared>,
    mut inbound: Streaming<AgentMessage>,
    mut reports: BundleReports,
    agent_version: String,
    heard: Arc<Mutex<Instant>>,
    ended: CancellationToken,
    out: Outbound,
) {
    loop {
        let message = tokio::select! {
            _ = ended.cancelled() => break,
            message = inbound.message() => message,
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(%status, "agent stream failed");
                break;
            }
        };
        *heard.lock() = Instant::now();
        shared.counters.received(&message);
        match message.kind {
            Some(agent_message::Kind::Reports(batch)) => {
                if let Some(other) = batch.reports.iter().find(|report| {
                    !report.cluster.is_empty() && report.cluster != reports.cluster()
                }) {
                    let status = Status::permission_denied(format!(
                        "a report for cluster '{}' on the stream of cluster '{}'",
                        other.cluster,
                        reports.cluster()
                    ));
                    let actor = format!("{AGENT_ACTOR_PREFIX}cluster {}", reports.cluster());
                    let refusal = Refusal {
                        reason: Reason::OtherCluster,
                        actor: &actor,
                        action: "agent.report",
                        cluster: &other.cluster,
                    };
                    let status = refuse(&shared, refusal, status).await;
                    let _ = out.send(Err(status)).await;
                    break;
                }
                for report in &batch.reports {
                    match reports.fold(report) {
                        Ok(state) => shared.reports.submit(state),
                        Err(e) => tracing::warn!(error = %e, "agent report ignored"),
                    }
                }
            }
            Some(agent_message::Kind::Ack(ack)) if !ack.error.is_empty() => {
                tracing::warn!(bundle = %ack.bundle, hash = %ack.content_hash, error = %ack.error,
                    "agent refused a bundle");
            }
            Some(agent_message::Kind::Hello(_)) => {
                tracing::warn!("second hello on a sync stream; closing it");
                break;
            }
            Some(agent_message::Kind::ClusterApi(api)) => {
                // Off the read loop: a slow commit must not hold up the agent's other messages.
                tokio::spawn(record_api(
                    Arc::clone(&shared),
                    reports.cluster().to_owned(),
                    api,
                ));
            }
            Some(agent_message::Kind::Capabilities(capabilities)) => {
                // Stamped as it arrives, so of two reports proposed out of order the later
                // one wins.
                let at = shared.clock.now();
                tokio::spawn(record_capabilities(
                    Arc::clone(&shared),
                    reports.cluster().to_owned(),
                    capabilities,
                    agent_version.clone(),
                    at,
                ));
            }
            Some(agent_message::Kind::Ack(_) | agent_message::Kind::Heartbeat(_)) | None => {}
        }
    }
    ended.cancel();
}

/// The version an agent's hello names, as recorded and shown: at most
/// [`crate::state::fleet::MAX_AGENT_VERSION_CHARS`] printable ASCII characters (`?` for others), `unknown` when
/// empty.
fn agent_version(said: &str) -> String {
    let version: String = said
        .chars()
        .take(crate::state::fleet::MAX_AGENT_VERSION_CHARS)
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if version.is_empty() {
        "unknown".to_owned()
    } else {
        version
    }
}

/// Most group versions recorded for a cluster: a cluster serving more is recorded with the
/// first ones (charts that ask for the rest see them missing).
const MAX_API_VERSIONS: usize = 1000;

/// Records what the agent's cluster serves, when that changed.
async fn record_capabilities(
    shared: Arc<Shared>,
    cluster: String,
    said: ClusterCapabilities,
    agent_version: String,
    at: crate::state::Timestamp,
) {
    let cluster = cluster.as_str();
    // What an agent says becomes render input and is shown to people: bounded and checked.
    let printable = |text: &str| {
        !text.is_empty()
            && text.len() <= 253
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '/' | '+' | '_'))
    };
    // A version helm would refuse would fail every revision the cluster's charts are in.
    let semver = said
        .kube_version
        .strip_prefix('v')
        .unwrap_or(&said.kube_version)
        .split(['-', '+'])
        .next()
        .is_some_and(|core| {
            let parts: Vec<&str> = core.split('.').collect();
            (2..=3).contains(&parts.len())
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        });
    if !semver || !printable(&said.kube_version) || !said.api_versions.iter().all(|v| printable(v))
    {
        tracing::warn!(
            cluster,
            "agent sent malformed cluster capabilities; ignored"
        );
        return;
    }
    let mut api_versions = said.api_versions;
    api_versions.sort();
    api_versions.dedup();
    api_versions.truncate(MAX_API_VERSIONS);
    let capabilities = flotilla_core::inventory::Capabilities {
        kube_version: said.kube_version,
        api_versions,
    };
    let known = shared
        .node
        .state()
        .clusters
        .get(cluster)
        .and_then(|c| c.capabilities.clone());
    if known
        .as_ref()
        .is_some_and(|k| k.read == capabilities && k.agent_version == agent_version)
    {
        return;
    }
    let command = Command::SetClusterCapabilities {
        cluster: cluster.to_owned(),
        capabilities,
        agent_version,
        at,
    };
    if let Err(e) = shared.node.propose(&command).await {
        tracing::warn!(cluster, error = %e, "could not record what the cluster serves");
    }
}

/// Records whether the agent reaches its cluster's API server, when that changed.
async fn record_api(shared: Arc<Shared>, cluster: String, api: ClusterApi) {
    let cluster = cluster.as_str();
    let api = ApiReachability {
        reachable: api.reachable,
        since: Timestamp(u64::try_from(api.since_ms).unwrap_or(0)),
        // An agent's error text is shown to people: bounded like its other messages.
        error: api.error.chars().take(1000).collect(),
    };
    let known = shared
        .node
        .state()
        .clusters
        .get(cluster)
        .and_then(|c| c.api.clone());
    if known.as_ref() == Some(&api) {
        return;
    }
    if !api.reachable {
        tracing::warn!(cluster, error = %api.error, "agent cannot reach its cluster's API server");
    }
    let command = Command::SetClusterApi {
        cluster: cluster.to_owned(),
        api,
    };
    if let Err(e) = shared.node.propose(&command).await {
        tracing::warn!(cluster, error = %e, "could not record whether the cluster's API answers");
    }
}

/// The sending side of a stream, and what the agent holds as far as it knows: the hello's
/// bundles, plus what was sent since.
struct Writer {
    shared: Arc<Shared>,
    cluster: String,
    certificate: Option<PeerCertificate>,
    out: Outbound,
    held: BTreeMap<String, ContentHash>,
    chunk_size: usize,
    guard: StreamGuard,
    ended: CancellationToken,
    heard: Arc<Mutex<Instant>>,
    silence_limit: Duration,
}

/// Why a writer stops.
enum End {
    /// The agent went away or the stream was replaced: nothing more to say.
    Quiet,
    /// Tell the agent why.
    Status(Status),
}

impl Writer {
    fn new(
        shared: Arc<Shared>,
        hello: &Hello,
        certificate: Option<PeerCertificate>,
        guard: StreamGuard,
        out: Outbound,
        liveness: Liveness,
        ended: CancellationToken,
    ) -> Writer {
        Writer {
            cluster: hello.cluster.clone(),
            certificate,
            out,
            held: hello
                .held
                .iter()
                .filter_map(|h| Some((h.name.clone(), h.content_hash.parse().ok()?)))
                .collect(),
            chunk_size: chunk::chunk_size(
                shared.config.max_chunk_bytes,
                hello.max_message_bytes as usize,
            ),
            shared,
            guard,
            ended,
            heard: liveness.heard,
            silence_limit: liveness.silence_limit,
        }
    }
}

/// Sends the welcome and what differs, then pushes changes and heartbeats until the stream
/// ends.
async fn write(mut writer: Writer) {
    let shared = Arc::clone(&writer.shared);
    let mut applied = shared.node.watch_applied();
    applied.mark_unchanged();
    let mut heartbeat = tokio::time::interval(shared.config.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let mut end = writer.welcome().await;
    while end.is_none() {
        end = tokio::select! {
            end = writer.interrupted() => Some(end),
            changed = applied.changed() => match changed {
                Ok(()) => writer.push().await,
                Err(_) => Some(End::Status(Status::unavailable("hub node stopped"))),
            },
            _ = heartbeat.tick() => match writer.silent() {
                Some(end) => Some(end),
                None => writer.heartbeat().await,
            },
        };
    }
    if let Some(End::Status(status)) = end {
        // Best effort: the agent may already be gone.
        let _ = tokio::time::timeout(writer.silence_limit, writer.out.send(Err(status))).await;
    }
    writer.ended.cancel();
    tracing::info!(cluster = %writer.cluster, "agent stream closed");
}

/// The bundles a cluster must hold, read under one short state lock; their blobs are read from
/// the node's content store as they are sent.
struct Desired {
    index: u64,
    revision: Option<String>,
    bundles: BTreeMap<String, ContentHash>,
}

impl Desired {
    /// `None` when the cluster is no longer registered.
    fn read(state: &State, index: u64, cluster: &str) -> Option<Desired> {
        let registered = state.clusters.get(cluster)?;
        let revision = registered.assigned.as_ref().map(|r| r.commit.clone());
        let bundles = state.desired_bundles(cluster);
        Some(Desired {
            index,
            revision,
            bundles,
        })
    }
}

impl Writer {
    /// Resolves when the stream must end for a reason other than what the writer sends: the
    /// reader saw the end, a newer stream of the cluster replaced this one, or the node stops.
    async fn interrupted(&self) -> End {
        tokio::select! {
            _ = self.ended.cancelled() => End::Quiet,
            _ = self.guard.replaced.cancelled() => End::Quiet,
            _ = self.shared.stop.cancelled() => End::Status(Status::unavailable(
                "hub node is shutting down; reconnect to another node",
            )),
        }
    }

    /// `Some` when the agent has been silent past the limit: it is gone without closing.
    fn silent(&self) -> Option<End> {
        if self.heard.lock().elapsed() <= self.silence_limit {
            return None;
        }
        self.shared.counters.stream_timed_out();
        tracing::info!(cluster = %self.cluster, silence_limit = ?self.silence_limit,
            "agent silent for too long; closing its stream");
        Some(End::Status(Status::deadline_exceeded(
            "no message from the agent within its heartbeat allowance",
        )))
    }

    /// Queues one message. A send blocked by a peer that stopped reading gives up once the
    /// agent has also been silent past the limit.
    async fn send(&self, message: HubMessage) -> Option<End> {
        self.shared.counters.sent(&message);
        let send = self.out.send(Ok(message));
        tokio::pin!(send);
        let check = self.shared.config.heartbeat_interval;
        loop {
            tokio::select! {
                sent = &mut send => return sent.err().map(|_| End::Quiet),
                end = self.interrupted() => return Some(end),
                () = tokio::time::sleep(check) => {
                    if let Some(end) = self.silent() {
                        return Some(end);
                    }
                }
            }
        }
    }

    fn desired(&self) -> Result<Desired, End> {
        let state = self.shared.node.state();
        let index = state.applied();
        // Checked at every state change, so a removed cluster's stream (or one whose
        // certificate was revoked) ends as soon as this node applies the change.
        if let Some(certificate) = &self.certificate
            && let Err(status) =
                register::certificate_cluster(&state, certificate, self.shared.clock.now())
        {
            return Err(End::Status(status));
        }
        Desired::read(&state, index, &self.cluster).ok_or_else(|| {
            End::Status(Status::permission_denied(format!(
                "cluster '{}' was removed from the fleet",
                self.cluster
            )))
        })
    }

    /// The desired set, then every bundle whose hash differs from what the agent holds.
    async fn welcome(&mut self) -> Option<End> {
        let desired = match self.desired() {
            Ok(desired) => desired,
            Err(end) => return Some(end),
        };
        let welcome = Welcome {
            node: self.shared.node.id(),
            index: desired.index,
            heartbeat_interval_ms: u32::try_from(self.shared.config.heartbeat_interval.as_millis())
                .unwrap_or(u32::MAX),
            assigned: desired.revision.is_some(),
            revision: desired.revision.clone().unwrap_or_default(),
            desired: desired
                .bundles
                .iter()
                .map(|(name, hash)| HeldBundle {
                    name: name.clone(),
                    content_hash: hash.to_string(),
                })
                .collect(),
        };
        if let Some(end) = self
            .send(HubMessage {
                kind: Some(hub_message::Kind::Welcome(welcome)),
            })
            .await
        {
            return Some(end);
        }
        if desired.revision.is_some() {
            // The agent removes what is not desired itself, from the welcome.
            self.held
                .retain(|name, _| desired.bundles.contains_key(name));
        }
        self.send_bundles(&desired).await
    }

    /// What changed since the last push: new bundle revisions, then removals.
    async fn push(&mut self) -> Option<End> {
        let desired = match self.desired() {
            Ok(desired) => desired,
            Err(end) => return Some(end),
        };
        // Nothing assigned (yet): the agent keeps what it holds.
        desired.revision.as_ref()?;
        if let Some(end) = self.send_bundles(&desired).await {
            return Some(end);
        }
        let removed: Vec<String> = self
            .held
            .keys()
            .filter(|name| !desired.bundles.contains_key(*name))
            .cloned()
            .collect();
        for bundle in removed {
            self.held.remove(&bundle);
            let removal = BundleRemoval {
                bundle,
                index: desired.index,
            };
            if let Some(end) = self
                .send(HubMessage {
                    kind: Some(hub_message::Kind::Removal(removal)),
                })
                .await
            {
                return Some(end);
            }
        }
        None
    }

    async fn send_bundles(&mut self, desired: &Desired) -> Option<End> {
        let revision = desired.revision.clone().unwrap_or_default();
        for (name, hash) in &desired.bundles {
            if self.held.get(name) == Some(hash) {
                continue;
            }
            let blob = match self.shared.node.blob(hash).await {
                Ok(blob) => blob,
                Err(error) => {
                    // A majority held it before its hash was proposed, so some node of any
                    // quorum has it; meanwhile the agent keeps what it holds, and the bundle is
                    // sent when the state next changes or the stream reconnects.
                    tracing::error!(bundle = %name, %hash, %error, "cannot read the desired bundle's blob");
                    continue;
                }
            };
            for message in chunk::chunks(name, &revision, &blob, desired.index, self.chunk_size) {
                if let Some(end) = self.send(message).await {
                    return Some(end);
                }
            }
            self.held.insert(name.clone(), *hash);
        }
        None
    }

    async fn heartbeat(&self) -> Option<End> {
        if let Some(certificate) = &self.certificate
            && let Err(status) = register::certificate_cluster(
                &self.shared.node.state(),
                certificate,
                self.shared.clock.now(),
            )
        {
            return Some(End::Status(status));
        }
        let sent_at_ms = i64::try_from(self.shared.clock.now().0).unwrap_or(i64::MAX);
        self.send(HubMessage {
            kind: Some(hub_message::Kind::Heartbeat(
                flotilla_proto::v1::Heartbeat { sent_at_ms },
            )),
        })
        .await
    }
}
