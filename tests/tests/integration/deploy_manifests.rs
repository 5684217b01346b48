//! The Kubernetes manifests in `deploy/` are what an operator applies: each base renders with
//! `kubectl kustomize`, passes a server-side dry run and applies to a cluster (the simulator,
//! through the real kubectl), and the containers' arguments, environment and config file start
//! our real binaries. Without kubectl these tests fail under `CI=true` and are skipped loudly
//! otherwise.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use flotilla_sim::{Sim, SimConfig};
use flotilla_testkit::binaries;
use flotilla_testkit::hub::{HubOptions, HubProcess};
use flotilla_testkit::manifests::{
    BASES, Mounts, PodContainer, Rendered, hub_statefulset_answers_its_probes, items, kubectl,
    kubectl_or_skip, mount_path, read_back, text,
};
use flotilla_testkit::process::Process;
use flotilla_testkit::small_fleet;
use flotilla_testkit::wait;
use kube::api::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_base_passes_a_server_dry_run_and_applies_to_a_cluster() -> Result<()> {
    if !kubectl_or_skip("every_base_passes_a_server_dry_run_and_applies_to_a_cluster") {
        return Ok(());
    }
    let sim = Sim::start(SimConfig::default()).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let cache = dir.path().join("cache").to_string_lossy().into_owned();
    // `kubectl apply --server-side` of YAML or JSON on stdin, with a private discovery cache.
    let apply = |dry_run: bool, input: &[u8]| {
        let mut args = vec!["--kubeconfig", &kubeconfig, "--cache-dir", &cache];
        args.extend(["apply", "--server-side", "-f", "-"]);
        if dry_run {
            args.push("--dry-run=server");
        }
        kubectl(&args, input)
    };
    let client = kube::Client::try_from(kube::Config::new(sim.cluster_url("sim-0").parse()?))?;
    let rendered: Vec<Rendered> = BASES
        .into_iter()
        .map(Rendered::render)
        .collect::<Result<_>>()?;
    // Every container runs the image of this version.
    let image = format!(
        "ghcr.io/flotilla-dev/flotilla:{}",
        env!("CARGO_PKG_VERSION")
    );
    for base in &rendered {
        let workloads = base
            .objects
            .iter()
            .filter(|o| o["spec"]["template"].is_object());
        for container in workloads.flat_map(|o| items(&o["spec"]["template"]["spec"]["containers"]))
        {
            assert_eq!(container["image"], image.as_str(), "deploy/{}", base.base);
        }
    }

    // The API server refuses namespaced objects in a namespace that does not exist, dry run or
    // not, so the namespace is applied first, as `kubectl apply -f` of a whole base does.
    let namespace = rendered[0].only("Namespace")?;
    apply(false, &serde_json::to_vec(namespace)?)?;

    for base in &rendered {
        let out = apply(true, base.yaml.as_bytes())
            .with_context(|| format!("server dry run of deploy/{}", base.base))?;
        let dry = out
            .lines()
            .filter(|l| l.ends_with("(server dry run)"))
            .count();
        assert_eq!(
            dry,
            base.objects.len(),
            "deploy/{}: every object passes the dry run:\n{out}",
            base.base
        );
        for object in base.objects.iter().filter(|o| o["kind"] != "Namespace") {
            assert!(
                read_back(&client, object).await?.is_none(),
                "the dry run of deploy/{} wrote {}",
                base.base,
                object["metadata"]["name"]
            );
        }
    }

    for base in &rendered {
        apply(false, base.yaml.as_bytes())
            .with_context(|| format!("applying deploy/{}", base.base))?;
        for object in &base.objects {
            let stored = read_back(&client, object).await?.with_context(|| {
                format!(
                    "deploy/{}: {} {} was applied but is not in the cluster",
                    base.base, object["kind"], object["metadata"]["name"]
                )
            })?;
            if object["kind"] == "ConfigMap" {
                assert_eq!(stored.data["data"], object["data"]);
            }
        }
    }
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_statefulset_starts_a_node_that_answers_its_probes() -> Result<()> {
    if !kubectl_or_skip("the_hub_statefulset_starts_a_node_that_answers_its_probes") {
        return Ok(());
    }
    let hub = Rendered::render("hub")?;
    hub_statefulset_answers_its_probes(&hub).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_deployment_registers_and_applies_its_cluster_s_bundle() -> Result<()> {
    if !kubectl_or_skip("the_agent_deployment_registers_and_applies_its_cluster_s_bundle") {
        return Ok(());
    }
    let agent = Rendered::render("agent")?;
    let deployment = agent.only("Deployment")?;
    assert_eq!(deployment["spec"]["replicas"], 1, "one agent per cluster");
    assert_eq!(
        deployment["spec"]["strategy"]["type"], "Recreate",
        "an old and a new agent never run together"
    );
    let pod_spec = &deployment["spec"]["template"]["spec"];
    let container = items(&pod_spec["containers"])
        .find(|c| c["name"] == "agent")
        .context("the Deployment has no container named agent")?;
    let namespace = text(&deployment["metadata"]["namespace"], "namespace")?;

    // The state survives the pod: a claim, not an emptyDir.
    let state = items(&pod_spec["volumes"])
        .find(|v| v["name"] == "state")
        .context("no state volume")?;
    let claim = text(&state["persistentVolumeClaim"]["claimName"], "state claim")?;
    agent.named("PersistentVolumeClaim", claim)?;
    let account = text(&pod_spec["serviceAccountName"], "serviceAccountName")?;
    let binding = agent.only("ClusterRoleBinding")?;
    assert_eq!(binding["subjects"][0]["name"], account);
    assert_eq!(binding["subjects"][0]["namespace"], namespace);

    // The hub the agent registers with, and what the operator provides: the ConfigMap's
    // values with this cluster's name and the hub's address (an overlay's job), and the Secret
    // with the hub's CA certificate and a bootstrap token.
    let root = tempfile::tempdir()?;
    let (repo, _) = small_fleet::repository()?;
    let clusters_file = root.path().join("clusters.yaml");
    std::fs::write(&clusters_file, small_fleet::INVENTORY)?;
    let hub = HubProcess::start(&HubOptions {
        repo_url: repo.url(),
        clusters_file,
        poll_interval: "1h".to_owned(),
        webhook_secret: None,
        insecure: false,
    })?;
    let credentials = hub.credentials().context("the hub runs with TLS")?;
    let secret_dir = root.path().join("bootstrap");
    std::fs::create_dir_all(&secret_dir)?;
    std::fs::copy(&credentials.ca_file, secret_dir.join("ca.crt"))?;
    let cluster = "dev-1";
    let mut values = BTreeMap::new();
    for config_map in agent.objects.iter().filter(|o| o["kind"] == "ConfigMap") {
        let name = text(&config_map["metadata"]["name"], "name")?;
        for (key, value) in config_map["data"].as_object().into_iter().flatten() {
            let value = match key.as_str() {
                "cluster" => cluster,
                "hub" => hub.api(),
                _ => text(value, key)?,
            };
            values.insert((name.to_owned(), key.clone()), value.to_owned());
        }
    }
    values.insert(
        ("flotilla-agent-bootstrap".to_owned(), "token".to_owned()),
        hub.bootstrap_token(cluster)?,
    );
    let pod = PodContainer::resolve(container, "flotilla-agent-0", namespace, 0, &values)?;
    let state_dir = root.path().join("state");
    let mounts = Mounts(vec![
        (
            mount_path(container, "state")?.to_owned(),
            state_dir.clone(),
        ),
        (mount_path(container, "bootstrap")?.to_owned(), secret_dir),
    ]);
    let args: Vec<String> = pod
        .args
        .iter()
        .map(|arg| -> Result<String> {
            Ok(match arg.split_once('=') {
                Some((flag, path)) if path.starts_with('/') => {
                    format!("{flag}={}", mounts.local(path)?.display())
                }
                _ => arg.clone(),
            })
        })
        .collect::<Result<_>>()?;
    let command = pod
        .command
        .first()
        .context("the container sets no command")?;
    assert!(
        command.ends_with("/flotilla-agent"),
        "the container runs flotilla-agent, not {command}"
    );
    assert_eq!(args.first().map(String::as_str), Some("run"));

    // The cluster: the simulator, as the in-cluster service account would give it.
    let sim = Sim::start(SimConfig::default()).await?;
    let kubeconfig = root.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let mut run = Command::new(binaries::AGENT.path()?);
    run.args(&args)
        .env_clear()
        .envs(&pod.env)
        .env("KUBECONFIG", &kubeconfig)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    let mut process = Process::spawn("flotilla-agent", run)?;

    // Registered, streaming, and applying the hub's desired state for its cluster.
    let client = kube::Client::try_from(kube::Config::new(sim.cluster_url("sim-0").parse()?))?;
    // The small fleet's bundle: ConfigMap app/app, whose `cluster` is the cluster's name.
    let configs: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, "app");
    let deadline = tokio::time::Instant::now() + wait::PATIENCE;
    let applied = loop {
        if let Some(config) = configs.get_opt("app").await? {
            break config;
        }
        if let Some(status) = process.try_exit()? {
            bail!(
                "flotilla-agent {args:?} stopped ({status}):\n{}",
                process.stderr_tail()
            );
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the agent applied nothing within {:?}:\n{}",
            wait::PATIENCE,
            process.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        applied
            .data
            .unwrap_or_default()
            .get("cluster")
            .map(String::as_str),
        Some(cluster)
    );
    let credentials_file = state_dir.join("credentials.pem");
    assert!(
        credentials_file.is_file(),
        "the agent keeps its key and certificate in its state volume"
    );
    sim.shutdown().await;
    Ok(())
}
