//! The `flotilla-agent run` process against a hub: it receives its cluster's rendered bundle,
//! applies it to the (simulated) cluster and reports Applied and Healthy back into the hub's
//! replicated state; killed with SIGKILL, its cluster is marked offline.

// The agent protocol's fixtures, shared with the hub's tests.
use flotilla_testkit::protocol as support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use flotilla_core::Health;
use flotilla_hub::state::health::HealthKey;
use support::*;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_process_reports_health_and_goes_offline_when_killed() -> Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let hub = single_hub(&dir.path().join("hub"), None).await?;
    let sim = sim(1, Duration::from_millis(300)).await?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
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

    let child = Command::new(env!("CARGO_BIN_EXE_flotilla-agent"))
        .arg("run")
        .args([
            "--hub",
            &hub.api_address().to_string(),
            "--cluster",
            "sim-0",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--context", "sim-0", "--heartbeat-interval", "200ms"])
        // The hub here is an in-process one without TLS.
        .arg("--insecure")
        .arg("--state-dir")
        .arg(dir.path().join("agent"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut agent = Killed(child);

    let key = HealthKey {
        cluster: "sim-0".into(),
        bundle: "web".into(),
    };
    let hash = web.hash();
    eventually("web applied and healthy, as the hub records it", || {
        let record = hub.node().state().health.get(&key).cloned();
        async move { Ok(record.filter(|r| r.applied == Some(hash) && r.health == Health::Healthy)) }
    })
    .await?;
    eventually("sim-0 online", || {
        let online = hub.node().state().clusters["sim-0"].online;
        async move { Ok(online.then_some(())) }
    })
    .await?;

    agent.0.kill()?;
    agent.0.wait()?;
    eventually("sim-0 offline", || {
        let online = hub.node().state().clusters["sim-0"].online;
        async move { Ok((!online).then_some(())) }
    })
    .await?;
    assert!(hub.sync().clusters().is_empty(), "the stream is gone");
    hub.shutdown().await;
    Ok(())
}
