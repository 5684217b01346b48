//! Rendering a repository of plain-manifest bundles for a large fleet, in-process with
//! `render_fleet` as the hub renders a commit: B bundles (each a Deployment and a ConfigMap)
//! for N clusters, half the bundles using the cluster's name (a distinct render per cluster)
//! and half only its region (one render per region, shared).
//!
//! Figures (milliseconds): `cold`, rendering the fleet; `blobs`, compressing every distinct
//! rendered bundle as the hub stores it (zstd) and hashing it; `oneChanged`, the fleet again
//! after one cluster's labels changed (every input is rendered again: only chart outputs are
//! cached across renders). Host load is the 1-minute load average before the run.

use std::time::Instant;

use anyhow::Context;
use flotilla_core::inventory::{Cluster, parse_inventory};
use flotilla_core::{Limits, Repository};
use flotilla_hub::state::source::Blob;
use serde_json::{Value, json};

use crate::common::{load_average, millis_since};

/// Options of `bench render`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Clusters the repository is rendered for.
    #[arg(long, default_value_t = 10_000)]
    clusters: usize,
    /// Bundles, each targeting every cluster.
    #[arg(long, default_value_t = 20)]
    bundles: usize,
}

/// `flotilla.yaml` with `bundles` bundles, each in `bundles/b<i>`.
fn spec(bundles: usize) -> String {
    let mut text = "apiVersion: flotilla.dev/v1\nkind: Fleet\nstages:\n  - name: all\n    track: {branch: main}\nbundles:\n".to_owned();
    for i in 0..bundles {
        text.push_str(&format!(
            "  - name: b{i}\n    path: bundles/b{i}\n    namespace: bench\n"
        ));
    }
    text
}

/// Bundle `i`'s manifests: per cluster when `i` is even, per region when odd.
fn manifests(i: usize) -> String {
    let by = match i % 2 {
        0 => "${cluster.name}",
        _ => "${cluster.labels.region}",
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: app-{i}}}\n  template:\n    metadata:\n      labels: {{app: app-{i}}}\n    spec:\n      containers:\n        - name: app\n          image: example/app:1.{i}\n          env:\n            - {{name: WHERE, value: \"{by}\"}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{i}\ndata:\n  where: \"{by}\"\n  level: info\n"
    )
}

fn inventory(clusters: usize) -> String {
    let regions = ["eu", "us", "ap"];
    let mut text = "apiVersion: flotilla.dev/v1\nkind: ClusterInventory\nclusters:\n".to_owned();
    for i in 0..clusters {
        text.push_str(&format!(
            "  - name: c{i:05}\n    labels: {{region: {}}}\n",
            regions[i % regions.len()]
        ));
    }
    text
}

/// Runs the measurement.
pub(crate) async fn run(args: Args) -> anyhow::Result<Value> {
    let load = load_average();
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::write(root.join("flotilla.yaml"), spec(args.bundles))?;
    for i in 0..args.bundles {
        let bundle = root.join(format!("bundles/b{i}"));
        std::fs::create_dir_all(&bundle)?;
        std::fs::write(bundle.join("app.yaml"), manifests(i))?;
    }
    let limits = Limits::default();
    let repo = Repository::load(root, limits.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tools = flotilla_testkit::helm::render_tools();
    let clusters = parse_inventory(&inventory(args.clusters), "clusters.yaml", &limits)
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let started = Instant::now();
    let cold = flotilla_core::render_fleet(&repo, &clusters, &tools);
    let cold_ms = millis_since(started);
    if let Some((cluster, bundle, error)) = cold.errors().next() {
        anyhow::bail!("{cluster}/{bundle}: {error}");
    }

    let started = Instant::now();
    let contents: Vec<&[u8]> = cold.encoded.values().map(Vec::as_slice).collect();
    let compressed: usize = Blob::from_contents(&contents)
        .context("compressing the blobs")?
        .iter()
        .map(|blob| blob.compressed.len())
        .sum();
    let blobs_ms = millis_since(started);

    let mut moved: Vec<Cluster> = clusters.clone();
    if let Some(first) = moved.first_mut() {
        first.labels.insert("region".to_owned(), "moved".to_owned());
    }
    let started = Instant::now();
    let again = flotilla_core::render_fleet(&repo, &moved, &tools);
    let one_changed_ms = millis_since(started);
    anyhow::ensure!(again.is_clean(), "the render after a label change failed");

    Ok(json!({
        "bench": "render",
        "clusters": args.clusters,
        "bundles": args.bundles,
        "pairs": args.clusters * args.bundles,
        "distinctRenders": cold.distinct_renders,
        "distinctBlobs": cold.blobs.len(),
        "compressedBytes": compressed,
        "cores": std::thread::available_parallelism().map_or(1, usize::from),
        "hostLoad1m": load,
        "unit": "ms",
        "cold": cold_ms,
        "blobs": blobs_ms,
        "oneChanged": one_changed_ms,
    }))
}
