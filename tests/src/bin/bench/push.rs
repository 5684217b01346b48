//! From a push to every cluster assigned, inside one hub: a single-node hub follows a local Git
//! repository (poll interval one hour, so only webhooks bring commits in) with N clusters whose
//! bundle holds M ConfigMaps carrying per-cluster values. Each round commits a change, POSTs a
//! GitHub-style webhook and waits until every cluster is assigned the new revision (fetch,
//! render for every cluster, the render and assignment commands committed). As in production
//! the hub runs TLS on every listener and the webhook arrives over HTTPS, signed with the hub's
//! secret; `--insecure` runs the same over plain HTTP, unsigned, for comparison.
//!
//! Figures (milliseconds): `webhookToAssigned` per round; `webhookAnswered` (the webhook's
//! `RequestFetch` proposed and applied: one raft round); `renderFleet`, the same render done
//! in-process on a checkout, alone; `fetch`, one new commit fetched into a second mirror. Agents
//! are not involved: their part is measured by `bench sync`.

use std::time::{Duration, Instant};

use anyhow::Context;
use flotilla_core::inventory::Cluster;
use flotilla_core::{Limits, Repository, Tools};
use flotilla_hub::controller::source::{SourceConfig, SourceMirror};
use flotilla_hub::server::Hub;
use flotilla_testkit::http::push_webhook;
use git2::Signature;
use serde_json::{Value, json};

/// Options of `bench push`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Registered clusters.
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// ConfigMaps in each cluster's bundle.
    #[arg(long, default_value_t = 10)]
    objects: usize,
    /// Pushes measured.
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Run the hub with `--insecure` (plain HTTP, unsigned webhooks).
    #[arg(long)]
    insecure: bool,
}

/// No agents run here, so no rollout ever passes its health gate: each new head replaces the
/// stage's running rollout (`supersede: immediate`) and is assigned at once.
fn spec() -> &'static str {
    "apiVersion: flotilla.dev/v1\nkind: Fleet\nstages:\n  - name: all\n    track: {branch: main}\n    rollout: {supersede: immediate}\n\
     bundles:\n  - name: app\n    path: app\n    namespace: bench\n    variables: {round: \"0\"}\n"
}

fn manifests(objects: usize) -> String {
    (0..objects)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{i}\ndata:\n  cluster: ${{cluster.name}}\n  zone: ${{cluster.labels.zone}}\n  round: \"${{round}}\"\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn inventory(clusters: usize) -> String {
    let mut text = "apiVersion: flotilla.dev/v1\nkind: ClusterInventory\nclusters:\n".to_owned();
    for i in 0..clusters {
        text.push_str(&format!(
            "  - name: c-{i:04}\n    labels: {{zone: z{}}}\n",
            i % 7
        ));
    }
    text
}

struct Repo {
    dir: tempfile::TempDir,
    repo: git2::Repository,
}

impl Repo {
    fn commit(&self, round: usize, objects: usize) -> anyhow::Result<String> {
        let root = self.dir.path();
        std::fs::create_dir_all(root.join("app"))?;
        std::fs::write(
            root.join("flotilla.yaml"),
            spec().replace("round: \"0\"", &format!("round: \"{round}\"")),
        )?;
        std::fs::write(root.join("app/configs.yaml"), manifests(objects))?;
        let mut index = self.repo.index()?;
        index.add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)?;
        let tree = self.repo.find_tree(index.write_tree()?)?;
        let signature = Signature::now("bench", "bench@flotilla.dev")?;
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let oid = self.repo.commit(
            Some("HEAD"),
            &signature,
            &signature,
            "round",
            &tree,
            &parents,
        )?;
        Ok(oid.to_string())
    }
}

async fn all_assigned(hub: &Hub, commit: &str, clusters: usize) -> anyhow::Result<()> {
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
                return Ok(());
            }
        }
        tokio::time::timeout(Duration::from_secs(120), applied.changed())
            .await
            .context("no progress for 120 s")??;
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        (samples[index] * 10.0).round() / 10.0
    };
    json!({"samples": samples.len(), "p50": at(0.5), "p99": at(0.99), "max": at(1.0)})
}

/// Runs the measurement.
pub(crate) async fn run(args: Args) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let repo = Repo {
        repo: git2::Repository::init(dir.path())?,
        dir,
    };
    repo.repo.set_head("refs/heads/main")?;
    let first = repo.commit(0, args.objects)?;
    let data = tempfile::tempdir()?;
    let inventory_file = data.path().join("clusters.yaml");
    std::fs::write(&inventory_file, inventory(args.clusters))?;
    let mut source = SourceConfig::new(format!("file://{}", repo.dir.path().display()), "main");
    source.poll_interval = Duration::from_secs(3600);
    // A second mirror, fetched after each round, times a fetch of one new commit on its own.
    let side = tempfile::tempdir()?;
    let mirror = SourceMirror::open(side.path(), &source)?;
    mirror.fetch(&source)?;
    let (hub, webhook) =
        crate::e2e::start_hub(data.path(), inventory_file, &source, args.insecure).await?;
    all_assigned(&hub, &first, args.clusters).await?;

    let mut to_assigned = Vec::new();
    let mut answered = Vec::new();
    let mut fetches = Vec::new();
    for round in 1..=args.rounds {
        let commit = repo.commit(round, args.objects)?;
        let started = Instant::now();
        push_webhook(hub.http_address(), &webhook, &commit).await?;
        answered.push(millis(started.elapsed()));
        all_assigned(&hub, &commit, args.clusters).await?;
        to_assigned.push(millis(started.elapsed()));
        let started = Instant::now();
        mirror.fetch(&source)?;
        fetches.push(millis(started.elapsed()));
    }

    // The render alone, in-process, on the last commit's tree.
    let clusters = flotilla_core::inventory::parse_inventory(
        &inventory(args.clusters),
        "clusters.yaml",
        &Limits::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let loaded =
        Repository::load(repo.dir.path(), Limits::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tools = Tools::discover();
    let mut render = Vec::new();
    let mut distinct = 0;
    for _ in 0..args.rounds.max(5) {
        let started = Instant::now();
        let rendered = flotilla_core::render_fleet(&loaded, &clusters as &[Cluster], &tools);
        render.push(millis(started.elapsed()));
        distinct = rendered.distinct_renders;
    }
    hub.shutdown().await;
    Ok(json!({
        "bench": "push",
        "transport": if args.insecure { "plain (--insecure)" } else { "TLS, webhooks over HTTPS signed" },
        "clusters": args.clusters,
        "objectsPerCluster": args.objects,
        "distinctRenders": distinct,
        "unit": "ms",
        "webhookToAssigned": summary(to_assigned),
        "webhookAnswered": summary(answered),
        "renderFleet": summary(render),
        "fetch": summary(fetches),
    }))
}
