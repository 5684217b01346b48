//! The demo, the real binary, on simulated clusters started as `flotilla demo` and on real ones
//! as `flotilla-demo --real` (the README's command): it starts, prints the environment another
//! terminal needs, the fleet it runs reaches all-Healthy as `flotilla status -o json` shows
//! through that environment, the printed kubeconfig reaches the clusters, and SIGTERM stops
//! everything cleanly (the real clusters' processes included) and removes its temporary
//! directory.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_testkit::binaries;
use flotilla_testkit::cli::Flotilla;
use flotilla_testkit::fleet::rollout_problems;
use flotilla_testkit::process::Process;
use flotilla_testkit::real::RealClusters;
use flotilla_testkit::wait::{self, Probe};

const CLUSTERS: [&str; 5] = ["dev-1", "staging-1", "prod-eu-1", "prod-us-1", "prod-ap-1"];

/// The value of `export NAME=VALUE` in the banner.
fn exported(lines: &[String], name: &str) -> Result<String> {
    let prefix = format!("export {name}=");
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .map(|v| v.trim_matches('\'').to_owned())
        .with_context(|| format!("the demo printed no `{prefix}…`"))
}

/// The first word after a banner row's label (`  data   /tmp/…  (…)`).
fn row(lines: &[String], label: &str) -> Result<String> {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .with_context(|| format!("the demo printed no `{label}` row"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_its_environment_reaches_healthy_and_stops_on_sigterm() -> Result<()> {
    demo(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_on_real_clusters_reaches_healthy_and_stops_them_on_sigterm() -> Result<()> {
    if !RealClusters::available("the_demo_on_real_clusters")? {
        return Ok(());
    }
    demo(true).await
}

async fn demo(real: bool) -> Result<()> {
    // `flotilla demo` runs `flotilla-demo`: a missing one fails here, saying how to build it.
    let demo_binary = binaries::DEMO.path()?;
    let mut command = if real {
        Command::new(demo_binary)
    } else {
        let mut forwarded = Command::new(binaries::FLOTILLA.path()?);
        forwarded.arg("demo");
        forwarded
    };
    command
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env_remove("RUST_LOG");
    if real {
        command.arg("--real");
    }
    let mut demo = Process::spawn("flotilla demo", command)?;
    tokio::task::block_in_place(|| {
        demo.wait_for_stdout("its banner", Duration::from_secs(150), |l| {
            l.contains("Ctrl-C stops everything")
        })
    })?;
    let banner = demo.stdout();
    let kind = if real { "real Kubernetes" } else { "simulated" };
    assert!(
        banner
            .iter()
            .any(|l| l.contains(&format!("a hub, 5 {kind} clusters"))),
        "{banner:?}"
    );
    let hub = exported(&banner, "FLOTILLA_HUB")?;
    let ca_file = PathBuf::from(exported(&banner, "FLOTILLA_CA_FILE")?);
    let token = exported(&banner, "FLOTILLA_TOKEN")?;
    let kubeconfig = PathBuf::from(exported(&banner, "KUBECONFIG")?);
    let data = PathBuf::from(row(&banner, "data")?);
    let dashboard = row(&banner, "dashboard")?;
    assert!(data.is_dir(), "{} is not a directory", data.display());
    assert!(kubeconfig.starts_with(&data), "{}", kubeconfig.display());

    // The exported environment is all a client needs: the hub runs with TLS and tokens.
    let cli = Flotilla::new(&hub).with_credentials(&ca_file, &token);
    let status = wait::until(
        "every cluster of the demo Healthy",
        wait::PATIENCE,
        || async {
            let status = cli.status().await?;
            let commit = status["latestRevision"]["commit"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let problems = rollout_problems(&status, &commit, &CLUSTERS);
            Ok(if problems.is_empty() && !commit.is_empty() {
                Probe::Done(status)
            } else {
                Probe::NotYet(problems.join("\n"))
            })
        },
    )
    .await?;
    let stages: Vec<&str> = status["stages"]
        .as_array()
        .context("no stages")?
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(stages, ["dev", "staging", "prod"]);

    // The printed kubeconfig reaches the clusters, named as in the inventory.
    let file = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let options = kube::config::KubeConfigOptions {
        context: Some("prod-eu-1".into()),
        ..Default::default()
    };
    let client =
        kube::Client::try_from(kube::Config::from_custom_kubeconfig(file, &options).await?)?;
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client, "web");
    let web = deployments.get("web").await?;
    assert_eq!(
        web.spec.and_then(|s| s.replicas),
        Some(3),
        "prod runs three web replicas"
    );
    if real {
        // Pods made Ready by kwok, counted by the real Deployment controller.
        assert_eq!(web.status.and_then(|s| s.ready_replicas), Some(3));
    }

    let page =
        flotilla_testkit::http::request_tls(&ca_file, "GET", &dashboard, &[], Vec::new()).await?;
    assert_eq!(page.status, 200, "{dashboard}: {}", page.body);

    let exit = tokio::task::block_in_place(|| demo.terminate(Duration::from_secs(30)))?;
    assert!(
        exit.success(),
        "the demo exited with {exit} after SIGTERM:\n{}",
        demo.stderr_tail()
    );
    let said = demo.stdout().join("\n");
    assert!(
        said.contains(&format!("Removed {}", data.display())),
        "{said}"
    );
    assert!(!data.exists(), "{} is left behind", data.display());
    let left = processes_mentioning(&data.display().to_string())?;
    assert!(left.is_empty(), "processes left running: {left:?}");
    Ok(())
}

/// The command lines of the processes whose arguments mention `text`.
fn processes_mentioning(text: &str) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let path = entry?.path().join("cmdline");
        // Processes come and go while the directory is read.
        let Ok(line) = std::fs::read(&path) else {
            continue;
        };
        let line = String::from_utf8_lossy(&line).replace('\0', " ");
        if line.contains(text) {
            found.push(line);
        }
    }
    Ok(found)
}
