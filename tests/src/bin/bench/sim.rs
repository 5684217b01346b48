//! `bench sim`: one simulator process hosting many virtual clusters, each with objects
//! and an open watch, under many concurrent server-side apply clients. Reports the
//! simulator's RSS and the apply latency.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// Options of `bench sim`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Virtual clusters in the simulator.
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// Objects created per cluster (a mix of ConfigMaps, Deployments and Services).
    #[arg(long, default_value_t = 20)]
    objects: usize,
    /// Concurrent server-side apply clients, each on its own connection.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Applies per second per client; 0 applies back to back (measures throughput).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Length of the measured phase, in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Applies per cluster before measuring, so each cluster's watch history is full
    /// and the RSS is the steady state, not the start.
    #[arg(long, default_value_t = 300)]
    fill: usize,
    /// The flotilla-sim binary; defaults to the one beside this binary.
    #[arg(long)]
    sim_bin: Option<PathBuf>,
}

type Conn = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the simulator at {addr}"))?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The connection ends when the bench ends or the simulator stops.
        let _ = conn.await;
    });
    Ok(send)
}

/// One server-side apply; returns its status code.
async fn apply(conn: &mut Conn, path: &str, body: &Value) -> anyhow::Result<u16> {
    let req = hyper::Request::builder()
        .method("PATCH")
        .uri(format!("{path}?fieldManager=bench&force=true"))
        .header("Host", "sim")
        .header("Content-Type", "application/apply-patch+yaml")
        .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
    conn.ready().await?;
    let resp = conn.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

/// The object `j` of a cluster: mostly ConfigMaps, some Deployments and Services.
fn object(j: usize, round: u64) -> (String, Value) {
    match j % 5 {
        3 => (
            format!("/apis/apps/v1/namespaces/default/deployments/app-{j}"),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("app-{j}"), "labels": {"app": format!("app-{j}")}},
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": format!("app-{j}")}},
                            "template": {"metadata": {"labels": {"app": format!("app-{j}")}},
                                         "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
                                                                  "env": [{"name": "ROUND", "value": round.to_string()}]}]}}}}),
        ),
        4 => (
            format!("/api/v1/namespaces/default/services/svc-{j}"),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{j}")},
                   "spec": {"selector": {"app": format!("app-{j}")}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        ),
        _ => config_map(j, round),
    }
}

fn config_map(j: usize, round: u64) -> (String, Value) {
    (
        format!("/api/v1/namespaces/default/configmaps/cm-{j}"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{j}"), "labels": {"app": "bench"}},
               "data": {"round": round.to_string(), "payload": "x".repeat(256)}}),
    )
}

/// VmRSS and VmHWM of a process, in MiB.
fn rss_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    Ok((ticks(11) + ticks(12)) / 100.0)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Runs the benchmark and returns its report.
pub(crate) async fn run(args: Args) -> anyhow::Result<Value> {
    let sim_bin = match args.sim_bin.clone() {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("flotilla-sim"),
    };
    if !sim_bin.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p flotilla-sim`, or pass --sim-bin",
            sim_bin.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("flotilla-bench-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    let mut child = tokio::process::Command::new(&sim_bin)
        .arg("--clusters")
        .arg(args.clusters.to_string())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", sim_bin.display()))?;
    let pid = child.id().context("the simulator has no pid")?;
    let started = Instant::now();
    while !kubeconfig.exists() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the simulator wrote no kubeconfig within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = std::fs::read_to_string(&kubeconfig)?;
    let addr: SocketAddr = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: http://"))
        .and_then(|s| s.split('/').next())
        .context("no server address in the kubeconfig")?
        .parse()?;
    let (rss_idle, _) = rss_mib(pid)?;

    // Setup: every cluster gets its objects, applied by the clients in parallel.
    let setup = Instant::now();
    let clients = args.clients.max(1);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (n, m) = (args.clusters, args.objects);
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(addr).await?;
            let mut c = i;
            while c < n {
                for j in 0..m {
                    let (path, body) = object(j, 0);
                    let status =
                        apply(&mut conn, &format!("/clusters/sim-{c}{path}"), &body).await?;
                    if !(200..300).contains(&status) {
                        bail!("creating object {j} in sim-{c}: HTTP {status}");
                    }
                }
                c += clients;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let setup_s = setup.elapsed().as_secs_f64();

    // One watch per cluster, each on its own connection, counting events.
    let events = Arc::new(AtomicU64::new(0));
    let mut watches = Vec::new();
    for c in 0..args.clusters {
        let events = events.clone();
        let mut conn = connect(addr).await?;
        watches.push(tokio::spawn(async move {
            let req = hyper::Request::builder()
                .uri(format!("/clusters/sim-{c}/api/v1/namespaces/default/configmaps?watch=true&allowWatchBookmarks=true&timeoutSeconds=3600"))
                .header("Host", "sim")
                .body(Full::new(Bytes::new()))?;
            let resp = conn.send_request(req).await?;
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    let lines = data.iter().filter(|b| **b == b'\n').count() as u64;
                    events.fetch_add(lines, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_setup, _) = rss_mib(pid)?;

    // Fill: back-to-back applies until every cluster's event history is full.
    let configmaps: Vec<usize> = (0..args.objects).filter(|j| j % 5 < 3).collect();
    let fill = Instant::now();
    let cpu_fill_start = cpu_seconds(pid)?;
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (n, per_cluster) = (args.clusters, args.fill);
        let configmaps = configmaps.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(addr).await?;
            let mut c = i;
            while c < n {
                for round in 0..per_cluster {
                    let j = configmaps[round % configmaps.len().max(1)];
                    let (path, body) = config_map(j, 1_000_000 + round as u64);
                    apply(&mut conn, &format!("/clusters/sim-{c}{path}"), &body).await?;
                }
                c += clients;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let fill_s = fill.elapsed().as_secs_f64();
    let fill_per_s = (args.clusters * args.fill) as f64 / fill_s.max(1e-9);
    let fill_cpu_ms =
        (cpu_seconds(pid)? - cpu_fill_start) * 1000.0 / (args.clusters * args.fill).max(1) as f64;
    let (rss_filled, _) = rss_mib(pid)?;
    let events_before = events.load(Ordering::Relaxed);
    let cpu_before = cpu_seconds(pid)?;

    // Measured phase: each client applies ConfigMaps of its cluster at its rate.
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let cluster = i % args.clusters.max(1);
        let configmaps = configmaps.clone();
        let rate = args.rate;
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(addr).await?;
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let period = if rate > 0.0 {
                Some(Duration::from_secs_f64(1.0 / rate))
            } else {
                None
            };
            if let Some(p) = period {
                // Spread the clients' first applies over one period.
                tokio::time::sleep(p.mul_f64(i as f64 / clients as f64)).await;
            }
            let mut next = tokio::time::Instant::now();
            let mut round = 1u64;
            while Instant::now() < deadline {
                let j = configmaps[(round as usize + i) % configmaps.len().max(1)];
                let (path, body) = config_map(j, round);
                let t = Instant::now();
                let status =
                    apply(&mut conn, &format!("/clusters/sim-{cluster}{path}"), &body).await?;
                latencies.push(t.elapsed().as_micros() as u64);
                if !(200..300).contains(&status) {
                    errors += 1;
                }
                round += 1;
                if let Some(p) = period {
                    next += p;
                    tokio::time::sleep_until(next).await;
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await??;
        latencies.extend(l);
        errors += e;
    }
    let measured_s = args.seconds as f64;
    latencies.sort_unstable();
    let (rss_end, rss_peak) = rss_mib(pid)?;
    let cpu_measured = cpu_seconds(pid)? - cpu_before;
    let watch_events = events.load(Ordering::Relaxed) - events_before;

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exited = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    for w in watches {
        w.abort();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let clean_exit = matches!(exited, Ok(Ok(s)) if s.success());

    Ok(json!({
        "area": "sim",
        "clusters": args.clusters,
        "objects_per_cluster": args.objects,
        "watches": args.clusters,
        "clients": clients,
        "rate_per_client": args.rate,
        "measured_s": measured_s,
        "setup_s": (setup_s * 10.0).round() / 10.0,
        "fill_applies_per_cluster": args.fill,
        "fill_s": (fill_s * 10.0).round() / 10.0,
        "fill_ssa_per_s_back_to_back": fill_per_s.round(),
        "fill_sim_cpu_ms_per_ssa": (fill_cpu_ms * 1000.0).round() / 1000.0,
        "ssa_requests": latencies.len(),
        "ssa_per_s": (latencies.len() as f64 / measured_s).round(),
        "ssa_errors": errors,
        "ssa_latency_ms": {
            "p50": percentile(&latencies, 0.50),
            "p90": percentile(&latencies, 0.90),
            "p99": percentile(&latencies, 0.99),
            "max": percentile(&latencies, 1.0),
        },
        "watch_events_during_measure": watch_events,
        "sim_cpu_ms_per_ssa": ((cpu_measured * 1000.0 / latencies.len().max(1) as f64) * 1000.0).round() / 1000.0,
        "sim_cpu_share_of_one_core": ((cpu_measured / measured_s) * 1000.0).round() / 1000.0,
        "sim_rss_mib": {
            "empty_clusters": rss_idle.round(),
            "after_setup": rss_setup.round(),
            "history_full": rss_filled.round(),
            "end": rss_end.round(),
            "peak": rss_peak.round(),
        },
        "sim_clean_exit_on_sigterm": clean_exit,
        "host_load_avg_1m_at_end": std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next().and_then(|x| x.parse::<f64>().ok())),
    }))
}
