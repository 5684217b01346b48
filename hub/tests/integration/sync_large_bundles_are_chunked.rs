//! A bundle larger than the agent's message limit travels in chunks below the limit and
//! arrives whole: reassembled, checked against its hash and applied.

use crate::support::sync as support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use flotilla_hub::state::source::Blob;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_larger_than_the_message_limit_arrives_whole() -> Result<()> {
    init_tracing();
    const LIMIT: usize = 64 * 1024;
    let dir = tempfile::tempdir()?;
    let hub = single_hub(dir.path(), None).await?;
    let sim = sim(1, Duration::from_millis(100)).await?;

    let mut objects = vec![namespace()];
    let payloads: Vec<String> = (0..8).map(|i| noise(i + 1, 40 * 1024)).collect();
    for (i, payload) in payloads.iter().enumerate() {
        objects.push(config_map(&format!("big-{i}"), &[("payload", payload)]));
    }
    let big = bundle("big", objects)?;
    let blob = Blob::from_content(&big.to_blob())?;
    assert!(
        blob.compressed.len() > 2 * LIMIT,
        "the compressed bundle ({} bytes) must exceed the limit at least twice",
        blob.compressed.len()
    );
    propose_all(&hub, vec![register("sim-0")]).await?;
    publish(
        &hub,
        release("c1", &BTreeMap::from([("sim-0", vec![big])]))?,
    )
    .await?;

    let mut link = test_link(vec![hub.api_address().to_string()], "sim-0");
    link.max_message_bytes = LIMIT;
    let a = agent(&sim, "sim-0", link)?;
    for (i, payload) in payloads.iter().enumerate() {
        let name = format!("big-{i}");
        let found = eventually(&format!("{name} applied"), || {
            let client = a.client.clone();
            let name = name.clone();
            async move { Ok(config_map_in(&client, &name).await?.and_then(|cm| cm.data)) }
        })
        .await?;
        assert_eq!(found.get("payload"), Some(payload), "{name} arrived whole");
    }
    let stats = a.link.stats();
    assert_eq!(stats.bundles_received, 1);
    assert_eq!(stats.bundles_refused, 0);
    assert_eq!(stats.bundle_bytes_received, blob.compressed.len() as u64);
    assert!(
        stats.chunks_received as usize > blob.compressed.len() / LIMIT,
        "{} chunks for {} bytes",
        stats.chunks_received,
        blob.compressed.len()
    );
    assert_eq!(hub.sync().stats().chunks_sent, stats.chunks_received);

    a.link.shutdown().await;
    hub.shutdown().await;
    Ok(())
}
