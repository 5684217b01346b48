//! `flotilla diff` on the example repository between two commits, against a hub process: per
//! cluster, the changed object and field with old and new values; clusters that did not change
//! are left out, and clusters that changed alike are listed together with their change once.

use crate::support::hub as support;

use std::path::PathBuf;

use anyhow::{Context, Result};
use flotilla_testkit::helm::example_renders_or_skip;
use support::{GitRepo, HubProcess};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet")
}

#[test]
fn diff_between_two_commits_of_the_example_repository() -> Result<()> {
    if !example_renders_or_skip("diff_between_two_commits_of_the_example_repository") {
        return Ok(());
    }
    let repo = GitRepo::new()?;
    repo.copy_from(&example())?;
    let first = repo.commit("example fleet")?;
    let hub = HubProcess::start(&repo, &repo.path().join("clusters.yaml"))?;
    let rendered = |commit: &str| {
        let commit = commit.to_owned();
        move |v: &serde_json::Value| {
            v["revisions"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|r| r["commit"] == commit.as_str() && r["status"] == "rendered")
            })
        }
    };
    hub.wait_json(
        "the first commit rendered",
        &["revisions"],
        rendered(&first),
    )?;

    // Production gets five replicas of web instead of three.
    repo.edit("flotilla.yaml", "replicas: 3", "replicas: 5")?;
    let second = repo.commit("prod web: 5 replicas")?;
    hub.wait_json(
        "the second commit rendered",
        &["revisions"],
        rendered(&second),
    )?;

    let text = hub.text(&[
        "diff",
        &first[..10],
        &second[..10],
        "--cluster",
        "prod-eu-1",
    ])?;
    let expected = format!(
        "{} → {}\n\ncluster prod-eu-1\n  ~ bundle web (changed)\n    ~ apps/v1 Deployment web/web\n        ~ /spec/replicas: 3 → 5\n",
        &first[..12],
        &second[..12]
    );
    assert_eq!(text, expected);

    let json = hub.json(&["diff", &first, &second])?;
    let clusters: Vec<&str> = json["clusters"]
        .as_array()
        .context("no clusters")?
        .iter()
        .filter_map(|c| c["cluster"].as_str())
        .collect();
    assert_eq!(clusters, vec!["prod-ap-1", "prod-eu-1", "prod-us-1"]);
    let field = &json["clusters"][0]["bundles"][0]["objects"][0]["fields"][0];
    assert_eq!(field["path"], "/spec/replicas");
    assert_eq!(
        (field["from"].as_u64(), field["to"].as_u64()),
        (Some(3), Some(5))
    );

    // The three prod clusters changed alike: one group, its change printed once.
    let groups = json["groups"].as_array().context("no groups")?;
    assert_eq!(groups.len(), 1, "{json}");
    assert_eq!(
        groups[0]["clusters"],
        serde_json::json!(["prod-ap-1", "prod-eu-1", "prod-us-1"])
    );
    let grouped = hub.text(&["diff", &first, &second])?;
    assert!(
        grouped
            .contains("\nclusters prod-ap-1, prod-eu-1, prod-us-1 (3)\n  ~ bundle web (changed)\n"),
        "{grouped}"
    );
    assert_eq!(grouped.matches("/spec/replicas").count(), 1, "{grouped}");

    let unchanged = hub.text(&["diff", &first, &second, "--cluster", "dev-1"])?;
    assert!(unchanged.ends_with("no differences\n"), "{unchanged}");
    let yaml = hub.text(&[
        "diff",
        &first,
        &second,
        "-o",
        "yaml",
        "--cluster",
        "prod-us-1",
    ])?;
    assert!(yaml.contains("path: /spec/replicas"), "{yaml}");

    let code = |args: &[&str]| -> Result<Option<i32>> { Ok(hub.flotilla(args)?.status.code()) };
    assert_eq!(
        code(&["diff", &first, &second, "--exit-code"])?,
        Some(1),
        "they differ"
    );
    assert_eq!(
        code(&["diff", &first, &second, "--exit-code", "--cluster", "dev-1"])?,
        Some(0),
        "not for dev-1"
    );
    assert_eq!(
        code(&["diff", "abc", &second, "--exit-code"])?,
        Some(2),
        "an error"
    );
    assert_eq!(
        code(&["diff", &first, &second])?,
        Some(0),
        "without --exit-code"
    );

    let bad = hub.flotilla(&["diff", "abc", &second])?;
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("at least 4"), "{stderr}");
    Ok(())
}
