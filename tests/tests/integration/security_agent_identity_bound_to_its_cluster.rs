//! An agent acts for its cluster's name only while it talks to the Kubernetes cluster the name
//! is bound to, with real `flotilla-sim`, `flotilla-hub` and `flotilla-agent` processes:
//! dev-1's state directory (credentials and stored bundles) copied to an agent pointed at
//! prod-eu-1 is refused (audited, counted, shown in `flotilla status`), enforces none of dev-1's
//! stored bundles there, and backs off instead of reconnecting in a loop; a
//! second agent of dev-1 itself is refused while the first streams; the rightful agent keeps
//! its stream and nobody's objects change. A cluster rebuilt under its name (a new kube-system
//! UID) is refused until `flotilla cluster reset-identity` lets it in.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use flotilla_testkit::agent::{AgentProcess, AgentSetup};
use flotilla_testkit::fleet::{Fleet, FleetOptions};
use flotilla_testkit::small_fleet;
use flotilla_testkit::wait::{PATIENCE, Probe, until};
use serde_json::Value;

/// A cluster's entry in `flotilla status -o json`.
fn cluster<'a>(status: &'a Value, name: &str) -> Result<&'a Value> {
    status["clusters"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .with_context(|| format!("{name} missing from the status: {status}"))
}

/// The resourceVersions of the app ConfigMap and Deployment in `cluster`: any write by any
/// agent moves them.
async fn app_versions(fleet: &Fleet, cluster: &str) -> Result<(Value, Value)> {
    let config = fleet
        .sim()
        .get(cluster, "v1", "ConfigMap", Some("app"), "app")
        .await?
        .with_context(|| format!("no ConfigMap app/app in {cluster}"))?;
    let deployment = fleet
        .sim()
        .get(cluster, "apps/v1", "Deployment", Some("app"), "app")
        .await?
        .with_context(|| format!("no Deployment app/app in {cluster}"))?;
    Ok((
        config["metadata"]["resourceVersion"].clone(),
        deployment["metadata"]["resourceVersion"].clone(),
    ))
}

/// A counter of the hub's `/metrics`, 0 when absent.
async fn metric(fleet: &Fleet, series: &str) -> Result<f64> {
    let credentials = fleet.hub.credentials().context("a hub with TLS")?;
    let url = format!("https://{}/metrics", fleet.hub.http());
    let answer =
        flotilla_testkit::http::request_tls(&credentials.ca_file, "GET", &url, &[], Vec::new())
            .await?;
    ensure!(answer.status == 200, "/metrics answered {}", answer.status);
    Ok(answer
        .body
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0))
}

/// Waits until an agent's log has a line containing `text`; returns that line.
async fn logged(agent: &mut AgentProcess, text: &str) -> Result<String> {
    until(&format!("the agent to log {text:?}"), PATIENCE, || {
        let tail = agent.process().stderr_tail();
        async move {
            Ok(match tail.lines().find(|l| l.contains(text)) {
                Some(line) => Probe::Done(line.to_owned()),
                None => Probe::NotYet(tail.lines().rev().take(5).collect::<Vec<_>>().join("\n")),
            })
        }
    })
    .await
}

/// `flotilla audit` events denied to dev-1's agent whose reason contains `text`.
async fn denials(fleet: &Fleet, text: &str) -> Result<Vec<Value>> {
    let audit = fleet
        .cli
        .json(&["audit", "--actor", "agent:cluster dev-1", "--limit", "1000"])
        .await?;
    Ok(audit
        .as_array()
        .context("an audit list")?
        .iter()
        .filter(|e| {
            e["outcome"] == "denied"
                && e["target"] == "cluster/dev-1"
                && e["reason"].as_str().is_some_and(|r| r.contains(text))
        })
        .cloned()
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copied_credentials_on_another_cluster_and_a_second_agent_are_refused() -> Result<()> {
    let (repo, first) = small_fleet::repository()?;
    let mut fleet = Fleet::start(&repo, small_fleet::INVENTORY, FleetOptions::default()).await?;
    fleet.wait_rolled_out(&first).await?;
    let dev_uid = fleet.sim().kube_system_uid("dev-1").await?;
    let prod_uid = fleet.sim().kube_system_uid("prod-eu-1").await?;
    let status = fleet.cli.status().await?;
    assert_eq!(
        cluster(&status, "dev-1")?["kubeSystemUid"],
        dev_uid.as_str()
    );
    let before = (
        app_versions(&fleet, "dev-1").await?,
        app_versions(&fleet, "prod-eu-1").await?,
    );
    let dev_state = fleet
        .agents
        .iter()
        .find(|a| a.cluster() == "dev-1")
        .context("dev-1's agent")?
        .state_dir()
        .to_path_buf();

    // dev-1's whole state directory copied to an agent whose kubeconfig points at prod-eu-1.
    let mut impostor = AgentProcess::start(
        &fleet.hub,
        fleet.sim().kubeconfig(),
        AgentSetup {
            context: "prod-eu-1".into(),
            state_from: Some(dev_state.clone()),
            ..AgentSetup::new("dev-1")
        },
    )?;
    let set_aside = logged(&mut impostor, "held another cluster's bundles").await?;
    assert!(set_aside.contains(&dev_uid), "{set_aside}");
    let refusal = logged(&mut impostor, "the hub refused this agent").await?;
    assert!(
        refusal.contains(&dev_uid)
            && refusal.contains(&prod_uid)
            && refusal.contains("flotilla cluster reset-identity dev-1"),
        "{refusal}"
    );
    let conflict = until("the conflict in flotilla status", PATIENCE, || async {
        let status = fleet.cli.status().await?;
        let conflict = cluster(&status, "dev-1")?["identityConflict"].clone();
        Ok(match conflict["kubeSystemUid"] == prod_uid.as_str() {
            true => Probe::Done(conflict),
            false => Probe::NotYet(status.to_string()),
        })
    })
    .await?;
    assert!(
        conflict["message"]
            .as_str()
            .is_some_and(|m| m.contains("reset-identity dev-1")),
        "{conflict}"
    );
    let table = fleet.cli.text(&["status"]).await?;
    assert!(
        table.contains("IDENTITY CONFLICT") && table.contains(&prod_uid),
        "{table}"
    );
    ensure!(
        !denials(&fleet, &prod_uid).await?.is_empty(),
        "the impostor's refusal is not audited"
    );

    // It backs off: a handful of attempts where a tight loop made a hundred.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let conflicts = metric(
        &fleet,
        "flotilla_agent_identity_conflicts_total{cluster=\"dev-1\"}",
    )
    .await?;
    assert!(
        (1.0..=3.0).contains(&conflicts),
        "{conflicts} conflicting hellos in about 6 s"
    );
    drop(impostor);

    // A second agent of dev-1 itself, with the same credentials, while the first streams.
    let mut second = AgentProcess::start(
        &fleet.hub,
        fleet.sim().kubeconfig(),
        AgentSetup {
            credentials_from: Some(dev_state),
            ..AgentSetup::new("dev-1")
        },
    )?;
    logged(
        &mut second,
        "another agent already streams for cluster 'dev-1'",
    )
    .await?;
    until("the second agent's refusal audited", PATIENCE, || async {
        Ok(
            match denials(&fleet, "another agent already streams")
                .await?
                .len()
            {
                0 => Probe::NotYet("no such denial".into()),
                _ => Probe::Done(()),
            },
        )
    })
    .await?;
    drop(second);

    // The rightful agent kept its stream, and no object of either cluster was written.
    let rightful = fleet
        .agents
        .iter_mut()
        .find(|a| a.cluster() == "dev-1")
        .context("dev-1's agent")?;
    let log = rightful.process().stderr_tail();
    assert!(
        !log.contains("hub stream ended") && !log.contains("refused"),
        "{log}"
    );
    let status = fleet.cli.status().await?;
    assert_eq!(cluster(&status, "dev-1")?["online"], true);
    assert_eq!(
        cluster(&status, "dev-1")?["kubeSystemUid"],
        dev_uid.as_str()
    );
    let after = (
        app_versions(&fleet, "dev-1").await?,
        app_versions(&fleet, "prod-eu-1").await?,
    );
    assert_eq!(before, after, "objects changed");
    Ok(())
}

/// One dev cluster: enough for a rebuild.
const ONE_CLUSTER: &str = "\
apiVersion: flotilla.dev/v1
kind: ClusterInventory
clusters:
  - name: dev-1
    labels: {env: dev, region: eu}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_cluster_is_refused_until_an_admin_resets_its_identity() -> Result<()> {
    let (repo, first) = small_fleet::repository()?;
    let mut fleet = Fleet::start(&repo, ONE_CLUSTER, FleetOptions::default()).await?;
    fleet.wait_rolled_out_on(&first, &["dev-1"]).await?;
    let old_uid = fleet.sim().kube_system_uid("dev-1").await?;

    // The cluster is rebuilt behind the same address; its agent's pod restarts.
    fleet.sim_mut().rebuild_cluster("dev-1").await?;
    let new_uid = fleet.sim().kube_system_uid("dev-1").await?;
    assert_ne!(old_uid, new_uid);
    let agent = fleet.agents.first_mut().context("dev-1's agent")?;
    agent.setup_mut().max_backoff = Some("2s".into());
    agent.restart(&fleet.hub)?;
    until("the rebuilt cluster refused", PATIENCE, || async {
        let status = fleet.cli.status().await?;
        let dev = cluster(&status, "dev-1")?;
        Ok(
            match dev["identityConflict"]["kubeSystemUid"] == new_uid.as_str()
                && dev["online"] == false
            {
                true => Probe::Done(()),
                false => Probe::NotYet(dev.to_string()),
            },
        )
    })
    .await?;

    let reset = fleet
        .cli
        .text(&["cluster", "reset-identity", "dev-1"])
        .await?;
    assert!(reset.contains("the next agent to connect binds"), "{reset}");
    fleet.wait_rolled_out_on(&first, &["dev-1"]).await?;
    let status = fleet.cli.status().await?;
    let dev = cluster(&status, "dev-1")?;
    assert_eq!(dev["kubeSystemUid"], new_uid.as_str());
    assert!(dev.get("identityConflict").is_none(), "{dev}");
    let audit = fleet.cli.json(&["audit", "--limit", "1000"]).await?;
    let events = audit.as_array().context("an audit list")?;
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "cluster.reset-identity"
                && e["outcome"] == "succeeded"
                && e["actor"] == "token:initial-admin"),
        "{audit}"
    );
    assert!(
        events.iter().any(|e| e["action"] == "cluster.identity.bind"
            && e["detail"].as_str().is_some_and(|d| d.contains(&new_uid))),
        "{audit}"
    );
    Ok(())
}
