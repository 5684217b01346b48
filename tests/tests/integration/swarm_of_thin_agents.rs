//! `bench swarm` works end to end at a small size: a 3-node TLS group, thin agents in two
//! worker processes registering with bootstrap tokens and streaming with their certificates,
//! two releases reaching every agent; then the leader is killed (SIGKILL) with every agent
//! streaming — they all stream again and not one bundle is sent twice — and a node joins the
//! group and serves every blob of both releases byte for byte, fetched from its peers. The
//! benchmark's own figures at 1,000 and 10,000 agents are in docs/BENCHMARKS.md.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use flotilla_testkit::binaries;
use serde_json::Value;

#[tokio::test]
async fn forty_thin_agents_in_two_processes_each_receive_both_releases() -> Result<()> {
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(binaries::BENCH.path()?)
            .args(["swarm", "--agents", "40", "--per-process", "20"])
            .arg("--hub-bin")
            .arg(binaries::HUB.path()?)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("bench swarm did not finish within 300 s")??;
    ensure!(
        output.status.success(),
        "bench swarm failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).context("bench swarm's JSON")?;
    assert_eq!(report["agents"], 40);
    assert_eq!(report["processes"], 2);
    let releases = report["releases"].as_array().context("releases")?;
    assert_eq!(releases.len(), 2, "{report}");
    for release in releases {
        // Every agent received it: the figures cover all forty, so the slowest took some time.
        let max = release["fanoutMs"]["max"]
            .as_u64()
            .context("fanoutMs.max")?;
        ensure!(max > 0, "release without a measured fan-out: {release}");
        ensure!(
            release["renderEntryBytes"].as_u64().unwrap_or(0) > 0,
            "no render entry size: {release}"
        );
    }
    let failover = &report["failover"];
    assert_eq!(failover["bundlesResent"], 0, "{failover}");
    ensure!(
        failover["allStreamingAgainMs"].as_i64().is_some(),
        "no failover figure: {failover}"
    );
    ensure!(
        failover["newNode"]["servesEveryBlobMs"].as_u64().is_some(),
        "the new node did not serve every blob: {failover}"
    );
    assert_eq!(failover["newNode"]["blobs"], 80, "{failover}");
    for hub in report["hubs"].as_array().context("hubs")? {
        ensure!(
            hub["rssStreamingKiB"].as_u64().unwrap_or(0) > 0,
            "no RSS figure: {hub}"
        );
    }
    Ok(())
}
