//! A commit whose Deployment the API server refuses (`replicas: three`) is shown as what it is
//! on every surface, on the simulator and on real clusters: `flotilla status -o json` gives the
//! bundle `syncState: ApplyFailed` with the API server's message while its health stays that of
//! the old, still running objects; the table's SYNC column and its NOT IN SYNC list say so; the
//! dashboard's JSON says so, and the dashboard in a real browser shows the bundle red with the
//! message and counts it in the overview, the commit's timeline shows the cluster that never
//! applied it in red with why, and the cluster's view names the refused object; `/metrics`
//! counts it. The fixed commit brings it back to Synced.

use anyhow::{Context, Result};
use flotilla_testkit::browser::Browser;
use flotilla_testkit::fleet::{Fleet, FleetOptions};
use flotilla_testkit::real::RealClusters;
use flotilla_testkit::small_fleet;
use flotilla_testkit::wait::{self, PATIENCE, Probe};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_apply_is_apply_failed_everywhere_on_the_simulator() -> Result<()> {
    a_refused_apply_is_apply_failed_everywhere(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_apply_is_apply_failed_everywhere_on_real_clusters() -> Result<()> {
    let Some(real) = RealClusters::start_for(
        "a_refused_apply_is_apply_failed_everywhere_on_real_clusters",
        3,
    )
    .await?
    else {
        return Ok(());
    };
    a_refused_apply_is_apply_failed_everywhere(Some(real)).await
}

async fn a_refused_apply_is_apply_failed_everywhere(real: Option<RealClusters>) -> Result<()> {
    let (repo, first) = small_fleet::repository()?;
    let fleet =
        Fleet::start_on(&repo, small_fleet::INVENTORY, FleetOptions::default(), real).await?;
    let status = fleet.wait_rolled_out(&first).await?;
    assert_eq!(bundle(&status, "dev-1")?["syncState"], "Synced");
    assert_eq!(
        status["counts"]["sync"]["Synced"], 3,
        "{}",
        status["counts"]
    );

    repo.edit(
        "bundles/app/deployment.yaml",
        "replicas: ${replicas}",
        "replicas: three",
    )?;
    let bad = repo.commit("replicas: three")?;
    let status = wait::until("the bad commit ApplyFailed on dev-1", PATIENCE, || async {
        let status = fleet.cli.status().await?;
        let shown = bundle(&status, "dev-1")?;
        Ok(
            if shown["syncState"] == "ApplyFailed" && shown["desiredRevision"] == bad.as_str() {
                Probe::Done(status)
            } else {
                Probe::NotYet(shown.to_string())
            },
        )
    })
    .await?;
    let shown = bundle(&status, "dev-1")?;
    let message = shown["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Deployment") && message.contains("replicas"),
        "the message names the object and the field: {shown}"
    );
    // The workload is the old one, still running: its health is its own, the sync state says
    // the commit did not land.
    assert_eq!(shown["appliedRevision"], first.as_str(), "{shown}");
    let dev = stage(&status, "dev")?;
    assert_eq!(dev["counts"]["sync"]["ApplyFailed"], 1, "{dev}");

    // Waiting cannot fix it: dev's rollout fails at once, well before any health timeout.
    let rollout = wait::until(
        "dev's rollout of the bad commit paused",
        PATIENCE,
        || async {
            let status = fleet.cli.status().await?;
            let rollouts = status["rollouts"].as_array().cloned().unwrap_or_default();
            let found = rollouts
                .into_iter()
                .find(|r| r["stage"] == "dev" && r["toRevision"] == bad.as_str());
            Ok(match found {
                Some(r) if r["status"] == "paused" => Probe::Done(r),
                other => Probe::NotYet(format!("{other:?}")),
            })
        },
    )
    .await?;
    let id = rollout["id"].to_string();
    let progress = fleet
        .cli
        .json(&["rollout", "status", "dev", "--rollout", &id])
        .await?;
    let reason = progress["statusReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("could not apply") && reason.contains("replicas"),
        "{progress}"
    );

    let status = fleet.cli.status().await?;
    let dev = stage(&status, "dev")?;
    assert_eq!(dev["phase"], "PausedByFailure", "{dev}");
    assert!(
        dev["phaseReason"]
            .as_str()
            .is_some_and(|r| r.contains("could not apply")),
        "{dev}"
    );
    assert!(
        dev["next"]
            .as_str()
            .is_some_and(|n| n.contains("push a fix")),
        "{dev}"
    );

    let table = fleet.cli.text(&["status"]).await?;
    assert!(table.contains("SYNC"), "{table}");
    assert!(table.contains("PausedByFailure"), "{table}");
    assert!(
        table.contains("NOT IN SYNC") && table.contains("dev-1/app ApplyFailed"),
        "{table}"
    );

    // Filters: the failed cluster is among the problems, a stage lists its own clusters, a
    // page says where the next starts; stages and counts stay the whole fleet's.
    let problems = fleet.cli.json(&["status", "--problems"]).await?;
    let listed = cluster_names(&problems);
    assert!(listed.contains(&"dev-1".to_owned()), "{listed:?}");
    assert_eq!(
        problems["clusterPage"]["total"], 3,
        "{}",
        problems["clusterPage"]
    );
    assert_eq!(
        problems["clusterPage"]["matched"],
        listed.len(),
        "{}",
        problems["clusterPage"]
    );
    assert_eq!(problems["stages"].as_array().map(Vec::len), Some(2));
    let prod = fleet.cli.json(&["status", "--stage", "prod"]).await?;
    let listed = cluster_names(&prod);
    assert!(
        !listed.is_empty() && listed.iter().all(|c| c.starts_with("prod")),
        "{listed:?}"
    );
    let paged = fleet.cli.text(&["status", "--limit", "1"]).await?;
    assert!(
        paged.contains("clusters 1–1 of 3 matching (3 registered); next page: --offset 1"),
        "{paged}"
    );
    assert!(paged.contains("flotilla status --problems"), "{paged}");

    let credentials = fleet.hub.credentials().context("a TLS hub")?;
    let no_token = flotilla_testkit::http::request_tls(
        &credentials.ca_file,
        "GET",
        &format!("https://{}/api/status", fleet.hub.http()),
        &[],
        Vec::new(),
    )
    .await?;
    assert_eq!(no_token.status, 401, "{}", no_token.body);
    let bearer = format!("Bearer {}", credentials.token);
    let signed = [("authorization", bearer.as_str())];
    let dashboard = flotilla_testkit::http::request_tls(
        &credentials.ca_file,
        "GET",
        &format!("https://{}/api/status", fleet.hub.http()),
        &signed,
        Vec::new(),
    )
    .await?;
    let dashboard: Value = serde_json::from_str(&dashboard.body)?;
    assert_eq!(bundle(&dashboard, "dev-1")?["syncState"], "ApplyFailed");
    let only = flotilla_testkit::http::request_tls(
        &credentials.ca_file,
        "GET",
        &format!(
            "https://{}/api/status?problems=true&cluster=dev-*",
            fleet.hub.http()
        ),
        &signed,
        Vec::new(),
    )
    .await?;
    let only: Value = serde_json::from_str(&only.body)?;
    assert_eq!(cluster_names(&only), ["dev-1"], "{}", only["clusterPage"]);
    let refused = flotilla_testkit::http::request_tls(
        &credentials.ca_file,
        "GET",
        &format!("https://{}/api/status?selector=env", fleet.hub.http()),
        &signed,
        Vec::new(),
    )
    .await?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("key=value"), "{}", refused.body);

    // The dashboard in a real browser: the failed bundle is red, with the API server's message.
    if let Some(browser) = Browser::start_with_or_skip(
        "a_refused_apply_is_apply_failed_everywhere",
        1280,
        900,
        &["--ignore-certificate-errors"],
    )
    .await?
    {
        browser
            .sign_in(
                &format!("https://{}/", fleet.hub.http()),
                &credentials.token,
                PATIENCE,
            )
            .await?;
        let attention = browser
            .wait_for_text("#problems", PATIENCE, |t| t.contains("dev-1"))
            .await?;
        assert!(
            attention.contains(message),
            "the message is shown: {attention}"
        );
        let chip = browser
            .wait_for("#problems .bundle", PATIENCE)
            .await?
            .attr("style")
            .await?
            .unwrap_or_default();
        assert!(chip.contains("--Degraded"), "a failed apply is red: {chip}");
        browser
            .wait_for_text("#overview tr:last-child td:nth-child(7)", PATIENCE, |t| {
                t != "0"
            })
            .await?;
        if let Some(dir) = std::env::var_os("FLOTILLA_SCREENSHOTS") {
            let png = browser.client.screenshot().await?;
            std::fs::write(
                std::path::Path::new(&dir).join("dashboard-apply-failed.png"),
                png,
            )?;
        }
        // The bad commit's timeline, from the failed cluster's link: every cluster (both stages
        // track main) was given it and none applied it, each red with the API server's refusal.
        browser
            .click(&format!(r##"#problems a[href="#/commit/{bad}"]"##))
            .await?;
        let timeline = browser
            .wait_for_text("#detail", PATIENCE, |t| {
                t.contains("3 given · 0 applied · 0 healthy · 3 failed")
            })
            .await?;
        assert!(timeline.contains("dev-1"), "{timeline}");
        assert!(
            timeline.contains("apply failed") && timeline.contains("replicas"),
            "why it failed: {timeline}"
        );
        let problem = browser
            .wait_for(r##"#detail a[href="#/cluster/dev-1"]"##, PATIENCE)
            .await?;
        let row_class = browser
            .client
            .execute(
                "return document.querySelector('#detail a[href=\"#/cluster/dev-1\"]').closest('tr').querySelector('td.problem') !== null;",
                vec![],
            )
            .await?;
        assert_eq!(row_class, serde_json::json!(true), "the failure is red");
        let line = flotilla_testkit::http::request_tls(
            &credentials.ca_file,
            "GET",
            &format!("https://{}/api/commits/{}", fleet.hub.http(), &bad[..12]),
            &signed,
            Vec::new(),
        )
        .await?;
        let line: Value = serde_json::from_str(&line.body)?;
        assert_eq!(
            line["counts"],
            serde_json::json!({"given": 3, "applied": 0, "healthy": 0, "failed": 3}),
            "{line}"
        );
        let dev_1 = &line["clusters"][0];
        assert_eq!(dev_1["name"], "dev-1", "{line}");
        assert!(
            dev_1["appliedAt"].is_null() && dev_1["healthyAt"].is_null(),
            "{dev_1}"
        );
        assert!(
            dev_1["problem"]
                .as_str()
                .is_some_and(|p| p.contains("apply failed") && p.contains("replicas")),
            "{dev_1}"
        );
        // dev-1 itself: its Deployment is the object the API server refused, with why.
        problem.click().await?;
        let detail = browser
            .wait_for_text("#detail", PATIENCE, |t| {
                t.contains("Cluster dev-1") && t.contains("Objects")
            })
            .await?;
        assert!(detail.contains("apps/Deployment"), "{detail}");
        let refused_object = browser
            .client
            .execute(
                "const objects = [...document.querySelectorAll('#detail h3')].find(h => h.textContent === 'Objects').nextElementSibling; return [...objects.querySelectorAll('tr')].filter(r => r.textContent.includes('apps/Deployment') && r.textContent.includes('ApplyFailed')).map(r => r.textContent).join('\\n');",
                vec![],
            )
            .await?;
        let refused_object = refused_object.as_str().unwrap_or_default().to_owned();
        assert!(
            refused_object.contains("replicas"),
            "the refused object with the API server's message: {detail}"
        );
        if let Some(dir) = std::env::var_os("FLOTILLA_SCREENSHOTS") {
            let png = browser.client.screenshot().await?;
            std::fs::write(
                std::path::Path::new(&dir).join("dashboard-cluster-apply-failed.png"),
                png,
            )?;
        }
        let low = browser.low_contrast(4.5).await?;
        assert!(low.is_empty(), "hard to read: {low:#?}");
        let errors = browser.console_errors().await?;
        assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
        browser.close().await?;
    }

    let metrics = fleet.metrics().await?;
    let failed = metrics
        .lines()
        .find(|l| l.starts_with("flotilla_bundles_sync{sync_state=\"ApplyFailed\"}"))
        .with_context(|| format!("no ApplyFailed gauge in:\n{metrics}"))?;
    let count: u32 = failed.rsplit(' ').next().unwrap_or_default().parse()?;
    assert!(count >= 1, "{failed}");
    // Labelled: per stage by sync state and health, per cluster, the stage's phase.
    let labelled = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .with_context(|| format!("no `{prefix}` in:\n{metrics}"))
    };
    labelled("flotilla_stage_bundles{stage=\"dev\",sync_state=\"ApplyFailed\"")?;
    labelled("flotilla_stage_phase{stage=\"dev\",phase=\"PausedByFailure\"} 1")?;
    labelled("flotilla_cluster_info{cluster=\"dev-1\",stage=\"dev\"} 1")?;
    labelled("flotilla_cluster_agent_online{cluster=\"dev-1\"} 1")?;
    labelled("flotilla_cluster_bundles_not_synced{cluster=\"dev-1\"} 1")?;
    labelled("flotilla_build_info{version=")?;
    // dev-1's agent says the same from its side: the refused apply, the API server's answers.
    let agent = fleet.agents[0].metrics().await?;
    assert_eq!(fleet.agents[0].cluster(), "dev-1");
    let has = |prefix: &str| agent.lines().any(|l| l.starts_with(prefix));
    assert!(
        has("flotilla_agent_applies_total{result=\"refused\"}"),
        "{agent}"
    );
    assert!(
        has("flotilla_agent_applies_total{result=\"applied\"}"),
        "{agent}"
    );
    assert!(
        has("flotilla_agent_kube_requests_total{verb=\"patch\",code=\"200\"}"),
        "{agent}"
    );
    // The refusal counted by its status: 422 from the simulator; a real API server answers
    // this typed-patch failure with 500.
    assert!(
        agent.lines().any(|l| {
            l.starts_with("flotilla_agent_kube_requests_total{verb=\"patch\",code=\"4")
                || l.starts_with("flotilla_agent_kube_requests_total{verb=\"patch\",code=\"5")
        }),
        "the refusal counted by its status: {agent}"
    );
    assert!(has("flotilla_agent_api_reachable 1"), "{agent}");
    assert!(
        has("flotilla_agent_bundle_health{bundle=\"app\",health=\"Healthy\"} 1"),
        "{agent}"
    );
    labelled("flotilla_agent_streams 3")?;
    labelled("process_cpu_seconds_total ")?;

    repo.edit(
        "bundles/app/deployment.yaml",
        "replicas: three",
        "replicas: ${replicas}",
    )?;
    let fixed = repo.commit("replicas fixed")?;
    let status = fleet.wait_rolled_out(&fixed).await?;
    // The failed rollouts made way for the fix.
    let rollouts = status["rollouts"].as_array().cloned().unwrap_or_default();
    let to_bad: Vec<&Value> = rollouts
        .iter()
        .filter(|r| r["toRevision"] == bad.as_str())
        .collect();
    assert!(
        !to_bad.is_empty(),
        "no rollout of the bad commit: {rollouts:?}"
    );
    for rollout in to_bad {
        assert_eq!(rollout["status"], "superseded", "{rollout}");
    }
    assert_eq!(
        status["counts"]["sync"]["Synced"], 3,
        "{}",
        status["counts"]
    );
    wait::until("dev and prod Idle again", PATIENCE, || async {
        let status = fleet.cli.status().await?;
        let (dev, prod) = (stage(&status, "dev")?, stage(&status, "prod")?);
        Ok(if dev["phase"] == "Idle" && prod["phase"] == "Idle" {
            Probe::Done(())
        } else {
            Probe::NotYet(format!("{dev}\n{prod}"))
        })
    })
    .await?;

    // The event log: a refused action says so, and a stage's pin moving is listed once.
    let refused = fleet.cli.run(&["pause", "prod"]).await?;
    assert!(
        !refused.status.success(),
        "prod has no running rollout to pause"
    );
    let status = fleet.cli.status().await?;
    let events: Vec<String> = status["events"]
        .as_array()
        .context("no events")?
        .iter()
        .map(|e| format!("{} {}", e["subject"], e["message"]))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.contains("stage/prod") && e.contains("pause by") && e.contains("refused")),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| e.contains("\"track by")),
        "a tracked commit is listed once, as the stage's pin: {events:#?}"
    );
    Ok(())
}

/// A stage of a status document.
fn stage<'a>(status: &'a Value, name: &str) -> Result<&'a Value> {
    status["stages"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == name))
        .with_context(|| format!("no stage {name} in {status}"))
}

/// The app bundle of `cluster` in a status document.
fn bundle<'a>(status: &'a Value, cluster: &str) -> Result<&'a Value> {
    status["clusters"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == cluster))
        .and_then(|c| c["bundles"].as_array())
        .and_then(|bundles| bundles.iter().find(|b| b["name"] == "app"))
        .with_context(|| format!("no app bundle for {cluster} in {status}"))
}

fn cluster_names(status: &Value) -> Vec<String> {
    status["clusters"]
        .as_array()
        .map(|clusters| {
            clusters
                .iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
