//! `bench agent`: the agent's engine applying a bundle of 100 objects to one simulated cluster
//! (wall time and API requests, counted by the simulated API server), and the resident memory
//! of a real `flotilla-agent run` process managing those objects with its watches open.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_agent::engine::{Engine, EngineConfig};
use flotilla_agent::health::Health;
use flotilla_agent::{BundleRevision, DriftMode, Event, Report, SystemClock};
use flotilla_sim::{RequestCounts, Sim, SimConfig};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Options of `bench agent`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Objects in the bundle: half ConfigMaps, a fifth each Deployments and Services, a tenth
    /// Secrets.
    #[arg(long, default_value_t = 100)]
    objects: usize,
    /// Timed runs of each apply (each on a fresh simulated cluster and a fresh engine).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// How long the simulated controllers take to roll a workload out, in milliseconds.
    #[arg(long, default_value_t = 500)]
    rollout_delay_ms: u64,
    /// Seconds over which the agent process's memory is sampled once it has settled.
    #[arg(long, default_value_t = 10)]
    rss_seconds: u64,
    /// The flotilla-agent binary; defaults to the one beside this binary.
    #[arg(long)]
    agent_bin: Option<PathBuf>,
}

fn object(j: usize, round: usize) -> Value {
    let name = format!("obj-{j}");
    match j % 10 {
        5 | 6 => json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}}),
        7 | 8 => json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        9 => json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {"token": "x".repeat(32)}}),
        _ => json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"round": round.to_string(), "payload": "x".repeat(256)}}),
    }
}

fn bundle(objects: usize, round: usize) -> BundleRevision {
    BundleRevision {
        allow: Default::default(),
        name: "bench".into(),
        revision: format!("r{round}"),
        content_hash: format!("h{round}"),
        namespace: "bench".into(),
        drift: DriftMode::Correct,
        objects: (0..objects).map(|j| object(j, round)).collect(),
    }
}

async fn until(
    reports: &mut broadcast::Receiver<Report>,
    mut pick: impl FnMut(&Report) -> Option<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let report = tokio::time::timeout_at(deadline, reports.recv())
            .await
            .context("no report within 120 s")??;
        if let Some(result) = pick(&report) {
            return result;
        }
    }
}

fn applied(revision: &str) -> impl FnMut(&Report) -> Option<anyhow::Result<()>> + '_ {
    move |r| match &r.event {
        Event::Applied { .. } if r.revision == revision => Some(Ok(())),
        Event::ApplyFailed { errors, .. } if r.revision == revision => {
            Some(Err(anyhow::anyhow!("apply failed: {errors:?}")))
        }
        _ => None,
    }
}

struct Sample {
    millis: f64,
    requests: u64,
}

/// One timed apply of `revision`: wall time from handing it over to the Applied report, and
/// the requests the cluster served meanwhile.
async fn timed(
    engine: &Engine,
    reports: &mut broadcast::Receiver<Report>,
    sim: &Sim,
    cluster: &str,
    revision: BundleRevision,
) -> anyhow::Result<(Sample, RequestCounts)> {
    let served = || {
        sim.request_counts(cluster)
            .with_context(|| format!("no simulated cluster {cluster}"))
    };
    let id = revision.revision.clone();
    let before = served()?;
    let start = Instant::now();
    engine.apply(revision)?;
    until(reports, applied(&id)).await?;
    let millis = start.elapsed().as_secs_f64() * 1000.0;
    let during = served()?.since(&before);
    Ok((
        Sample {
            millis,
            requests: during.total,
        },
        during,
    ))
}

fn summary(samples: &[Sample], by_verb: &RequestCounts) -> Value {
    let mut millis: Vec<f64> = samples.iter().map(|s| s.millis).collect();
    millis.sort_by(f64::total_cmp);
    let mut requests: Vec<u64> = samples.iter().map(|s| s.requests).collect();
    requests.sort_unstable();
    let round = |x: f64| (x * 10.0).round() / 10.0;
    json!({
        "wall_ms": {
            "min": round(millis.first().copied().unwrap_or(0.0)),
            "median": round(millis.get(millis.len() / 2).copied().unwrap_or(0.0)),
            "max": round(millis.last().copied().unwrap_or(0.0)),
        },
        "requests": requests.get(requests.len() / 2).copied().unwrap_or(0),
        "requests_by_verb_last_run": by_verb,
    })
}

/// The engine in this process: first apply to an empty cluster, a change of half the
/// objects, and a new revision with nothing changed.
async fn apply_figures(args: &Args) -> anyhow::Result<Value> {
    let sim = Sim::start(SimConfig {
        clusters: args.runs,
        rollout_delay: Duration::from_millis(args.rollout_delay_ms),
        ..SimConfig::default()
    })
    .await?;
    let (mut first, mut changed, mut unchanged, mut healthy) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut drift = Vec::new();
    let mut kinds = (
        RequestCounts::default(),
        RequestCounts::default(),
        RequestCounts::default(),
    );
    for run in 0..args.runs {
        let cluster = format!("sim-{run}");
        let client = kube::Client::try_from(kube::Config::new(sim.cluster_url(&cluster).parse()?))?;
        let engine = Engine::start(client, EngineConfig::default(), Arc::new(SystemClock))?;
        let mut reports = engine.subscribe();
        let start = Instant::now();
        let (sample, by_verb) = timed(
            &engine,
            &mut reports,
            &sim,
            &cluster,
            bundle(args.objects, 1),
        )
        .await?;
        first.push(sample);
        kinds.0 = by_verb;
        until(&mut reports, |r| {
            matches!(&r.event, Event::HealthChanged(h) if h.health == Health::Healthy)
                .then_some(Ok(()))
        })
        .await?;
        healthy.push(Sample {
            millis: start.elapsed().as_secs_f64() * 1000.0,
            requests: 0,
        });
        let (sample, by_verb) = timed(
            &engine,
            &mut reports,
            &sim,
            &cluster,
            bundle(args.objects, 2),
        )
        .await?;
        changed.push(sample);
        kinds.1 = by_verb;
        let mut same = bundle(args.objects, 2);
        same.revision = "r3".into();
        same.content_hash = "h3".into();
        let (sample, by_verb) = timed(&engine, &mut reports, &sim, &cluster, same).await?;
        unchanged.push(sample);
        kinds.2 = by_verb;
        drift.push(drift_correction(&sim, run, &mut reports).await?);
        engine.shutdown().await;
    }
    sim.shutdown().await;
    let mut healthy_ms: Vec<f64> = healthy.iter().map(|s| s.millis).collect();
    healthy_ms.sort_by(f64::total_cmp);
    drift.sort_by(f64::total_cmp);
    Ok(json!({
        "first_apply": summary(&first, &kinds.0),
        "first_apply_to_healthy_ms_median": healthy_ms.get(healthy_ms.len() / 2).map(|m| m.round()),
        "change_half_the_objects": summary(&changed, &kinds.1),
        "new_revision_nothing_changed": summary(&unchanged, &kinds.2),
        "drift_edit_to_corrected_ms": {
            "min": drift.first().map(|m| m.round()),
            "median": drift.get(drift.len() / 2).map(|m| m.round()),
            "max": drift.last().map(|m| m.round()),
            "debounce_ms": EngineConfig::default().drift_debounce.as_millis(),
            "target_ms": 2000,
        },
    }))
}

/// Someone else changes a managed field; milliseconds until the engine reports it corrected.
async fn drift_correction(
    sim: &Sim,
    run: usize,
    reports: &mut broadcast::Receiver<Report>,
) -> anyhow::Result<f64> {
    let client = kube::Client::try_from(kube::Config::new(
        sim.cluster_url(&format!("sim-{run}")).parse()?,
    ))?;
    let configs: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client, "bench");
    let patch = json!({"data": {"round": "edited"}});
    let start = Instant::now();
    configs
        .patch(
            "obj-0",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    until(reports, |r| {
        matches!(r.event, Event::DriftCorrected { .. }).then_some(Ok(()))
    })
    .await?;
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

/// VmRSS, VmHWM (MiB) and thread count of a process.
fn memory(pid: u32) -> anyhow::Result<(f64, f64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((
        field("VmRSS:") / 1024.0,
        field("VmHWM:") / 1024.0,
        field("Threads:") as u64,
    ))
}

/// A real `flotilla-agent run --source-dir` process keeping the bundle applied.
async fn memory_figures(args: &Args) -> anyhow::Result<Value> {
    let agent_bin = match &args.agent_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("flotilla-agent"),
    };
    if !agent_bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p flotilla-agent`, or pass --agent-bin",
            agent_bin.display()
        );
    }
    let sim = Sim::start(SimConfig {
        rollout_delay: Duration::from_millis(args.rollout_delay_ms),
        ..SimConfig::default()
    })
    .await?;
    let dir = std::env::temp_dir().join(format!("flotilla-bench-agent-{}", std::process::id()));
    let source = dir.join("bundles");
    std::fs::create_dir_all(source.join("bench"))?;
    let manifests: Vec<String> = (0..args.objects)
        .map(|j| serde_json::to_string(&object(j, 1)))
        .collect::<Result<_, _>>()?;
    std::fs::write(source.join("bench/objects.yaml"), manifests.join("\n---\n"))?;
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;

    let mut agent = tokio::process::Command::new(&agent_bin)
        .args(["run", "--context", "sim-0"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--source-dir")
        .arg(&source)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", agent_bin.display()))?;
    let pid = agent.id().context("the agent has no pid")?;

    // Settled: every object applied and every Deployment rolled out.
    let client = kube::Client::try_from(kube::Config::new(sim.cluster_url("sim-0").parse()?))?;
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client.clone(), "bench");
    let inventories: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client, "flotilla-system");
    let wanted = (0..args.objects)
        .filter(|j| matches!(j % 10, 5 | 6))
        .count();
    let start = Instant::now();
    loop {
        if start.elapsed() > Duration::from_secs(120) {
            bail!("the agent did not apply the bundle within 120 s");
        }
        let recorded = inventories
            .get_opt("flotilla-bundle-bench")
            .await?
            .and_then(|cm| cm.data)
            .is_some_and(|d| d.get("revision").is_some_and(|r| !r.is_empty()));
        let ready = deployments
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.available_replicas) == Some(2))
            .count();
        if recorded && ready == wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled_s = start.elapsed().as_secs_f64();
    // Let the health reports and watches reach their steady state before sampling.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut peak = 0.0f64;
    let mut last = (0.0, 0.0, 0);
    let sampling = Instant::now();
    while sampling.elapsed() < Duration::from_secs(args.rss_seconds) {
        last = memory(pid)?;
        peak = peak.max(last.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.start_kill()?;
    agent.wait().await?;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    let round = |x: f64| (x * 10.0).round() / 10.0;
    Ok(json!({
        "objects": args.objects,
        "seconds_until_applied_and_rolled_out": round(settled_s),
        "rss_mib_steady_max": round(peak),
        "rss_mib_steady_last": round(last.0),
        "rss_mib_high_water_mark": round(last.1),
        "threads": last.2,
        "target_rss_mib": 25,
    }))
}

/// Runs the benchmark and returns its report.
pub(crate) async fn run(args: Args) -> anyhow::Result<Value> {
    let apply = apply_figures(&args).await?;
    let memory = memory_figures(&args).await?;
    Ok(json!({
        "area": "agent",
        "objects": args.objects,
        "runs": args.runs,
        "rollout_delay_ms": args.rollout_delay_ms,
        "apply": apply,
        "agent_process": memory,
    }))
}
