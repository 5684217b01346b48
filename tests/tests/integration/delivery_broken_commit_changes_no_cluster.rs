//! A broken commit — YAML syntax, an undefined variable, a bundle path or a symbolic link
//! leaving the repository — shows its error with file and line in `flotilla revisions` and
//! `flotilla status`, while no cluster changes: every agent keeps the last good revision and
//! not one write reaches any simulated cluster (each cluster's resourceVersion stays put). The
//! fixed commit then goes through. Real processes end to end.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use flotilla_testkit::fleet::{Fleet, FleetOptions, rollout_problems};
use flotilla_testkit::git::GitRepo;
use flotilla_testkit::small_fleet;

struct Breakage {
    what: &'static str,
    apply: fn(&GitRepo, &Path) -> Result<()>,
    undo: fn(&GitRepo) -> Result<()>,
    /// The file the error must name, and its line when the problem has one.
    file: &'static str,
    line: Option<u64>,
}

fn restore_config(repo: &GitRepo) -> Result<()> {
    repo.write("bundles/app/config.yaml", small_fleet::CONFIG)
}

fn breakages() -> Vec<Breakage> {
    vec![
        Breakage {
            what: "YAML syntax error",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/config.yaml",
                    &small_fleet::CONFIG.replace("data:\n", "data: [unclosed\n"),
                )
            },
            undo: restore_config,
            file: "bundles/app/config.yaml",
            line: None,
        },
        Breakage {
            what: "undefined variable",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/config.yaml",
                    &format!("{}  farewell: ${{farewell}}\n", small_fleet::CONFIG),
                )
            },
            undo: restore_config,
            file: "bundles/app/config.yaml",
            line: Some(9),
        },
        Breakage {
            what: "bundle path outside the repository",
            apply: |repo, _| repo.edit("flotilla.yaml", "path: bundles/app", "path: ../outside"),
            undo: |repo| repo.write("flotilla.yaml", small_fleet::SPEC),
            file: "flotilla.yaml",
            line: Some(12),
        },
        Breakage {
            what: "symbolic link leaving the repository",
            apply: |repo, outside| repo.symlink(outside, "bundles/app/secrets.yaml"),
            undo: |repo| repo.remove("bundles/app/secrets.yaml"),
            file: "bundles/app/secrets.yaml",
            line: None,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_commit_shows_its_error_and_changes_no_cluster() -> Result<()> {
    let (repo, good) = small_fleet::repository()?;
    let outside = tempfile::tempdir()?;
    let secret = outside.path().join("secret.yaml");
    std::fs::write(
        &secret,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\nstringData: {key: value}\n",
    )?;
    let fleet = Fleet::start(&repo, small_fleet::INVENTORY, FleetOptions::default()).await?;
    fleet.wait_rolled_out(&good).await?;
    let mut versions = BTreeMap::new();
    for name in fleet.names() {
        versions.insert(name.clone(), fleet.sim().resource_version(&name).await?);
    }

    for breakage in breakages() {
        (breakage.apply)(&repo, &secret)?;
        let broken = repo.commit(breakage.what)?;
        let revision = fleet.wait_revision(&broken, "failed").await?;
        let error = &revision["error"];
        assert_eq!(
            error["file"], breakage.file,
            "{}: {revision}",
            breakage.what
        );
        match breakage.line {
            Some(line) => assert_eq!(error["line"], line, "{}: {revision}", breakage.what),
            None if breakage.file.ends_with("config.yaml") => {
                assert!(
                    error["line"].as_u64().is_some(),
                    "{}: no line in {revision}",
                    breakage.what
                )
            }
            None => {}
        }
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: {revision}",
            breakage.what
        );

        let status = fleet.cli.status().await?;
        let latest = &status["latestRevision"];
        assert_eq!(latest["commit"], broken.as_str(), "{}", breakage.what);
        assert_eq!(latest["status"], "failed", "{}", breakage.what);
        assert_eq!(
            latest["error"], *error,
            "{}: status shows the error",
            breakage.what
        );
        let problems = rollout_problems(
            &status,
            &good,
            &fleet.names().iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert!(
            problems.is_empty(),
            "{}: clusters left the good revision: {problems:#?}",
            breakage.what
        );
        let text = fleet.cli.text(&["status"]).await?;
        assert!(
            text.contains(breakage.file),
            "{}: the table names the file:\n{text}",
            breakage.what
        );

        (breakage.undo)(&repo)?;
    }
    for (name, version) in &versions {
        assert_eq!(
            &fleet.sim().resource_version(name).await?,
            version,
            "something was written to {name} while only broken commits arrived"
        );
    }
    let config = fleet
        .sim()
        .get("dev-1", "v1", "ConfigMap", Some("app"), "app")
        .await?
        .context("dev-1 lost its ConfigMap")?;
    assert_eq!(config["data"]["greeting"], "hello");

    // Fixed, with a real change: it goes through.
    repo.edit("flotilla.yaml", "greeting: hello", "greeting: fixed")?;
    let fixed = repo.commit("fixed")?;
    fleet.wait_rolled_out(&fixed).await?;
    for name in fleet.names() {
        let config = fleet
            .sim()
            .get(&name, "v1", "ConfigMap", Some("app"), "app")
            .await?
            .with_context(|| format!("{name} lost its ConfigMap"))?;
        assert_eq!(config["data"]["greeting"], "fixed", "{name}");
        let secret = fleet
            .sim()
            .get(&name, "v1", "Secret", Some("app"), "stolen")
            .await?;
        assert!(secret.is_none(), "{name} got the linked secret");
    }
    Ok(())
}
