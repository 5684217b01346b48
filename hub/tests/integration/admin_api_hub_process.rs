//! The Admin API, the dashboard and the metrics of a real `flotilla-hub` process following a
//! Git repository: clusters are listed, added and removed; revisions and the fleet status are
//! read, watched as they change, and two revisions compared.

use crate::support::fleet as support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_proto::v1::admin_client::AdminClient;
use flotilla_proto::v1::{
    AdminAddClusterRequest, AdminDiffRequest, AdminFleetStatusRequest, AdminListClustersRequest,
    AdminListRevisionsRequest, AdminRemoveClusterRequest,
};
use support::{FLEET_SPEC, GitRepo, http, inventory_file};
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;

/// A hub process, killed when dropped.
struct HubProcess {
    child: Child,
    api: SocketAddr,
    http: SocketAddr,
    _data: tempfile::TempDir,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn_hub(repo: &GitRepo, clusters: &std::path::Path) -> Result<HubProcess> {
    let data = tempfile::tempdir()?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla-hub"))
        .args(["--id", "1", "--listen", "127.0.0.1:0"])
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--repo", &repo.url(), "--poll-interval", "200ms"])
        .arg("--clusters")
        .arg(clusters)
        // The Admin API's answers; TLS and tokens have their own tests.
        .arg("--insecure")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(tokio::process::ChildStdout::from_std(stdout)?).lines();
    let (mut api, mut web) = (None, None);
    let started = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("api listening on ") {
                api = Some(rest.trim().parse::<SocketAddr>()?);
            }
            if let Some(rest) = line.strip_prefix("http listening on ") {
                web = rest.split_whitespace().next().map(str::parse).transpose()?;
            }
            if api.is_some() && web.is_some() {
                return Ok::<_, anyhow::Error>(());
            }
        }
        bail!("flotilla-hub exited before printing its addresses")
    })
    .await;
    let process = HubProcess {
        child,
        api: api.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        http: web.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        _data: data,
    };
    started.context("flotilla-hub did not start within 20 s")??;
    // Keep reading stdout so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(process)
}

async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_dashboard_and_metrics_of_a_hub_process() -> Result<()> {
    let (repo, first) = support::with_fleet()?;
    let (_inventory, clusters) = inventory_file()?;
    let hub = spawn_hub(&repo, &clusters).await?;
    let channel = Channel::from_shared(format!("http://{}", hub.api))?
        .connect()
        .await?;
    let mut admin = AdminClient::new(channel);

    let list =
        until("both clusters registered", async || {
            let list = admin
                .list_clusters(AdminListClustersRequest {})
                .await?
                .into_inner();
            Ok((list.clusters.len() == 2
                && list.clusters.iter().all(|c| c.assigned_revision == first))
            .then_some(list))
        })
        .await?;
    let dev = &list.clusters[0];
    assert_eq!((dev.name.as_str(), dev.stage.as_str()), ("dev-1", "dev"));
    assert_eq!(dev.labels.get("region").map(String::as_str), Some("eu"));

    // A watch sees the cluster added below.
    let mut watch = admin
        .watch_fleet_status(AdminFleetStatusRequest::default())
        .await?
        .into_inner();
    let initial = watch.message().await?.context("watch ended")?;
    assert_eq!(initial.clusters.len(), 2);

    let mut labels = std::collections::HashMap::new();
    labels.insert("env".to_owned(), "prod".to_owned());
    labels.insert("region".to_owned(), "ap".to_owned());
    admin
        .add_cluster(AdminAddClusterRequest {
            name: "prod-2".into(),
            labels: labels.clone(),
        })
        .await?;
    let duplicate = admin
        .add_cluster(AdminAddClusterRequest {
            name: "prod-2".into(),
            labels: labels.clone(),
        })
        .await
        .expect_err("a second registration was accepted");
    assert_eq!(
        duplicate.code(),
        tonic::Code::AlreadyExists,
        "{duplicate:?}"
    );
    let invalid = admin
        .add_cluster(AdminAddClusterRequest {
            name: "Not_A_Name".into(),
            labels: Default::default(),
        })
        .await
        .expect_err("an invalid name was accepted");
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    assert!(invalid.message().contains("Not_A_Name"), "{invalid:?}");

    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let status = watch.message().await?.context("watch ended")?;
            let prod2 = status.clusters.iter().find(|c| c.name == "prod-2");
            if let Some(prod2) = prod2
                && prod2.assigned_revision == first
            {
                return Ok::<_, anyhow::Error>(prod2.clone());
            }
        }
    })
    .await
    .context("the watch never showed prod-2 assigned")??;
    assert_eq!(seen.stage, "prod");
    assert_eq!(seen.bundles.len(), 1);
    let bundle = &seen.bundles[0];
    assert_eq!(bundle.name, "app");
    assert_eq!(bundle.desired_revision, first);
    assert_eq!(bundle.applied_revision, "");
    assert_eq!(bundle.health, "Unknown");
    assert!(!seen.online);

    // A second commit, then the revision list and the diff between the two.
    repo.write("flotilla.yaml", &FLEET_SPEC.replace("hello", "bonjour"))?;
    let second = repo.commit("bonjour")?;
    let revisions = until(
        "the second revision rendered and pinned to dev",
        async || {
            let list = admin
                .list_revisions(AdminListRevisionsRequest {})
                .await?
                .into_inner();
            let newest = list.revisions.first();
            Ok(newest
                .is_some_and(|r| {
                    r.commit == second && r.status == "rendered" && r.pinned_by == ["dev"]
                })
                .then_some(list))
        },
    )
    .await?;
    assert_eq!(revisions.revisions.len(), 2);
    assert_eq!(revisions.revisions[1].commit, first);
    assert_eq!(revisions.revisions[1].pinned_by, vec!["prod".to_owned()]);
    let source = revisions.source.context("no source")?;
    assert_eq!(
        (source.url.as_str(), source.branch.as_str()),
        (repo.url().as_str(), "main")
    );

    let diff = admin
        .diff(AdminDiffRequest {
            from_revision: first[..8].to_owned(),
            to_revision: second.clone(),
            cluster: "dev-1".into(),
        })
        .await?
        .into_inner();
    assert_eq!(diff.clusters.len(), 1);
    let object = &diff.clusters[0].bundles[0].objects[0];
    assert_eq!(object.object, "v1 ConfigMap app/app");
    assert_eq!(object.change, "changed");
    assert_eq!(object.fields[0].path, "/data/greeting");
    assert_eq!(
        (
            object.fields[0].from_value.as_str(),
            object.fields[0].to_value.as_str()
        ),
        ("\"hello\"", "\"bonjour\"")
    );
    let unknown = admin
        .diff(AdminDiffRequest {
            from_revision: "ffffffff".into(),
            to_revision: second.clone(),
            cluster: String::new(),
        })
        .await
        .expect_err("an unknown revision was compared");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    admin
        .remove_cluster(AdminRemoveClusterRequest {
            name: "prod-2".into(),
        })
        .await?;
    let gone = admin
        .remove_cluster(AdminRemoveClusterRequest {
            name: "prod-2".into(),
        })
        .await
        .expect_err("removed twice");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let status = admin
        .fleet_status(AdminFleetStatusRequest::default())
        .await?
        .into_inner();
    assert_eq!(status.clusters.len(), 2);
    assert!(
        status
            .events
            .iter()
            .any(|e| e.kind == "audit" && e.subject == "cluster/prod-2"),
        "no audit event for prod-2: {:?}",
        status.events
    );

    // The HTTP listener: dashboard, its JSON, metrics.
    let (code, page) = http(hub.http, "GET", "/", &[], b"").await?;
    assert_eq!(code, 200);
    assert!(page.contains("<title>Flotilla</title>") && page.contains("api/status"));
    let (code, json) = http(hub.http, "GET", "/api/status", &[], b"").await?;
    assert_eq!(code, 200);
    let json: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(json["clusters"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["latestRevision"]["commit"], second.as_str());
    let (code, metrics) = http(hub.http, "GET", "/metrics", &[], b"").await?;
    assert_eq!(code, 200);
    for expected in [
        "flotilla_revisions_rendered_total 2",
        "flotilla_clusters 2",
        "flotilla_clusters_online 0",
        "flotilla_raft_is_leader 1",
        "flotilla_fetch_duration_seconds_count",
        "flotilla_bundles{health=\"Healthy\"} 0",
    ] {
        assert!(metrics.contains(expected), "no `{expected}` in\n{metrics}");
    }
    Ok(())
}
