//! `flotilla preview --base REF --head REF --repo PATH --clusters FILE`, offline, on a real Git
//! repository: the clusters that change, alike ones once; each stage's action; the deletion
//! guard's hold for a change that prunes most of a cluster's objects; exit 0 / 1 / 2 for no
//! change, a change, an error (an unknown ref, a head that does not render, naming its file);
//! `-o json` and `-o markdown` (a pull request's comment).

use std::process::{Command, Output};

use anyhow::Result;
use flotilla_testkit::small_fleet;

fn preview(
    repo: &std::path::Path,
    inventory: &std::path::Path,
    refs: (&str, &str),
    format: &[&str],
) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["preview", "--base", refs.0, "--head", refs.1, "--repo"])
        .arg(repo)
        .arg("--clusters")
        .arg(inventory)
        .args(format)
        .env("FLOTILLA_CONFIG", "/nonexistent/flotilla/config.yaml")
        .env("PATH", flotilla_testkit::helm::path_with_helm())
        .output()?)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_branch_is_previewed_per_cluster_and_stage() -> Result<()> {
    let (repo, base) = small_fleet::repository()?;
    let dir = tempfile::tempdir()?;
    let inventory = dir.path().join("clusters.yaml");
    std::fs::write(&inventory, small_fleet::INVENTORY)?;

    // Prod's replicas: both prod clusters change alike, dev not at all.
    repo.edit(
        "flotilla.yaml",
        "variables: {replicas: 2}",
        "variables: {replicas: 4}",
    )?;
    let head = repo.commit("prod: 4 replicas")?;
    let output = preview(repo.path(), &inventory, (&base, &head), &[])?;
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    assert!(text.contains("2 of 3 clusters change"), "{text}");
    assert!(
        text.contains("clusters prod-eu-1, prod-us-1 (2)\n  ~ bundle app (changed)\n    ~ apps/v1 Deployment app/app\n        ~ /spec/replicas: 2 → 4\n"),
        "{text}"
    );
    assert!(
        text.contains("  dev (track main): nothing changes"),
        "{text}"
    );
    assert!(
        text.contains(
            "  prod (track main): rolls out when the head reaches `main`: 2 of 2 clusters change"
        ),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_slice(
        &preview(repo.path(), &inventory, (&base, &head), &["-o", "json"])?.stdout,
    )?;
    assert_eq!(json["changed"], true);
    assert_eq!(json["head"]["commit"], head.as_str());
    assert_eq!(json["groups"].as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(
        json["groups"][0]["clusters"],
        serde_json::json!(["prod-eu-1", "prod-us-1"])
    );
    let markdown = stdout(&preview(
        repo.path(),
        &inventory,
        (&base, &head),
        &["-o", "markdown"],
    )?);
    assert!(markdown.starts_with("### Flotilla preview\n"), "{markdown}");
    assert!(
        markdown.contains("| prod | track main | 2 of 2 |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("<details><summary>clusters prod-eu-1, prod-us-1 (2)</summary>\n\n```diff\n~ bundle app (changed)"),
        "{markdown}"
    );

    // Nothing changes between a ref and itself.
    let same = preview(
        repo.path(),
        &inventory,
        (&head, "HEAD"),
        &["-o", "markdown"],
    )?;
    assert_eq!(same.status.code(), Some(0));
    assert!(stdout(&same).contains("No cluster's objects change."));

    // Most objects of every cluster pruned: the deletion guard would hold both stages.
    repo.remove("bundles/app/deployment.yaml")?;
    repo.remove("bundles/app/config.yaml")?;
    let pruning = repo.commit("prune")?;
    let text = stdout(&preview(repo.path(), &inventory, (&head, &pruning), &[])?);
    assert!(
        text.contains(
            "deletion guard holds it: would prune more than 50% of the objects of dev-1 2 of 3"
        ),
        "{text}"
    );
    assert!(
        text.contains("then waits for approval (`flotilla approve prod`)"),
        "{text}"
    );

    // Errors: exit 2, naming what is wrong.
    let unknown = preview(repo.path(), &inventory, ("no-such-ref", &head), &[])?;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("--base `no-such-ref` names no commit")
    );
    repo.write("flotilla.yaml", "stages: [unclosed\n")?;
    let broken = repo.commit("broken")?;
    let failed = preview(repo.path(), &inventory, (&head, &broken), &[])?;
    assert_eq!(failed.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("--head") && stderr.contains("flotilla.yaml"),
        "{stderr}"
    );
    Ok(())
}
