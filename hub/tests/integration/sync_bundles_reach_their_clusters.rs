//! A rendered revision in the hub's state reaches each cluster's agent over the Sync stream —
//! each agent only its own cluster's bundles — is applied to the (simulated) cluster, and the
//! agent's health comes back into the replicated state. A bundle removed from the revision is
//! pruned, and a bundle whose hash did not change is not sent again.

use crate::support::sync as support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use flotilla_core::Health;
use flotilla_hub::state::health::HealthKey;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agent_applies_its_own_bundles_and_reports_health_back() -> Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let hub = single_hub(dir.path(), None).await?;
    let sim = sim(2, Duration::from_millis(200)).await?;

    let web = |cluster: &str| -> Result<_> {
        bundle(
            "web",
            vec![
                namespace(),
                config_map("web-config", &[("cluster", cluster)]),
                deployment("web"),
            ],
        )
    };
    let extra = bundle(
        "extra",
        vec![
            namespace_named("extra"),
            config_map_of("extra", "extra-config", &[("x", "1")]),
        ],
    )?;
    let (web0, web1) = (web("sim-0")?, web("sim-1")?);
    let v1 = BTreeMap::from([
        ("sim-0", vec![web0.clone(), extra.clone()]),
        ("sim-1", vec![web1.clone()]),
    ]);
    propose_all(&hub, vec![register("sim-0"), register("sim-1")]).await?;
    publish(&hub, release("c1", &v1)?).await?;

    let api = hub.api_address().to_string();
    let a = agent(&sim, "sim-0", test_link(vec![api.clone()], "sim-0"))?;
    let b = agent(&sim, "sim-1", test_link(vec![api], "sim-1"))?;

    // Health comes back: applied at the rendered hash, Healthy once the Deployment is ready.
    for (cluster, rendered) in [("sim-0", &web0), ("sim-0", &extra), ("sim-1", &web1)] {
        let key = HealthKey {
            cluster: cluster.to_owned(),
            bundle: rendered.bundle.clone(),
        };
        let hash = rendered.hash();
        eventually(&format!("{cluster}/{} healthy", rendered.bundle), || {
            let record = hub.node().state().health.get(&key).cloned();
            async move {
                Ok(record.filter(|r| r.applied == Some(hash) && r.health == Health::Healthy))
            }
        })
        .await?;
    }
    for cluster in ["sim-0", "sim-1"] {
        eventually(&format!("{cluster} online"), || {
            let online = hub.node().state().clusters[cluster].online;
            async move { Ok(online.then_some(())) }
        })
        .await?;
    }

    // Each cluster holds its own variant, and only its own bundles crossed its stream.
    let data = |cm: Option<k8s_openapi::api::core::v1::ConfigMap>| {
        cm.and_then(|cm| cm.data)
            .and_then(|d| d.get("cluster").cloned())
    };
    assert_eq!(
        data(config_map_in(&a.client, "web-config").await?).as_deref(),
        Some("sim-0")
    );
    assert_eq!(
        data(config_map_in(&b.client, "web-config").await?).as_deref(),
        Some("sim-1")
    );
    assert!(
        config_map_at(&b.client, "extra", "extra-config")
            .await?
            .is_none()
    );
    assert_eq!(a.link.stats().bundles_received, 2);
    assert_eq!(b.link.stats().bundles_received, 1);
    assert_eq!(hub.sync().stats().bundles_sent, 3);

    // v2 drops `extra` for sim-0 and keeps `web` unchanged: a removal, no resend.
    let v2 = BTreeMap::from([("sim-0", vec![web0.clone()]), ("sim-1", vec![web1.clone()])]);
    publish(&hub, release("c2", &v2)?).await?;
    eventually("extra-config pruned from sim-0", || {
        let client = a.client.clone();
        async move {
            let gone = config_map_at(&client, "extra", "extra-config")
                .await?
                .is_none();
            Ok(gone.then_some(()))
        }
    })
    .await?;
    let stats = a.link.stats();
    assert_eq!(stats.removals_received, 1);
    assert_eq!(stats.bundles_received, 2, "web's hash did not change");
    assert!(config_map_in(&a.client, "web-config").await?.is_some());
    assert_eq!(
        a.engine
            .held()
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        vec!["web"]
    );
    let key = HealthKey {
        cluster: "sim-0".into(),
        bundle: "extra".into(),
    };
    eventually("extra recorded as removed", || {
        let record = hub.node().state().health.get(&key).cloned();
        async move { Ok(record.filter(|r| r.applied.is_none())) }
    })
    .await?;

    a.link.shutdown().await;
    b.link.shutdown().await;
    hub.shutdown().await;
    Ok(())
}
