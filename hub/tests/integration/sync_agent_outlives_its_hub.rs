//! With no hub reachable the agent keeps enforcing the last desired state it was given, and
//! what happened meanwhile reaches the hub once it is back — without resending any bundle.

use crate::support::sync as support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use flotilla_agent::Phase;
use flotilla_core::Health;
use flotilla_hub::state::health::HealthKey;
use k8s_openapi::api::core::v1::ConfigMap;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_a_hub_keeps_enforcing_and_its_reports_resume() -> Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let api = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string();
    let hub = single_hub(dir.path(), Some(&api)).await?;
    // Deployments take a while to become ready, so the bundle turns Healthy while the hub is down.
    let sim = sim(1, Duration::from_secs(2)).await?;
    let web = bundle(
        "web",
        vec![
            namespace(),
            config_map("web-config", &[("k", "v")]),
            deployment("web"),
        ],
    )?;
    propose_all(&hub, vec![register("sim-0")]).await?;
    publish(
        &hub,
        release("c1", &BTreeMap::from([("sim-0", vec![web.clone()])]))?,
    )
    .await?;
    let a = agent(&sim, "sim-0", test_link(vec![api.clone()], "sim-0"))?;

    let key = HealthKey {
        cluster: "sim-0".into(),
        bundle: "web".into(),
    };
    let hash = web.hash();
    let before = eventually("web applied, as recorded by the hub", || {
        let record = hub.node().state().health.get(&key).cloned();
        async move { Ok(record.filter(|r| r.applied == Some(hash))) }
    })
    .await?;
    assert_ne!(
        before.health,
        Health::Healthy,
        "the Deployment is still rolling out"
    );
    hub.shutdown().await;
    drop(hub);

    // Drift with no hub: the engine restores the object from its own desired state.
    let api_cm: kube::Api<ConfigMap> = kube::Api::namespaced(a.client.clone(), "app");
    api_cm
        .delete("web-config", &kube::api::DeleteParams::default())
        .await?;
    eventually("web-config restored without a hub", || {
        let client = a.client.clone();
        async move { Ok(config_map_in(&client, "web-config").await?.map(|_| ())) }
    })
    .await?;
    eventually("web healthy on the agent", || {
        let status = a.engine.status();
        async move {
            Ok(status
                .iter()
                .find(|s| s.name == "web")
                .filter(|s| s.phase == Phase::Applied)
                .and_then(|s| s.health.as_ref())
                .filter(|h| h.health == Health::Healthy)
                .map(|_| ()))
        }
    })
    .await?;
    assert!(a.link.watch_connection().borrow().is_none());

    let hub = single_hub(dir.path(), Some(&api)).await?;
    eventually("the hub learns web became healthy while it was down", || {
        let record = hub.node().state().health.get(&key).cloned();
        async move { Ok(record.filter(|r| r.health == Health::Healthy && r.applied == Some(hash))) }
    })
    .await?;
    let stats = a.link.stats();
    assert_eq!(stats.sessions, 2);
    assert_eq!(stats.bundles_received, 1, "nothing changed, nothing resent");
    assert_eq!(hub.sync().stats().bundles_sent, 0);

    a.link.shutdown().await;
    hub.shutdown().await;
    Ok(())
}
