//! A cluster that answers 500s, hangs up or answers too slowly: the agent retries, says clearly
//! what is wrong, never prunes after a partial apply, and finishes once the cluster recovers.

use crate::support::sim as support;

use std::time::Duration;

use anyhow::Result;
use flotilla_agent::retry::RetryPolicy;
use flotilla_agent::{Event, ObjectMessage, Phase};
use flotilla_sim::{Fault, Sim, SimConfig};
use support::*;

/// Waits for the first failed apply of `revision` and returns its errors and retry delay.
async fn failed(
    reports: &mut tokio::sync::broadcast::Receiver<flotilla_agent::Report>,
    revision: &str,
) -> Result<(Vec<ObjectMessage>, bool, Option<Duration>)> {
    wait_for(reports, "shop", |r| match &r.event {
        Event::ApplyFailed {
            errors,
            nothing_written,
            retry_in,
        } if r.revision == revision => Some((errors.clone(), *nothing_written, *retry_in)),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn server_errors_are_retried_and_reported_until_the_cluster_recovers() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let (engine, mut reports) = engine(&sim, None)?;
    engine.apply(revision(
        "shop",
        "r1",
        vec![config_map("a", "1"), config_map("b", "1")],
    ))?;
    applied(&mut reports, "shop", "r1").await?;

    sim.set_fault(CLUSTER, Fault::ServerErrors);
    engine.apply(revision(
        "shop",
        "r2",
        vec![config_map("a", "2"), config_map("c", "1")],
    ))?;
    let (errors, nothing_written, retry_in) = failed(&mut reports, "r2").await?;
    assert!(nothing_written);
    assert!(retry_in.is_some(), "a server error is retried");
    assert!(errors[0].message.contains("500"), "{errors:?}");
    assert!(errors[0].message.contains("3 attempts"), "{errors:?}");
    let status = &engine.status()[0];
    assert_eq!(status.phase, Phase::Retrying);
    assert!(!status.errors.is_empty());
    // Retries keep failing while the fault lasts.
    failed(&mut reports, "r2").await?;

    sim.clear_fault(CLUSTER);
    assert_eq!(applied(&mut reports, "shop", "r2").await?, (2, 1));
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "b")
            .await?
            .is_none()
    );
    assert_eq!(engine.status()[0].phase, Phase::Applied);
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_failure_half_way_through_applying_prunes_nothing() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let client = client(&sim)?;
    let mut settings = config(None);
    settings.revision_retry_initial = Duration::from_secs(30);
    settings.concurrency = 2;
    let (engine, mut reports) = engine_with(&sim, settings)?;
    engine.apply(revision("shop", "r1", vec![config_map("old", "1")]))?;
    applied(&mut reports, "shop", "r1").await?;

    // Slow enough that the fault can be set while objects are being written.
    sim.set_fault(CLUSTER, Fault::Latency(Duration::from_millis(20)));
    let before = sim.object_count(CLUSTER).unwrap_or(0);
    let objects: Vec<_> = (0..40)
        .map(|i| config_map(&format!("new-{i}"), "1"))
        .collect();
    engine.apply(revision("shop", "r2", objects))?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    // The inventory update comes first, then the objects: wait for a few objects.
    while sim.object_count(CLUSTER).unwrap_or(0) < before + 4 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the apply never started writing"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sim.set_fault(CLUSTER, Fault::ServerErrors);
    let (_, nothing_written, retry_in) = failed(&mut reports, "r2").await?;
    assert!(!nothing_written);
    assert!(retry_in.is_some());
    sim.clear_fault(CLUSTER);

    let mut written = 0;
    for i in 0..40 {
        if get(&client, "v1", "ConfigMap", Some("app"), &format!("new-{i}"))
            .await?
            .is_some()
        {
            written += 1;
        }
    }
    assert!(
        written > 0 && written < 40,
        "the apply stopped half-way ({written} of 40 written)"
    );
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "old")
            .await?
            .is_some(),
        "nothing is pruned after a partial apply"
    );
    let inventory = get(
        &client,
        "v1",
        "ConfigMap",
        Some("flotilla-system"),
        "flotilla-bundle-shop",
    )
    .await?
    .expect("inventory");
    let listed = inventory["data"]["objects"].as_str().unwrap_or_default();
    assert!(
        listed.contains("\"name\":\"old\"") && listed.contains("\"name\":\"new-39\""),
        "{listed}"
    );
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_unreachable_or_slow_cluster_is_reported_and_retried() -> Result<()> {
    let sim = Sim::start(SimConfig {
        unreachable_hold: Duration::from_millis(200),
        rollout_delay: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await?;
    let mut settings = config(None);
    settings.retry = RetryPolicy {
        attempts: 2,
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(50),
        request_timeout: Duration::from_millis(500),
    };
    let (engine, mut reports) = engine_with(&sim, settings)?;

    sim.set_fault(CLUSTER, Fault::Unreachable);
    engine.apply(revision("shop", "r1", vec![config_map("a", "1")]))?;
    let (errors, _, retry_in) = failed(&mut reports, "r1").await?;
    assert!(retry_in.is_some());
    assert!(errors[0].message.contains("2 attempts"), "{errors:?}");

    sim.set_fault(CLUSTER, Fault::Latency(Duration::from_secs(2)));
    let (errors, _, retry_in) = failed(&mut reports, "r1").await?;
    assert!(retry_in.is_some());
    assert!(
        errors[0]
            .message
            .contains("no answer from the API server within 0.5s"),
        "{errors:?}"
    );

    sim.clear_fault(CLUSTER);
    applied(&mut reports, "shop", "r1").await?;
    engine.shutdown().await;
    Ok(())
}
