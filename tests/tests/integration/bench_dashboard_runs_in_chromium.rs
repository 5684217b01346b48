//! `bench dashboard` works end to end at a small size: a hub with a synthetic fleet whose
//! agents all reported every bundle Healthy, the page loaded and updated in Chromium, the
//! timeline and cluster reads timed, and its JSON says so. Its figures at 1,000 and 10,000
//! clusters are in docs/BENCHMARKS.md.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use flotilla_testkit::binaries;
use serde_json::Value;

#[tokio::test]
async fn bench_dashboard_measures_a_small_fleet_in_chromium() -> Result<()> {
    let test = "bench_dashboard_measures_a_small_fleet_in_chromium";
    let Some(browser) = flotilla_testkit::browser::Browser::start_or_skip(test, 800, 600).await?
    else {
        return Ok(());
    };
    // Only to know chromium is here (the bench starts its own).
    browser.close().await?;
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(binaries::BENCH.path()?)
            .args(["dashboard", "--clusters", "40", "--updates", "2"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("bench dashboard did not finish within 300 s")??;
    ensure!(
        output.status.success(),
        "bench dashboard failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).context("its JSON")?;
    assert_eq!(report["clusters"], 40, "{report}");
    assert_eq!(report["agentsReported"], true, "{report}");
    assert_eq!(
        report["healthReports"], 400,
        "every bundle of every cluster: {report}"
    );
    for figure in [
        "loadMs",
        "updateMs",
        "statusMs",
        "timelineMs",
        "clusterMs",
        "computeMs",
    ] {
        let p99 = report[figure]["p99"].as_f64().unwrap_or(-1.0);
        assert!(p99 > 0.0, "{figure}: {report}");
    }
    assert_eq!(report["updateMs"]["samples"], 2, "{report}");
    Ok(())
}
