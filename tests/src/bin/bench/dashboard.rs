//! `bench dashboard`: the dashboard in headless Chromium (Debian's, over WebDriver) against a
//! hub holding a synthetic fleet: N registered clusters in three stages, each assigned B
//! bundles by a real render of a real Git repository; no agents, so every cluster is offline
//! and every bundle unknown — the page draws the fleet as it is, which is the most it shows.
//!
//! - `statusMs`: `GET /api/status?limit=100` as the page asks it (the hub computes the status
//!   and pages it), with its size.
//! - `loadMs`: a signed-in user opens the page: from navigation until the overview shows the
//!   fleet row with every cluster (page load, session, the filter check, the stream's snapshot,
//!   the first drawing).
//! - `updateMs`: a new commit: from the hub's replica recording its render until the page
//!   shows the commit as the latest revision, rendered (the stream's change, drawn).
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
    let hub = Hub::start(config).await?;
    let started = Instant::now();
    rendered(&hub, &first, args.clusters).await?;
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
        "setupMs": millis(setup),
        "statusMs": summary(status_ms),
        "statusBytesPage100": status_bytes,
        "loadMs": summary(load_ms),
        "updateMs": summary(update_ms),
        "targetMs": 1000,
        "hostLoad1m": crate::common::load_average(),
    }))
}
