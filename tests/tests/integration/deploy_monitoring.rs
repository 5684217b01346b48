//! `deploy/monitoring`: the Prometheus alert rules pass `promtool check rules` and their own
//! unit tests (`promtool test rules`: each alert fires on the series that should fire it, and
//! not before), every query of the Grafana dashboard is valid PromQL (checked as recording
//! rules), and every metric either of them names is one a running hub node or agent serves
//! (scraped from a small fleet on the simulator). promtool is built from its pinned Go module
//! by `scripts/k8s-build`; missing, the test fails under `CI=true` and is skipped otherwise.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use flotilla_testkit::fleet::{Fleet, FleetOptions};
use flotilla_testkit::small_fleet;
use serde_json::Value;

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring")
}

fn promtool(promtool: &Path, args: &[&str], dir: &Path) -> Result<String> {
    let output = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {}", promtool.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(output.status.success(), "promtool {args:?}:\n{text}");
    Ok(text)
}

/// The queries of the dashboard's panels.
fn dashboard_queries() -> Result<Vec<String>> {
    let text = std::fs::read_to_string(monitoring().join("grafana-dashboard.json"))?;
    let dashboard: Value = serde_json::from_str(&text).context("the dashboard is JSON")?;
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .context("panels")?
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    ensure!(!queries.is_empty(), "the dashboard has no queries");
    Ok(queries)
}

/// Metric names a query or rule file names: words starting `flotilla_` or `process_`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            if word.starts_with("flotilla_") || word.starts_with("process_") {
                names.insert(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    names
}

/// The families a `/metrics` text declares (`# TYPE name kind`), each with the sample names it
/// may show.
fn served(text: &str, into: &mut BTreeSet<String>) {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split(' ');
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        // The names a query may use: a counter's and a histogram's samples, never the bare
        // family name, which no series carries.
        match kind {
            "counter" => {
                into.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    into.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                into.insert(name.to_owned());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_and_dashboard_are_valid_and_name_only_served_metrics() -> Result<()> {
    let test = "alert_rules_and_dashboard_are_valid_and_name_only_served_metrics";
    let Some(promtool_bin) = flotilla_testkit::built::built_or_skip(test, "promtool") else {
        return Ok(());
    };
    let dir = monitoring();
    let checked = promtool(&promtool_bin, &["check", "rules", "alerts.yaml"], &dir)?;
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&promtool_bin, &["test", "rules", "alerts.test.yaml"], &dir)?;
    assert!(tested.contains("SUCCESS"), "{tested}");

    // The dashboard's queries, each checked as the expression of a recording rule.
    let queries = dashboard_queries()?;
    let scratch = tempfile::tempdir()?;
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in queries.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: flotilla:dashboard:panel_{i}\n        expr: {}\n",
            serde_json::to_string(query)?
        ));
    }
    std::fs::write(scratch.path().join("dashboard.yaml"), rules)?;
    let checked = promtool(
        &promtool_bin,
        &["check", "rules", "dashboard.yaml"],
        scratch.path(),
    )?;
    assert!(checked.contains("SUCCESS"), "{checked}");

    // Every metric they name is one the hub or an agent serves.
    // With a notification receiver, so the notification series are served too.
    let receiver = flotilla_testkit::receiver::ReceiverServer::start(false).await?;
    let options = FleetOptions {
        hub_config: Some(format!(
            "notifications:\n- {{name: ops, type: webhook, url: '{}'}}\n",
            receiver.url
        )),
        ..FleetOptions::default()
    };
    let (repo, first) = small_fleet::repository()?;
    let fleet = Fleet::start_on(&repo, small_fleet::INVENTORY, options, None).await?;
    fleet.wait_rolled_out(&first).await?;
    let mut names = BTreeSet::new();
    served(&fleet.metrics().await?, &mut names);
    for agent in &fleet.agents {
        served(&agent.metrics().await?, &mut names);
    }
    let alerts = std::fs::read_to_string(dir.join("alerts.yaml"))?;
    let mut named = names_in(&alerts);
    for query in &queries {
        named.extend(names_in(query));
    }
    let unknown: Vec<&String> = named.iter().filter(|n| !names.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "named in deploy/monitoring but served by no hub node or agent: {unknown:?}\nserved: {names:?}"
    );
    assert!(named.len() >= 15, "{named:?}");
    Ok(())
}
