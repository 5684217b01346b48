//! `flotilla lint`, `flotilla render` and `flotilla diff` on the example repository tell the
//! truth about what the clusters get: the content hash lint computes offline for every
//! (cluster, bundle) is the one the hub desires and the agent reports applied, with as many
//! objects in the simulated cluster; every object `flotilla render` prints for a cluster is in
//! that cluster with every field and value it shows; and after a commit, the objects `flotilla diff` says change are exactly the objects
//! that change in the clusters, with the new values it shows. Real processes end to end.
//!
//! The example's `cache` bundle is a kustomization and its `status` bundle a Helm chart:
//! rendering them needs kubectl or kustomize and the built helm, so without them this test
//! fails under `CI=true` and is skipped loudly otherwise.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use flotilla_testkit::cli::Flotilla;
use flotilla_testkit::fleet::{Fleet, FleetOptions};
use flotilla_testkit::git::{self, GitRepo};
use flotilla_testkit::helm::example_renders_or_skip;
use flotilla_testkit::sim::SimProcess;
use serde_json::Value;

/// The kinds the example's bundles hold.
const KINDS: [(&str, &str); 6] = [
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
];

/// `flotilla lint PATH -o json`, which must pass; per cluster and bundle: (hash, objects).
async fn lint(repo: &GitRepo) -> Result<BTreeMap<(String, String), (String, u64)>> {
    // lint is offline: no hub is asked.
    let cli = Flotilla::new("127.0.0.1:1");
    let path = repo.path().display().to_string();
    let report = cli.json(&["lint", &path]).await?;
    assert_eq!(report["ok"], true, "{report}");
    let mut renders = BTreeMap::new();
    for cluster in report["clusters"].as_array().context("no clusters")? {
        for bundle in cluster["bundles"].as_array().context("no bundles")? {
            renders.insert(
                (
                    cluster["name"].as_str().unwrap_or_default().to_owned(),
                    bundle["name"].as_str().unwrap_or_default().to_owned(),
                ),
                (
                    bundle["hash"].as_str().unwrap_or_default().to_owned(),
                    bundle["objects"].as_u64().unwrap_or_default(),
                ),
            );
        }
    }
    Ok(renders)
}

/// Every object the agents own, per cluster.
async fn objects(
    sim: &SimProcess,
    clusters: &[String],
) -> Result<BTreeMap<String, BTreeMap<String, Value>>> {
    let mut all = BTreeMap::new();
    for cluster in clusters {
        all.insert(cluster.clone(), sim.owned_objects(cluster, &KINDS).await?);
    }
    Ok(all)
}

/// `flotilla render REPO --cluster NAME -o json` against the cluster: the same bundles and
/// content hashes as lint, and every rendered object live with every field it shows.
async fn check_render(
    repo: &GitRepo,
    cluster: &str,
    linted: &BTreeMap<(String, String), (String, u64)>,
    live: &BTreeMap<String, Value>,
) -> Result<()> {
    let cli = Flotilla::new("127.0.0.1:1");
    let path = repo.path().display().to_string();
    let rendered = cli.json(&["render", &path, "--cluster", cluster]).await?;
    let bundles = rendered["bundles"].as_array().context("no bundles")?;
    let mut objects = 0;
    for bundle in bundles {
        let name = bundle["name"].as_str().unwrap_or_default();
        let (hash, count) = &linted[&(cluster.to_owned(), name.to_owned())];
        assert_eq!(bundle["contentHash"], hash.as_str(), "{cluster}/{name}");
        let shown = bundle["objects"].as_array().context("no objects")?;
        assert_eq!(shown.len() as u64, *count, "{cluster}/{name}");
        for object in shown {
            let key = match object["metadata"]["namespace"].as_str() {
                Some(namespace) => format!(
                    "{} {} {namespace}/{}",
                    object["apiVersion"].as_str().unwrap_or_default(),
                    object["kind"].as_str().unwrap_or_default(),
                    object["metadata"]["name"].as_str().unwrap_or_default()
                ),
                None => format!(
                    "{} {} {}",
                    object["apiVersion"].as_str().unwrap_or_default(),
                    object["kind"].as_str().unwrap_or_default(),
                    object["metadata"]["name"].as_str().unwrap_or_default()
                ),
            };
            let found = live
                .get(&key)
                .with_context(|| format!("{cluster}: rendered {key} is not in the cluster"))?;
            // A list's items carry no apiVersion and kind; the key above matched them.
            let mut body = object.clone();
            if let Some(fields) = body.as_object_mut() {
                fields.remove("apiVersion");
                fields.remove("kind");
            }
            let mut path = String::new();
            if let Some(difference) = not_within(&body, found, &mut path) {
                anyhow::bail!("{cluster}: {key}: {difference}");
            }
            objects += 1;
        }
    }
    assert_eq!(
        bundles.len(),
        linted.keys().filter(|(c, _)| c == cluster).count(),
        "{cluster}: render prints every bundle lint renders"
    );
    assert!(objects > 0, "{cluster}: nothing rendered");
    Ok(())
}

/// Where `shown` has a field or value `live` lacks (lists compared item by item).
fn not_within(shown: &Value, live: &Value, path: &mut String) -> Option<String> {
    match (shown, live) {
        (Value::Object(shown), Value::Object(live)) => shown.iter().find_map(|(key, value)| {
            let before = path.len();
            path.push('.');
            path.push_str(key);
            let found = match live.get(key) {
                Some(live) => not_within(value, live, path),
                None => Some(format!("{path} is not in the live object")),
            };
            path.truncate(before);
            found
        }),
        (Value::Array(shown), Value::Array(live)) if shown.len() == live.len() => {
            shown.iter().zip(live).enumerate().find_map(|(i, (s, l))| {
                let before = path.len();
                path.push_str(&format!("[{i}]"));
                let found = not_within(s, l, path);
                path.truncate(before);
                found
            })
        }
        (shown, live) if shown == live => None,
        (shown, live) => Some(format!("{path}: rendered {shown}, live {live}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lint_and_diff_of_the_example_repository_agree_with_the_clusters() -> Result<()> {
    if !example_renders_or_skip("lint_and_diff_of_the_example_repository_agree_with_the_clusters") {
        return Ok(());
    }
    let repo = GitRepo::new()?;
    repo.copy_from(&git::example_fleet())?;
    let first = repo.commit("example fleet")?;
    let linted = lint(&repo).await?;
    let inventory = std::fs::read_to_string(repo.path().join("clusters.yaml"))?;
    let fleet = Fleet::start(&repo, &inventory, FleetOptions::default()).await?;
    let names = fleet.names();

    // The first good revision goes to every stage.
    let status = fleet.wait_rolled_out(&first).await?;
    let before = objects(fleet.sim(), &names).await?;
    for cluster in status["clusters"].as_array().context("no clusters")? {
        let name = cluster["name"].as_str().unwrap_or_default();
        for bundle in cluster["bundles"].as_array().context("no bundles")? {
            let bundle_name = bundle["name"].as_str().unwrap_or_default();
            let (hash, count) = linted
                .get(&(name.to_owned(), bundle_name.to_owned()))
                .with_context(|| format!("lint did not render {name}/{bundle_name}"))?;
            assert_eq!(bundle["desiredHash"], hash.as_str(), "{name}/{bundle_name}");
            assert_eq!(bundle["appliedHash"], hash.as_str(), "{name}/{bundle_name}");
            let live = before[name]
                .values()
                .filter(|o| o["metadata"]["labels"]["flotilla.dev/bundle"] == bundle_name)
                .count() as u64;
            assert_eq!(live, *count, "{name}/{bundle_name}: objects in the cluster");
        }
    }
    for name in &names {
        check_render(&repo, name, &linted, &before[name]).await?;
    }
    assert_eq!(
        linted.len(),
        status["clusters"]
            .as_array()
            .map(|c| c
                .iter()
                .map(|c| c["bundles"].as_array().map_or(0, Vec::len))
                .sum())
            .unwrap_or(0),
        "lint and the hub render the same (cluster, bundle) pairs"
    );

    // dev's web gets more replicas and another log level; staging and prod override both.
    repo.edit("flotilla.yaml", "replicas: 1\n", "replicas: 2\n")?;
    repo.edit("flotilla.yaml", "logLevel: debug", "logLevel: warn")?;
    let relinted = lint(&repo).await?;
    let changed: Vec<&(String, String)> = relinted
        .iter()
        .filter(|(key, render)| linted.get(*key) != Some(render))
        .map(|(key, _)| key)
        .collect();
    assert_eq!(changed, [&("dev-1".to_owned(), "web".to_owned())]);
    let second = repo.commit("dev: two web replicas, warn logging")?;
    fleet.wait_revision(&second, "rendered").await?;

    let diff = fleet.cli.json(&["diff", &first, &second]).await?;
    let mut predicted: BTreeMap<(String, String), Vec<(String, Value)>> = BTreeMap::new();
    for cluster in diff["clusters"]
        .as_array()
        .context("no clusters in the diff")?
    {
        for bundle in cluster["bundles"].as_array().context("no bundles")? {
            for object in bundle["objects"].as_array().context("no objects")? {
                assert_eq!(object["change"], "changed", "{object}");
                let fields = object["fields"]
                    .as_array()
                    .context("no fields")?
                    .iter()
                    .map(|f| {
                        (
                            f["path"].as_str().unwrap_or_default().to_owned(),
                            f["to"].clone(),
                        )
                    })
                    .collect();
                predicted.insert(
                    (
                        cluster["cluster"].as_str().unwrap_or_default().to_owned(),
                        object["object"].as_str().unwrap_or_default().to_owned(),
                    ),
                    fields,
                );
            }
        }
    }
    let expected: BTreeSet<(String, String)> = [
        ("dev-1", "v1 ConfigMap web/web-config"),
        ("dev-1", "apps/v1 Deployment web/web"),
    ]
    .into_iter()
    .map(|(c, o)| (c.to_owned(), o.to_owned()))
    .collect();
    assert_eq!(
        predicted.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "{diff}"
    );

    fleet.wait_rolled_out_on(&second, &["dev-1"]).await?;
    let after = objects(fleet.sim(), &names).await?;
    let mut observed = BTreeSet::new();
    for name in &names {
        let keys: BTreeSet<&String> = before[name].keys().chain(after[name].keys()).collect();
        for key in keys {
            let version = |objects: &BTreeMap<String, Value>| {
                objects
                    .get(key)
                    .map(|o| o["metadata"]["resourceVersion"].clone())
            };
            if version(&before[name]) != version(&after[name]) {
                observed.insert((name.clone(), key.clone()));
            }
        }
    }
    assert_eq!(
        observed, expected,
        "the objects that changed in the clusters"
    );
    for ((cluster, object), fields) in &predicted {
        let live = &after[cluster][object];
        for (path, value) in fields {
            assert_eq!(
                live.pointer(path),
                Some(value),
                "{cluster}: {object} {path}"
            );
        }
    }
    Ok(())
}
