//! `bench dashboard`: the dashboard in headless Chromium (Debian's, over WebDriver) against a
//! hub holding a synthetic fleet: N registered clusters in three stages, each assigned B
//! bundles by a real render of a real Git repository. With `--reported` (the default) every
//! cluster's agent is online and has reported every bundle applied and Healthy (proposed as
//! the hub records agents' reports, until every stage has rolled the first commit out), so the
//! status holds a health record per bundle; with `--reported=false` there are no agents, every
//! cluster offline and every bundle unknown, so every cluster is a problem.
//!
//! - `statusMs`: `GET /api/status?limit=100` as the page asks it (the hub computes the status
//!   and pages it), with its size.
//! - `loadMs`: a signed-in user opens the page: from navigation until the overview shows the
//!   fleet row with every cluster (page load, session, the filter check, the stream's snapshot,
//!   the first drawing).
//! - `updateMs`: a new commit: from the hub's replica recording its render until the page
//!   shows the commit as the latest revision, rendered (the stream's change, drawn).
//! - `computeMs`: computing the whole fleet status from the replica, once per change however
//!   many pages and streams read it.
//! - `timelineMs`: `GET /api/commits/{first}?limit=100`, the first commit across the fleet;
//!   `clusterMs`: `GET /api/clusters/{name}`, one cluster in detail.
//!
//! Times in the page are taken by polling the page every 10 ms over WebDriver, so each
//! carries up to ~15 ms of polling.

use std::time::{Duration, Instant};

use anyhow::Context;
use flotilla_hub::config::NodeConfig;
use flotilla_hub::controller::source::SourceConfig;
use flotilla_hub::server::{Hub, HubConfig};
use flotilla_testkit::browser::Browser;
use flotilla_testkit::git::GitRepo;
use flotilla_testkit::http::{WebhookAccess, push_webhook, request};
use serde_json::{Value, json};

use crate::e2e::summary;

/// Options of `bench dashboard`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Registered clusters.
    #[arg(long, default_value_t = 10_000)]
    clusters: usize,
    /// Bundles per cluster.
    #[arg(long, default_value_t = 10)]
    bundles: usize,
    /// Commits whose arrival on the page is timed.
    #[arg(long, default_value_t = 5)]
    updates: usize,
    /// Agents online that reported every bundle applied and Healthy (else no agents at all).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    reported: bool,
}

const STAGES: [(&str, &str); 3] = [
    ("dev", "track: {branch: main}"),
    ("staging", "promoteFrom: dev"),
    ("prod", "promoteFrom: staging"),
];

fn spec(bundles: usize, round: usize) -> String {
    let mut text = "apiVersion: flotilla.dev/v1\nkind: Fleet\nstages:\n".to_owned();
    for (name, source) in STAGES {
        text.push_str(&format!(
            "  - name: {name}\n    clusterSelector: {{matchLabels: {{env: {name}}}}}\n    {source}\n"
        ));
    }
    text.push_str("bundles:\n");
    for b in 0..bundles {
        text.push_str(&format!(
            "  - name: b{b}\n    path: app\n    namespace: b{b}\n    variables: {{round: \"{round}\"}}\n"
        ));
    }
    text
}

const APP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config\ndata:\n  cluster: ${cluster.name}\n  round: \"${round}\"\n";

fn inventory(clusters: usize) -> String {
    let mut text = "apiVersion: flotilla.dev/v1\nkind: ClusterInventory\nclusters:\n".to_owned();
    for i in 0..clusters {
        // 10 % dev, 30 % staging, 60 % prod.
        let env = match i % 10 {
            0 => "dev",
            1..=3 => "staging",
            _ => "prod",
        };
        text.push_str(&format!(
            "  - name: c-{i:05}\n    labels: {{env: {env}, zone: z{}}}\n",
            i % 7
        ));
    }
    text
}

/// Waits until the hub's replica has rendered `commit` and registered every cluster.
async fn rendered(hub: &Hub, commit: &str, clusters: usize) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        {
            let state = hub.node().state();
            let done = state.clusters.len() == clusters
                && flotilla_hub::status::revisions(&state, "origin")
                    .iter()
                    .any(|r| r.commit == commit && r.error.is_none() && r.status == "rendered");
            if done {
                return Ok(Instant::now());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{commit} not rendered within 600 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Brings every cluster's agent online and reports every bundle its revision wants applied
/// and Healthy, round after round as the stages roll out, until no cluster waits for a report
/// and every one holds a revision. Returns the number of reports.
async fn report_healthy(hub: &Hub) -> anyhow::Result<usize> {
    use flotilla_hub::state::Command;
    use flotilla_hub::state::health::{Health, HealthKey, HealthReport};
    let now = || flotilla_hub::state::Timestamp(flotilla_hub::clock::system().now().0);
    let offline: Vec<String> = {
        let state = hub.node().state();
        state
            .clusters
            .iter()
            .filter(|(_, c)| !c.online)
            .map(|(name, _)| name.clone())
            .collect()
    };
    for chunk in offline.chunks(500) {
        let proposals = chunk.iter().map(|cluster| async move {
            let online = Command::SetLiveness {
                cluster: cluster.clone(),
                online: true,
                at: now(),
            };
            hub.node().propose(&online).await
        });
        for outcome in futures::future::join_all(proposals).await {
            outcome.map_err(|e| anyhow::anyhow!("liveness: {e}"))?;
        }
    }
    let mut reported = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (due, unassigned) = {
            let state = hub.node().state();
            let mut due = Vec::new();
            let mut unassigned = 0;
            for (name, cluster) in &state.clusters {
                if cluster.assigned.is_none() {
                    unassigned += 1;
                }
                for (bundle, hash) in state.desired_bundles(name) {
                    let key = HealthKey {
                        cluster: name.clone(),
                        bundle,
                    };
                    if state.health.get(&key).and_then(|r| r.applied) != Some(hash) {
                        due.push(HealthReport {
                            key,
                            applied: Some(hash),
                            health: Health::Healthy,
                            message: String::new(),
                            drifted: Vec::new(),
                            failed: None,
                            last_drift: None,
                            drift_corrections: 0,
                            added: Vec::new(),
                            at: now(),
                        });
                    }
                }
            }
            (due, unassigned)
        };
        if due.is_empty() && unassigned == 0 {
            return Ok(reported);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the fleet did not roll out within 600 s ({unassigned} clusters without a revision)"
        );
        reported += due.len();
        for batch in due.chunks(2_000) {
            hub.node()
                .propose(&Command::RecordHealth {
                    reports: batch.to_vec(),
                })
                .await
                .map_err(|e| anyhow::anyhow!("health: {e}"))?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Polls the page every 10 ms until `script` (a JS expression) is true.
async fn until(browser: &Browser, script: &str, timeout: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let value = browser
            .client
            .execute(&format!("return Boolean({script});"), vec![])
            .await?;
        if value == Value::Bool(true) {
            return Ok(Instant::now());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the page never showed `{script}`"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Runs the measurement.
pub(crate) async fn run(args: Args) -> anyhow::Result<Value> {
    let browser = Browser::start_or_skip("bench dashboard", 1280, 900)
        .await?
        .context("bench dashboard needs chromium and chromedriver (apt-get install chromium chromium-driver)")?;
    let repo = GitRepo::new()?;
    repo.write("flotilla.yaml", &spec(args.bundles, 0))?;
    repo.write("app/config.yaml", APP)?;
    let first = repo.commit("round 0")?;
    let data = tempfile::tempdir()?;
    let inventory_file = data.path().join("clusters.yaml");
    std::fs::write(&inventory_file, inventory(args.clusters))?;
    let mut source = SourceConfig::new(repo.url(), "main");
    source.poll_interval = Duration::from_secs(3600);
    let mut config = HubConfig::new(NodeConfig::new(1, data.path().join("node"), "127.0.0.1:0"));
    config.api_listen = "127.0.0.1:0".into();
    config.http_listen = "127.0.0.1:0".into();
    config.clusters_file = Some(inventory_file);
    config.revision_retention = 3;
    config.source = Some(source);
    // Tokens on, TLS off: the browser reads plain HTTP on loopback.
    config.authenticate = true;
    // The agents that report here hold no stream: their clusters stay online as reported.
    config.sync.liveness.offline_after = Duration::from_secs(24 * 3600);
    let hub = Hub::start(config).await?;
    let started = Instant::now();
    rendered(&hub, &first, args.clusters).await?;
    let reports = if args.reported {
        report_healthy(&hub).await?
    } else {
        0
    };
    let setup = started.elapsed();
    let token_file = hub
        .node()
        .data_dir()
        .join(flotilla_hub::controller::first_admin::ADMIN_TOKEN_FILE);
    let token = loop {
        if let Ok(token) = std::fs::read_to_string(&token_file)
            && !token.trim().is_empty()
        {
            break token.trim().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let base = format!("http://{}", hub.http_address());
    let bearer = format!("Bearer {token}");

    let mut compute_ms = Vec::new();
    for _ in 0..5 {
        let state = hub.node().state();
        let t = Instant::now();
        let source = flotilla_hub::status::SourceView {
            name: "origin".into(),
            url: repo.url(),
            branch: "main".into(),
        };
        let status =
            flotilla_hub::status::fleet_status(&state, Some(&source), 1, Some(1), state.applied());
        anyhow::ensure!(status.stages.len() == STAGES.len(), "{:?}", status.stages);
        compute_ms.push(millis(t.elapsed()));
        anyhow::ensure!(status.clusters.len() == args.clusters);
    }
    let get = |path: String| {
        let bearer = bearer.clone();
        async move {
            let t = Instant::now();
            let answer = request(
                "GET",
                &path,
                &[("authorization", bearer.as_str())],
                Vec::new(),
            )
            .await?;
            anyhow::ensure!(answer.status == 200, "{path}: {}", answer.body);
            Ok::<_, anyhow::Error>((millis(t.elapsed()), answer.body.len()))
        }
    };
    let mut timeline_ms = Vec::new();
    let mut cluster_ms = Vec::new();
    for _ in 0..10 {
        timeline_ms.push(
            get(format!("{base}/api/commits/{first}?limit=100"))
                .await?
                .0,
        );
        cluster_ms.push(get(format!("{base}/api/clusters/c-00001")).await?.0);
    }
    let mut status_ms = Vec::new();
    let mut status_bytes = 0;
    for _ in 0..10 {
        let t = Instant::now();
        let answer = request(
            "GET",
            &format!("{base}/api/status?limit=100"),
            &[("authorization", bearer.as_str())],
            Vec::new(),
        )
        .await?;
        anyhow::ensure!(answer.status == 200, "{}", answer.body);
        status_ms.push(millis(t.elapsed()));
        status_bytes = answer.body.len();
        if args.reported {
            let status: Value = serde_json::from_str(&answer.body)?;
            let healthy = status["counts"]["health"]["Healthy"].as_u64().unwrap_or(0);
            anyhow::ensure!(
                healthy == (args.clusters * args.bundles) as u64,
                "every bundle reported Healthy, yet the status counts {}",
                status["counts"]
            );
        }
    }

    // Sign in once; then each load starts from navigation with the session cookie.
    browser
        .sign_in(&format!("{base}/"), &token, Duration::from_secs(60))
        .await?;
    let fleet_row = format!(
        "document.querySelector('#overview tr:last-child td:nth-child(3)')?.textContent === '{}'",
        args.clusters
    );
    until(&browser, &fleet_row, Duration::from_secs(60)).await?;
    let mut load_ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        browser.client.goto(&format!("{base}/")).await?;
        let shown = until(&browser, &fleet_row, Duration::from_secs(60)).await?;
        load_ms.push(millis(shown - t));
    }

    let mut update_ms = Vec::new();
    for round in 1..=args.updates {
        repo.write("flotilla.yaml", &spec(args.bundles, round))?;
        let commit = repo.commit(&format!("round {round}"))?;
        push_webhook(hub.http_address(), &WebhookAccess::Plain, &commit).await?;
        let recorded = rendered(&hub, &commit, args.clusters).await?;
        let shown = until(
            &browser,
            &format!(
                "document.querySelector('#revision')?.textContent.includes('{commit} · rendered')"
            ),
            Duration::from_secs(60),
        )
        .await?;
        update_ms.push(millis(shown.saturating_duration_since(recorded)));
    }
    let errors = browser.console_errors().await?;
    anyhow::ensure!(errors.is_empty(), "the page logged errors: {errors:#?}");
    browser.close().await?;
    hub.shutdown().await;
    Ok(json!({
        "bench": "dashboard",
        "clusters": args.clusters,
        "bundlesPerCluster": args.bundles,
        "unit": "ms",
        "agentsReported": args.reported,
        "healthReports": reports,
        "setupMs": millis(setup),
        "computeMs": summary(compute_ms),
        "timelineMs": summary(timeline_ms),
        "clusterMs": summary(cluster_ms),
        "statusMs": summary(status_ms),
        "statusBytesPage100": status_bytes,
        "loadMs": summary(load_ms),
        "updateMs": summary(update_ms),
        "targetMs": 1000,
        "hostLoad1m": crate::common::load_average(),
    }))
}
