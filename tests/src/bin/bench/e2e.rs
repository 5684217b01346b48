//! From a push webhook to every agent's report of the new revision applied, the whole chain in
//! one process: a single-node hub following a local Git repository (poll interval one hour, so
//! only webhooks bring commits in), a simulator serving N clusters, and N agents — each an
//! engine with its own Kubernetes client for its cluster and its own gRPC link to the hub, as
//! `flotilla-agent run` builds them. As in production the hub runs TLS on every listener with
//! its own CA and checks tokens, each agent registers with a bootstrap token and streams with
//! its client certificate, and webhooks arrive over HTTPS signed with the hub's secret;
//! `--insecure` runs the same without TLS, tokens or signatures, for comparison. Every cluster's bundle holds a Namespace and M-1
//! ConfigMaps carrying per-cluster values, so each commit gives every cluster a new render.
//!
//! Each round commits a change, POSTs a GitHub-style webhook and times:
//! - `webhookToApplied`: until the hub's replicated state holds, for every cluster, the agent's
//!   report that the new content hash is applied (what `flotilla status` shows as applied);
//! - `webhookToAppliedAtAgents`: until every engine has published `Applied` for it;
//! - `webhookToAssigned`: until every cluster is assigned the new revision;
//! - `webhookToRolloutCompleted`: until the stage's rollout counts as completed, which includes
//!   the rollout controller's settle time (each cluster Healthy at the target for a while). The
//!   next round starts only then, so every round starts from a settled fleet.
//!
//! The floor, measured in the same run on the same machine, one step at a time: one fetch of a
//! new commit into a mirror, one load and render of one bundle for one cluster, one gRPC round
//! trip to the hub, one apply of one bundle by an engine to a simulated cluster; and their sum.
//!
//! Above `--per-process` clusters (500 by default) the agents run in worker processes
//! (`bench e2e-agents`, fed their share on stdin; each engine's `Applied` comes back as a JSON
//! line with the wall-clock time), so that no process nears the 20,000-descriptor limit: an
//! agent holds a stream to the hub and several connections (requests, watches) to its cluster,
//! and every one of those has a peer in the hub's or the simulator's process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_agent::{BundleRevision, DriftMode, Engine, EngineConfig, Event, Report, SystemClock};
use flotilla_core::inventory::Cluster;
use flotilla_core::{Limits, Repository, Tools};
use flotilla_hub::config::{NodeConfig, SecurityConfig, TlsSettings};
use flotilla_hub::controller::source::{SourceConfig, SourceMirror};
use flotilla_hub::node::GroupClient;
use flotilla_hub::server::{DEFAULT_BOOTSTRAP_TOKEN_TTL, Hub, HubConfig};
use flotilla_hub::state::health::HealthKey;
use flotilla_hub::state::rollout::RolloutStatus;
use flotilla_sim::{Sim, SimConfig};
use flotilla_testkit::git::GitRepo;
use flotilla_testkit::http::{WebhookAccess, push_webhook};
use flotilla_testkit::linked_agent::{AgentAccess, LinkedAgent, shutdown_all};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::common::{Worker, emit, spawn_worker};

/// Options of `bench e2e`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Clusters, each with its own agent.
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Objects in each cluster's bundle: a Namespace and ConfigMaps.
    #[arg(long, default_value_t = 10)]
    objects: usize,
    /// Commits measured.
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Run the hub and the agents with `--insecure` (no TLS, tokens or webhook signatures).
    #[arg(long)]
    insecure: bool,
    /// Agents in one process: with more clusters, they run in worker processes of this many.
    #[arg(long, default_value_t = 500)]
    per_process: usize,
}

/// What a worker process (`bench e2e-agents`) runs: agents for some clusters.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct AgentsPlan {
    /// The hub's Agent API addresses.
    hubs: Vec<String>,
    /// The group CA's certificate (PEM), unless the hub runs `--insecure`.
    ca_pem: Option<String>,
    /// Where the agents keep their credentials, one directory per cluster.
    state_root: std::path::PathBuf,
    /// The agents.
    agents: Vec<PlannedAgent>,
}

/// One agent of a worker.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PlannedAgent {
    cluster: String,
    /// Its simulated cluster's Kubernetes API.
    url: String,
    /// Its one-time bootstrap token (TLS only).
    token: Option<String>,
}

/// The secret the hub verifies webhooks with, when secure.
const WEBHOOK_SECRET: &str = "bench-webhook-secret";

/// The one bundle every cluster gets.
const BUNDLE: &str = "app";

/// How long any one wait may take before the bench gives up.
const STALL: Duration = Duration::from_secs(120);

fn spec(round: usize) -> String {
    format!(
        "apiVersion: flotilla.dev/v1\nkind: Fleet\nstages:\n  - name: all\n    track: {{branch: main}}\n\
         bundles:\n  - name: {BUNDLE}\n    path: app\n    namespace: bench\n    variables: {{round: \"{round}\"}}\n"
    )
}

fn manifests(objects: usize) -> String {
    let mut documents =
        vec!["apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench\n".to_owned()];
    for i in 1..objects.max(2) {
        documents.push(format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{i}\ndata:\n  cluster: ${{cluster.name}}\n  zone: ${{cluster.labels.zone}}\n  round: \"${{round}}\"\n"
        ));
    }
    documents.join("---\n")
}

fn cluster_name(i: usize) -> String {
    format!("c-{i:04}")
}

fn inventory(clusters: usize) -> String {
    let mut text = "apiVersion: flotilla.dev/v1\nkind: ClusterInventory\nclusters:\n".to_owned();
    for i in 0..clusters {
        text.push_str(&format!(
            "  - name: {}\n    labels: {{zone: z{}}}\n",
            cluster_name(i),
            i % 7
        ));
    }
    text
}

fn commit(repo: &GitRepo, round: usize, objects: usize) -> anyhow::Result<String> {
    repo.write("flotilla.yaml", &spec(round))?;
    repo.write("app/objects.yaml", &manifests(objects))?;
    repo.commit(&format!("round {round}"))
}

fn kube_client(sim: &Sim, cluster: &str) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(kube::Config::new(
        sim.cluster_url(cluster).parse()?,
    ))?)
}

/// A single-node hub following `source` and registering `inventory_file`'s clusters: with TLS
/// on every listener (its own CA), tokens and a webhook secret, unless `insecure`.
pub(crate) async fn start_hub(
    data: &std::path::Path,
    inventory_file: std::path::PathBuf,
    source: &SourceConfig,
    insecure: bool,
) -> anyhow::Result<(Hub, WebhookAccess)> {
    let mut node = NodeConfig::new(1, data.join("node"), "127.0.0.1:0");
    if !insecure {
        node.security = SecurityConfig::Tls(TlsSettings::new());
    }
    let mut config = HubConfig::new(node);
    config.api_listen = "127.0.0.1:0".into();
    config.http_listen = "127.0.0.1:0".into();
    config.clusters_file = Some(inventory_file);
    config.revision_retention = 3;
    config.source = Some(source.clone());
    config.authenticate = !insecure;
    if !insecure {
        config.webhook_secret = Some(WEBHOOK_SECRET.to_owned());
    }
    let hub = Hub::start(config).await?;
    let webhook = if insecure {
        WebhookAccess::Plain
    } else {
        WebhookAccess::Tls {
            ca_file: hub.node().data_dir().join(flotilla_hub::node::CA_FILE),
            secret: WEBHOOK_SECRET.to_owned(),
        }
    };
    Ok((hub, webhook))
}

/// Every cluster's agent as a worker or this process starts it: on a secure hub, once the
/// leader has registered the inventory, each with a bootstrap token issued as `flotilla cluster
/// token` issues it.
async fn plan_agents(
    hub: &Hub,
    sim: &Sim,
    names: &[String],
    state_root: &std::path::Path,
) -> anyhow::Result<AgentsPlan> {
    let hubs = vec![hub.api_address().to_string()];
    let Some(tls) = hub.node().security().tls() else {
        let agents = names
            .iter()
            .map(|name| PlannedAgent {
                cluster: name.clone(),
                url: sim.cluster_url(name),
                token: None,
            })
            .collect();
        return Ok(AgentsPlan {
            hubs,
            ca_pem: None,
            state_root: state_root.to_owned(),
            agents,
        });
    };
    let mut applied = hub.node().watch_applied();
    while !names
        .iter()
        .all(|n| hub.node().state().clusters.contains_key(n))
    {
        tokio::time::timeout(STALL, applied.changed())
            .await
            .context("the inventory was not registered within 120 s")??;
    }
    let clock = flotilla_hub::clock::system();
    let mut agents = Vec::with_capacity(names.len());
    for name in names {
        let issued = flotilla_hub::sync::register::issue_bootstrap_token(
            hub.node(),
            clock.as_ref(),
            name,
            DEFAULT_BOOTSTRAP_TOKEN_TTL,
        )
        .await?;
        agents.push(PlannedAgent {
            cluster: name.clone(),
            url: sim.cluster_url(name),
            token: Some(issued.token.reveal().to_owned()),
        });
    }
    Ok(AgentsPlan {
        hubs,
        ca_pem: Some(tls.ca_pem().to_owned()),
        state_root: state_root.to_owned(),
        agents,
    })
}

/// Starts the agents of a plan in this process.
async fn start_agents(plan: &AgentsPlan) -> anyhow::Result<Vec<LinkedAgent>> {
    let mut agents = Vec::with_capacity(plan.agents.len());
    for agent in &plan.agents {
        let state_dir = plan.state_root.join(&agent.cluster);
        let access = match (&plan.ca_pem, &agent.token) {
            (Some(ca_pem), Some(token)) => AgentAccess::Tls {
                ca_pem,
                token,
                state_dir: &state_dir,
            },
            _ => AgentAccess::Insecure,
        };
        agents.push(
            LinkedAgent::start_at(&agent.url, &agent.cluster, plan.hubs.clone(), access).await?,
        );
    }
    Ok(agents)
}

/// `bench e2e-agents`: runs the agents of the plan read on stdin, printing `{"started": N}`
/// once all run, then `{"cluster", "hash", "atMs"}` for each `Applied` of an engine, until
/// killed.
pub(crate) async fn agents() -> anyhow::Result<()> {
    use std::io::BufRead;
    let mut input = String::new();
    std::io::stdin().lock().read_line(&mut input)?;
    let plan: AgentsPlan = serde_json::from_str(&input).context("the plan on stdin")?;
    let agents = start_agents(&plan).await?;
    for agent in &agents {
        let mut reports = agent.engine.subscribe();
        let cluster = agent.cluster.clone();
        let engine = agent.engine.clone();
        tokio::spawn(async move {
            let applied = |hash: &str| {
                emit(&json!({
                    "cluster": cluster,
                    "hash": hash,
                    "atMs": flotilla_testkit::swarm::now_ms(),
                }));
            };
            loop {
                match reports.recv().await {
                    Ok(report) if matches!(report.event, Event::Applied { .. }) => {
                        applied(&report.content_hash);
                    }
                    Ok(_) => {}
                    // Reports were missed: what the engine holds applied says what they were.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for bundle in engine.status() {
                            if bundle.name == BUNDLE
                                && let Some(hash) = &bundle.applied_hash
                            {
                                applied(hash);
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
    emit(&json!({"started": agents.len()}));
    std::future::pending::<()>().await;
    Ok(())
}

/// The fleet's agents: in this process, or in worker processes reporting by lines.
enum Agents {
    Here(Vec<LinkedAgent>),
    Workers {
        workers: Vec<Worker>,
        lines: tokio::sync::mpsc::UnboundedReceiver<(usize, Value)>,
        /// Per cluster, the last hash its engine reported Applied and when (ms since the
        /// epoch).
        applied: std::collections::HashMap<String, (String, i64)>,
    },
}

impl Agents {
    /// Starts the plan's agents here, or in workers of `per_process` agents each when there
    /// are more.
    async fn start(plan: AgentsPlan, per_process: usize) -> anyhow::Result<Agents> {
        if plan.agents.len() <= per_process {
            return Ok(Agents::Here(start_agents(&plan).await?));
        }
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        let AgentsPlan {
            hubs,
            ca_pem,
            state_root,
            agents,
        } = plan;
        let mut workers = Vec::new();
        let mut shares = agents.into_iter().peekable();
        while shares.peek().is_some() {
            let share = AgentsPlan {
                hubs: hubs.clone(),
                ca_pem: ca_pem.clone(),
                state_root: state_root.clone(),
                agents: shares.by_ref().take(per_process.max(1)).collect(),
            };
            workers.push(spawn_worker(
                "e2e-agents",
                workers.len(),
                &share,
                tx.clone(),
            )?);
        }
        drop(tx);
        let mut started = 0;
        while started < workers.len() {
            let (_, line) = tokio::time::timeout(STALL, lines.recv())
                .await
                .context("the agent workers did not start within 120 s")?
                .context("an agent worker exited")?;
            if line.get("started").is_some() {
                started += 1;
            }
        }
        Ok(Agents::Workers {
            workers,
            lines,
            applied: std::collections::HashMap::new(),
        })
    }

    /// Resident memory of the worker processes, in MiB (none when the agents run here).
    fn workers_rss_mib(&self) -> Vec<u64> {
        match self {
            Agents::Here(_) => Vec::new(),
            Agents::Workers { workers, .. } => workers
                .iter()
                .filter_map(|w| {
                    let status =
                        std::fs::read_to_string(format!("/proc/{}/status", w.pid())).ok()?;
                    let kib: u64 = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()?;
                    Some(kib / 1024)
                })
                .collect(),
        }
    }

    /// CPU time the worker processes have used (zero when the agents run here).
    fn workers_cpu_time(&self) -> Duration {
        match self {
            Agents::Here(_) => Duration::ZERO,
            Agents::Workers { workers, .. } => workers
                .iter()
                .map(|w| process_cpu_time(&w.pid().to_string()))
                .sum(),
        }
    }

    async fn shutdown(self) {
        if let Agents::Here(agents) = self {
            shutdown_all(agents).await;
        }
    }
}

/// Waits until every cluster is assigned `commit`; returns each cluster's desired hash of the
/// bundle.
async fn assigned(hub: &Hub, commit: &str, clusters: usize) -> anyhow::Result<Vec<String>> {
    let mut applied = hub.node().watch_applied();
    loop {
        {
            let state = hub.node().state();
            let done = state.clusters.len() == clusters
                && state
                    .clusters
                    .values()
                    .all(|c| c.assigned.as_ref().is_some_and(|r| r.commit == commit));
            if done {
                return (0..clusters)
                    .map(|i| {
                        state
                            .desired_bundles(&cluster_name(i))
                            .get(BUNDLE)
                            .map(ToString::to_string)
                            .context("an assigned cluster without the bundle")
                    })
                    .collect();
            }
        }
        tokio::time::timeout(STALL, applied.changed())
            .await
            .context("no assignment progress for 120 s")??;
    }
}

/// Waits until the hub's state records every cluster's report of its desired hash applied.
async fn applied_in_hub(hub: &Hub, desired: &[String]) -> anyhow::Result<()> {
    let mut applied = hub.node().watch_applied();
    loop {
        {
            let state = hub.node().state();
            let done = desired.iter().enumerate().all(|(i, hash)| {
                let key = HealthKey {
                    cluster: cluster_name(i),
                    bundle: BUNDLE.to_owned(),
                };
                state
                    .health
                    .get(&key)
                    .and_then(|r| r.applied.as_ref())
                    .is_some_and(|h| h.to_string() == *hash)
            });
            if done {
                return Ok(());
            }
        }
        tokio::time::timeout(STALL, applied.changed())
            .await
            .context("no applied reports for 120 s")??;
    }
}

/// Waits until the stage's rollout of `commit` completed (every cluster healthy at it for the
/// rollout controller's settle time), so the next round starts from a settled fleet.
async fn rollout_completed(hub: &Hub, commit: &str) -> anyhow::Result<()> {
    let mut applied = hub.node().watch_applied();
    loop {
        {
            let state = hub.node().state();
            let done = state
                .rollouts
                .values()
                .any(|r| r.to.commit == commit && r.status == RolloutStatus::Completed);
            if done {
                return Ok(());
            }
        }
        tokio::time::timeout(STALL, applied.changed())
            .await
            .context("the rollout did not complete within 120 s")??;
    }
}

/// When the engine publishes `Applied` for `hash` (or already holds it applied).
async fn engine_applied(
    engine: &Engine,
    reports: &mut broadcast::Receiver<Report>,
    hash: &str,
) -> anyhow::Result<Instant> {
    loop {
        match tokio::time::timeout(STALL, reports.recv()).await? {
            Ok(report)
                if report.content_hash == hash && matches!(report.event, Event::Applied { .. }) =>
            {
                return Ok(Instant::now());
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let done = engine
                    .status()
                    .iter()
                    .any(|b| b.name == BUNDLE && b.applied_hash.as_deref() == Some(hash));
                if done {
                    return Ok(Instant::now());
                }
            }
            Err(broadcast::error::RecvError::Closed) => bail!("an engine stopped"),
        }
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    (sorted[index] * 10.0).round() / 10.0
}

pub(crate) fn summary(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    if samples.is_empty() {
        return json!({"samples": 0});
    }
    json!({
        "samples": samples.len(),
        "p50": percentile(&samples, 0.5),
        "p99": percentile(&samples, 0.99),
        "max": percentile(&samples, 1.0),
    })
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        0.0
    } else {
        percentile(&sorted, 0.5)
    }
}

/// This process's resident memory now and at its peak, in MiB.
fn memory() -> Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib / 1024)
    };
    json!({"rssMiB": field("VmRSS:"), "peakRssMiB": field("VmHWM:")})
}

/// CPU time this process has used (user and system, every thread), from `/proc/self/stat`,
/// whose clock ticks are Linux's fixed `USER_HZ` of 100 per second.
fn cpu_time() -> Duration {
    process_cpu_time("self")
}

/// CPU time a process has used (user and system, every thread); `pid` is a number or `self`.
fn process_cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Requests every simulated cluster of the fleet answered so far, by kind of request.
fn requests(sim: &Sim, names: &[String]) -> [u64; 4] {
    let mut sum = [0; 4];
    for name in names {
        if let Some(c) = sim.request_counts(name) {
            for (total, n) in sum
                .iter_mut()
                .zip([c.total, c.apply, c.dry_run, c.get + c.list])
            {
                *total += n;
            }
        }
    }
    sum
}

/// One apply of one bundle by an engine of its own, from the call to its `Applied` report.
struct ApplyFloor {
    engine: Engine,
    reports: broadcast::Receiver<Report>,
    cluster: Cluster,
}

impl ApplyFloor {
    async fn measure(&mut self, repo: &GitRepo, round: usize) -> anyhow::Result<(f64, f64)> {
        let tools = Tools::discover();
        let started = Instant::now();
        let loaded =
            Repository::load(repo.path(), Limits::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let rendered = flotilla_core::render_bundle(&loaded, BUNDLE, &self.cluster, &tools)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let render = millis(started.elapsed());
        let hash = rendered.hash().to_string();
        let revision = BundleRevision {
            allow: Default::default(),
            name: BUNDLE.to_owned(),
            revision: format!("floor-{round}"),
            content_hash: hash.clone(),
            namespace: "default".to_owned(),
            drift: DriftMode::Correct,
            objects: rendered.objects.into_iter().map(|o| o.object).collect(),
        };
        let started = Instant::now();
        self.engine.apply(revision)?;
        let done = engine_applied(&self.engine, &mut self.reports, &hash).await?;
        Ok((render, millis(done - started)))
    }
}

/// Runs the measurement.
pub(crate) async fn run(args: Args) -> anyhow::Result<Value> {
    let repo = GitRepo::new()?;
    let first = commit(&repo, 0, args.objects)?;
    let names: Vec<String> = (0..args.clusters).map(cluster_name).collect();

    let sim = Sim::start(SimConfig {
        clusters: 0,
        ..SimConfig::default()
    })
    .await?;
    for name in &names {
        sim.add_cluster(name)?;
    }
    sim.add_cluster("floor")?;

    let data = tempfile::tempdir()?;
    let inventory_file = data.path().join("clusters.yaml");
    std::fs::write(&inventory_file, inventory(args.clusters))?;
    let mut source = SourceConfig::new(repo.url(), "main");
    source.poll_interval = Duration::from_secs(3600);
    let (hub, webhook) = start_hub(data.path(), inventory_file, &source, args.insecure).await?;
    let plan = plan_agents(&hub, &sim, &names, &data.path().join("agents")).await?;
    let mut agents = Agents::start(plan, args.per_process).await?;
    let desired = assigned(&hub, &first, args.clusters).await?;
    // The first revision is pinned to every stage without a rollout: there is none to wait for.
    applied_in_hub(&hub, &desired).await?;

    let requests_before = requests(&sim, &names);
    let mut cpu_while_applying = Duration::ZERO;
    let mut workers_cpu_while_applying = Duration::ZERO;
    let mut to_applied = Vec::new();
    let mut at_agents = Vec::new();
    let mut to_assigned = Vec::new();
    let mut to_completed = Vec::new();
    for round in 1..=args.rounds {
        let mut reports: Vec<_> = match &agents {
            Agents::Here(agents) => agents.iter().map(|a| a.engine.subscribe()).collect(),
            Agents::Workers { .. } => Vec::new(),
        };
        let commit = commit(&repo, round, args.objects)?;
        let started = Instant::now();
        let started_ms = flotilla_testkit::swarm::now_ms();
        let cpu_started = cpu_time();
        let workers_cpu_started = agents.workers_cpu_time();
        push_webhook(hub.http_address(), &webhook, &commit).await?;
        let desired = assigned(&hub, &commit, args.clusters).await?;
        to_assigned.push(millis(started.elapsed()));
        match &mut agents {
            Agents::Here(agents) => {
                let waits =
                    agents.iter().zip(reports.iter_mut()).zip(&desired).map(
                        |((agent, reports), hash)| engine_applied(&agent.engine, reports, hash),
                    );
                let applied_at = futures::future::try_join_all(waits).await?;
                let last = applied_at.into_iter().max().context("no agents")?;
                at_agents.push(millis(last - started));
            }
            Agents::Workers { lines, applied, .. } => {
                let last = applied_by_workers(lines, applied, &names, &desired).await?;
                at_agents.push((last - started_ms) as f64);
            }
        }
        applied_in_hub(&hub, &desired).await?;
        to_applied.push(millis(started.elapsed()));
        cpu_while_applying += cpu_time().saturating_sub(cpu_started);
        workers_cpu_while_applying += agents
            .workers_cpu_time()
            .saturating_sub(workers_cpu_started);
        rollout_completed(&hub, &commit).await?;
        to_completed.push(millis(started.elapsed()));
    }

    let applying_wall: f64 = to_applied.iter().sum::<f64>() / 1000.0;
    let requests_after = requests(&sim, &names);
    let per_revision = |i: usize| {
        let n = requests_after[i] - requests_before[i];
        (n as f64 / (args.rounds * args.clusters).max(1) as f64 * 10.0).round() / 10.0
    };
    let load = json!({
        // From each webhook to its revision applied in the hub, summed over the rounds.
        "wallSecondsApplying": (applying_wall * 10.0).round() / 10.0,
        "cpuSecondsApplying": (cpu_while_applying.as_secs_f64() * 10.0).round() / 10.0,
        // The agent worker processes', when the agents run in them.
        "agentWorkersCpuSecondsApplying":
            (workers_cpu_while_applying.as_secs_f64() * 10.0).round() / 10.0,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "kubernetesRequestsPerClusterPerRevision": {
            "total": per_revision(0),
            "apply": per_revision(1),
            "dryRun": per_revision(2),
            "getOrList": per_revision(3),
        },
    });

    // The floor: each step once per round, after the rounds, one at a time.
    let side = tempfile::tempdir()?;
    let mirror = SourceMirror::open(side.path(), &source)?;
    mirror.fetch(&source)?;
    // The hub's own identity: its peer listener wants a certificate of the group's CA.
    let mut group = GroupClient::with_security(hub.node().address(), hub.node().security())?;
    group.status().await?;
    let engine = Engine::start(
        kube_client(&sim, "floor")?,
        EngineConfig::default(),
        Arc::new(SystemClock),
    )?;
    let mut floor = ApplyFloor {
        reports: engine.subscribe(),
        engine,
        cluster: Cluster::new("floor", [("zone", "z0")]),
    };
    let (mut fetches, mut renders, mut trips, mut applies) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        commit(&repo, args.rounds + round, args.objects)?;
        let started = Instant::now();
        mirror.fetch(&source)?;
        fetches.push(millis(started.elapsed()));
        let started = Instant::now();
        group.status().await?;
        trips.push(millis(started.elapsed()));
        let (render, apply) = floor.measure(&repo, round).await?;
        renders.push(render);
        applies.push(apply);
    }
    let floor_sum = median(&fetches) + median(&renders) + median(&trips) + median(&applies);
    let memory = memory();

    let workers_rss = agents.workers_rss_mib();
    floor.engine.shutdown().await;
    agents.shutdown().await;
    hub.shutdown().await;
    sim.shutdown().await;

    Ok(json!({
        "bench": "e2e",
        "transport": if args.insecure { "plain (--insecure)" } else { "TLS: agents with client certificates, webhooks over HTTPS signed" },
        "clusters": args.clusters,
        "objectsPerCluster": args.objects.max(2),
        "rounds": args.rounds,
        "unit": "ms",
        "webhookToApplied": summary(to_applied),
        "webhookToAppliedAtAgents": summary(at_agents),
        "webhookToAssigned": summary(to_assigned),
        "webhookToRolloutCompleted": summary(to_completed),
        // The targets: 1 s at a hundred clusters, 3 s at a thousand (on 2 cores).
        "targetP99": if args.clusters >= 1000 { 3000 } else { 1000 },
        "floor": {
            "fetch": summary(fetches),
            "renderOneBundle": summary(renders),
            "grpcRoundTrip": summary(trips),
            "applyOneBundle": summary(applies),
            "sumOfMedians": (floor_sum * 10.0).round() / 10.0,
        },
        "load": load,
        "memory": memory,
        "agentProcesses": workers_rss.len().max(1),
        "agentWorkersRssMiB": workers_rss,
    }))
}

/// Waits until the workers have reported every cluster's desired hash Applied; returns when
/// the last one was (ms since the epoch).
async fn applied_by_workers(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<(usize, Value)>,
    applied: &mut std::collections::HashMap<String, (String, i64)>,
    names: &[String],
    desired: &[String],
) -> anyhow::Result<i64> {
    loop {
        let done = names
            .iter()
            .zip(desired)
            .try_fold(0i64, |last, (name, hash)| {
                applied
                    .get(name)
                    .filter(|(held, _)| held == hash)
                    .map(|(_, at)| last.max(*at))
            });
        if let Some(last) = done {
            return Ok(last);
        }
        let (_, line) = tokio::time::timeout(STALL, lines.recv())
            .await
            .context("no Applied from the agents for 120 s")?
            .context("an agent worker exited")?;
        if let (Some(cluster), Some(hash), Some(at)) = (
            line["cluster"].as_str(),
            line["hash"].as_str(),
            line["atMs"].as_i64(),
        ) {
            applied.insert(cluster.to_owned(), (hash.to_owned(), at));
        }
    }
}
