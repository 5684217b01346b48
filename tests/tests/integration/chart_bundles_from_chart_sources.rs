//! Chart bundles whose charts come from a chart repository and an OCI registry, end to end with
//! real processes: a hub process allowed two chart sources — an HTTP chart repository on
//! loopback that requires basic authentication (credentials in files its configuration names)
//! and a registry (distribution, built from its Go module) on loopback — fetches each chart
//! with the pinned helm, renders it per cluster and the agents apply it to the simulator. A
//! new commit that leaves the charts alone fetches nothing again (the package is cached); a
//! bundle naming a source the hub does not allow fails its revision saying so, and no cluster
//! changes.
//!
//! Without the built helm and registry (scripts/k8s-build) this test fails under `CI=true` and
//! is skipped loudly otherwise.

use anyhow::{Context, Result};
use flotilla_testkit::charts::{ChartRepo, OciRegistry, package, registry_or_skip};
use flotilla_testkit::fleet::{Fleet, FleetOptions};
use flotilla_testkit::git::GitRepo;
use flotilla_testkit::helm::helm_or_skip;

const INVENTORY: &str = "\
apiVersion: flotilla.dev/v1
kind: ClusterInventory
clusters:
  - name: eu-1
    labels: {region: eu}
  - name: us-1
    labels: {region: us}
";

/// A chart holding one ConfigMap that shows its values.
fn write_chart(dir: &std::path::Path, name: &str, version: &str) -> Result<()> {
    std::fs::create_dir_all(dir.join("templates"))?;
    std::fs::write(
        dir.join("Chart.yaml"),
        format!("apiVersion: v2\nname: {name}\nversion: {version}\n"),
    )?;
    std::fs::write(dir.join("values.yaml"), "cluster: none\ngreeting: hello\n")?;
    std::fs::write(
        dir.join("templates/config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  cluster: {{ .Values.cluster | quote }}\n  greeting: {{ .Values.greeting | quote }}\n  chart: {{ .Chart.Name }}-{{ .Chart.Version }}\n",
    )?;
    Ok(())
}

fn spec(repo: &str, registry: &str, greeting: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: all
    track: {{branch: main}}
bundles:
  - name: web
    namespace: web
    helm:
      repo: {repo}
      chart: web
      version: 1.0.0
      values: {{cluster: \"${{cluster.name}}\", greeting: {greeting}}}
  - name: api
    namespace: api
    helm:
      repo: {registry}
      chart: api
      version: 2.0.0
      values: {{cluster: \"${{cluster.name}}\"}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_come_from_allowed_sources_only_and_are_fetched_once() -> Result<()> {
    const TEST: &str = "charts_come_from_allowed_sources_only_and_are_fetched_once";
    if helm_or_skip(TEST).is_none() || registry_or_skip(TEST).is_none() {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let sources = work.path().join("charts");
    std::fs::create_dir_all(&sources)?;
    write_chart(&work.path().join("web"), "web", "1.0.0")?;
    write_chart(&work.path().join("api"), "api", "2.0.0")?;
    let web = package(&work.path().join("web"), &sources)?;
    let api_dir = work.path().join("api-package");
    std::fs::create_dir_all(&api_dir)?;
    let api = package(&work.path().join("api"), &api_dir)?;

    let charts = ChartRepo::start_with_basic_auth(&sources, "fleet", "s3cret-chart-pass").await?;
    let registry = OciRegistry::start().await?;
    tokio::task::block_in_place(|| registry.push(&api, "charts"))?;
    let user = work.path().join("user");
    let password = work.path().join("password");
    std::fs::write(&user, "fleet\n")?;
    std::fs::write(&password, "s3cret-chart-pass\n")?;
    let hub_config = format!(
        "chartSources:\n  - url: {}\n    usernameFile: {}\n    passwordFile: {}\n  - url: {}\n    plainHttp: true\n",
        charts.url(),
        user.display(),
        password.display(),
        registry.reference("charts"),
    );

    let repo = GitRepo::new()?;
    repo.write(
        "flotilla.yaml",
        &spec(charts.url(), &registry.reference("charts"), "hello"),
    )?;
    let first = repo.commit("two remote charts")?;
    let options = FleetOptions {
        hub_config: Some(hub_config),
        ..FleetOptions::default()
    };
    let fleet = Fleet::start(&repo, INVENTORY, options).await?;

    // 1. Both charts fetched, rendered per cluster and applied.
    fleet.wait_rolled_out(&first).await?;
    for cluster in fleet.names() {
        for (bundle, chart) in [("web", "web-1.0.0"), ("api", "api-2.0.0")] {
            let config = fleet
                .get(&cluster, "v1", "ConfigMap", Some(bundle), bundle)
                .await?
                .with_context(|| format!("no ConfigMap {bundle}/{bundle} in {cluster}"))?;
            assert_eq!(config["data"]["cluster"], cluster.as_str());
            assert_eq!(config["data"]["chart"], chart);
        }
    }
    let fetched = charts.requests(&format!(
        "/{}",
        web.file_name().and_then(|n| n.to_str()).unwrap_or_default()
    ));
    assert!(
        fetched >= 1,
        "the web chart was fetched from the repository"
    );

    // 2. A commit changing only values fetches nothing again.
    repo.write(
        "flotilla.yaml",
        &spec(charts.url(), &registry.reference("charts"), "hi"),
    )?;
    let second = repo.commit("another greeting")?;
    fleet.wait_rolled_out(&second).await?;
    let config = fleet
        .get("eu-1", "v1", "ConfigMap", Some("web"), "web")
        .await?
        .context("no ConfigMap web/web in eu-1")?;
    assert_eq!(config["data"]["greeting"], "hi");
    assert_eq!(
        charts.requests(&format!(
            "/{}",
            web.file_name().and_then(|n| n.to_str()).unwrap_or_default()
        )),
        fetched,
        "the cached package is not fetched again"
    );

    // The revision records each chart with its version and digest.
    let revisions = fleet.cli.revisions().await?;
    let listed = revisions["revisions"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["commit"] == second.as_str()))
        .context("the second revision is listed")?;
    let recorded = listed["charts"].as_array().context("its charts")?;
    let web_chart = recorded
        .iter()
        .find(|c| c["bundle"] == "web")
        .with_context(|| format!("no web chart in {listed}"))?;
    assert_eq!(web_chart["source"], format!("{}/web:1.0.0", charts.url()));
    assert_eq!(web_chart["version"], "1.0.0");
    assert_eq!(
        web_chart["digest"].as_str().map(str::len),
        Some(64),
        "{web_chart}"
    );
    assert!(
        recorded
            .iter()
            .any(|c| c["bundle"] == "api" && c["version"] == "2.0.0")
    );

    // 3. A source the hub does not allow fails the revision; nothing changes.
    let mut text = spec(charts.url(), &registry.reference("charts"), "hi");
    text.push_str(
        "  - name: other\n    helm: {repo: 'https://charts.example.com', chart: other, version: 1.0.0}\n",
    );
    repo.write("flotilla.yaml", &text)?;
    let refused = repo.commit("a chart from a source nobody allowed")?;
    let revision = fleet.wait_revision(&refused, "failed").await?;
    let message = revision["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("https://charts.example.com is not among the hub's chart sources"),
        "{revision}"
    );
    assert_eq!(revision["error"]["file"], "flotilla.yaml", "{revision}");
    let status = fleet.wait_rolled_out(&second).await?;
    assert!(
        !status.to_string().contains("s3cret-chart-pass"),
        "no surface shows a credential"
    );
    assert!(
        !fleet.hub.log_tail().contains("s3cret-chart-pass"),
        "the hub never logs a credential"
    );
    Ok(())
}
