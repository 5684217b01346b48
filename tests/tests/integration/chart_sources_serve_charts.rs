//! The chart sources tests serve Helm charts from are held to the real tools: a chart packaged
//! by the pinned helm, served by `testkit::charts::ChartRepo` (an HTTP chart repository) and
//! pushed to `testkit::charts::OciRegistry` (the pinned CNCF distribution registry), comes back
//! byte for byte through `helm pull` from each, with and without basic auth, and a pull without
//! the credentials a source requires is refused.
//!
//! What is proven: `helm package`, `helm repo index`, `helm push --plain-http` and `helm pull`
//! (the pinned helm, in empty helm homes) against both sources; the sha256 of every pulled
//! chart equals the packaged file's; the repository's request counter sees the index and the
//! chart fetched once per pull; the htpasswd entry written for the registry is one it accepts.
//!
//! Without helm or the registry (not built by `scripts/k8s-build`) a test says SKIPPED and why,
//! and fails under `CI=true`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use flotilla_testkit::charts::{
    self, BasicAuth, ChartRepo, HelmHome, OciRegistry, registry_or_skip, sha256_file,
};
use flotilla_testkit::helm::helm_or_skip;

const CHART: &str = "apiVersion: v2
name: demo
version: 0.1.0
description: A chart served to the tests.
";

const CONFIG: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-demo
data:
  greeting: {{ .Values.greeting | quote }}
";

const VALUES: &str = "greeting: hello\n";

/// Whether helm and the registry are built; says SKIPPED when not (fails under `CI=true`).
fn tools_or_skip(test: &str) -> bool {
    helm_or_skip(test).is_some() && registry_or_skip(test).is_some()
}

/// Writes the small chart and packages it into `out`, returning the `.tgz`.
fn packaged_chart(work: &Path, out: &Path) -> Result<PathBuf> {
    let chart = work.join("demo");
    std::fs::create_dir_all(chart.join("templates"))?;
    std::fs::write(chart.join("Chart.yaml"), CHART)?;
    std::fs::write(chart.join("values.yaml"), VALUES)?;
    std::fs::write(chart.join("templates/config.yaml"), CONFIG)?;
    std::fs::create_dir_all(out)?;
    let tgz = charts::package(&chart, out)?;
    ensure!(
        tgz.file_name().and_then(|n| n.to_str()) == Some("demo-0.1.0.tgz"),
        "helm package wrote {}",
        tgz.display()
    );
    Ok(tgz)
}

/// `helm pull ARGS -d DEST` in empty helm homes; the pulled file, or helm's error.
fn pull(args: &[&str], auth: Option<&BasicAuth>, dest: &Path) -> Result<PathBuf> {
    let home = HelmHome::new()?;
    let mut command = home.helm()?;
    command.arg("pull").args(args).arg("-d").arg(dest);
    if let Some(auth) = auth {
        command
            .args(["--username", &auth.user])
            .args(["--password", &auth.password]);
    }
    std::fs::create_dir_all(dest)?;
    charts::run(command)?;
    let pulled = dest.join("demo-0.1.0.tgz");
    ensure!(pulled.is_file(), "helm pull wrote no {}", pulled.display());
    Ok(pulled)
}

/// Serves the packaged chart from a chart repository and the registry (with `auth`, if any),
/// pulls it back from each and compares the bytes.
async fn serves_and_pulls_back(auth: Option<BasicAuth>) -> Result<()> {
    let work = tempfile::tempdir()?;
    let tgz = packaged_chart(work.path(), &work.path().join("repo"))?;
    let packaged = sha256_file(&tgz)?;

    // The HTTP chart repository.
    let repo = match &auth {
        None => ChartRepo::start(&work.path().join("repo")).await?,
        Some(a) => {
            ChartRepo::start_with_basic_auth(&work.path().join("repo"), &a.user, &a.password)
                .await?
        }
    };
    let index = std::fs::read_to_string(work.path().join("repo/index.yaml"))?;
    ensure!(
        index.contains(&format!("{}/demo-0.1.0.tgz", repo.url())),
        "index.yaml does not point at the repository:\n{index}"
    );
    let from_repo = tokio::task::block_in_place(|| {
        pull(
            &["demo", "--repo", repo.url(), "--version", "0.1.0"],
            auth.as_ref(),
            &work.path().join("from-repo"),
        )
    })
    .context("helm pull from the chart repository")?;
    assert_eq!(sha256_file(&from_repo)?, packaged);
    assert_eq!(repo.requests("/index.yaml"), 1);
    assert_eq!(repo.requests("/demo-0.1.0.tgz"), 1);
    assert_eq!(repo.requests("/nothing.tgz"), 0);

    // The OCI registry.
    let registry = match &auth {
        None => OciRegistry::start().await?,
        Some(a) => OciRegistry::start_with_basic_auth(&a.user, &a.password).await?,
    };
    let reference = format!("{}/demo", registry.reference("charts"));
    let from_registry = tokio::task::block_in_place(|| -> Result<PathBuf> {
        registry.push(&tgz, "charts")?;
        pull(
            &[&reference, "--version", "0.1.0", "--plain-http"],
            auth.as_ref(),
            &work.path().join("from-registry"),
        )
    })
    .with_context(|| format!("registry log:\n{}", registry.log_tail()))?;
    assert_eq!(sha256_file(&from_registry)?, packaged);

    // Without the credentials, or with a wrong password, both sources refuse the chart.
    if let Some(auth) = &auth {
        let wrong = BasicAuth::new(&auth.user, "not-the-password");
        for (i, given) in [None, Some(&wrong)].into_iter().enumerate() {
            let refused = tokio::task::block_in_place(|| {
                pull(
                    &["demo", "--repo", repo.url(), "--version", "0.1.0"],
                    given,
                    &work.path().join(format!("refused-repo-{i}")),
                )
            });
            let error = format!("{:#}", refused.err().context("the repository served it")?);
            ensure!(error.contains("401 Unauthorized"), "{error}");
            let refused = tokio::task::block_in_place(|| {
                pull(
                    &[&reference, "--version", "0.1.0", "--plain-http"],
                    given,
                    &work.path().join(format!("refused-registry-{i}")),
                )
            });
            let error = format!("{:#}", refused.err().context("the registry served it")?);
            ensure!(
                error.contains("credential") || error.contains("401"),
                "{error}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packaged_chart_comes_back_unchanged_from_a_chart_repository_and_a_registry() -> Result<()>
{
    if !tools_or_skip(
        "a_packaged_chart_comes_back_unchanged_from_a_chart_repository_and_a_registry",
    ) {
        return Ok(());
    }
    serves_and_pulls_back(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_sources_with_basic_auth_serve_only_with_the_credentials() -> Result<()> {
    if !tools_or_skip("chart_sources_with_basic_auth_serve_only_with_the_credentials") {
        return Ok(());
    }
    serves_and_pulls_back(Some(BasicAuth::new("flotilla", "s3cret-password"))).await
}
