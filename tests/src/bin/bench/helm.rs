//! Rendering a chart bundle for a fleet: a chart of T templates (Deployments, Services and
//! ConfigMaps using its values) rendered for N clusters whose values differ per cluster (the
//! cluster's name and region substituted into the bundle's inline values, more replicas for
//! a third of them), in-process with `render_fleet` and the pinned helm, as the hub renders a
//! commit.
//!
//! Figures (milliseconds): `cold`, the first render of the fleet (helm runs once per distinct
//! values, on every core); `cached`, the same fleet rendered again (a new commit that leaves the
//! chart and the values alone: every helm output comes from the cache); `oneChanged`, after
//! one cluster's label changed (one helm run, the rest cached). Host load is the 1-minute load
//! average before the run.

use std::time::Instant;

use anyhow::Context;
use flotilla_core::inventory::{Cluster, parse_inventory};
use flotilla_core::{Limits, Repository};
use serde_json::{Value, json};

use crate::common::{load_average, millis_since};

/// Options of `bench helm`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Clusters the chart is rendered for.
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// Templates in the chart.
    #[arg(long, default_value_t = 50)]
    templates: usize,
}

const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: all
    track: {branch: main}
bundles:
  - name: app
    namespace: bench
    helm:
      chart: chart
      values:
        cluster: ${cluster.name}
        region: ${cluster.labels.region}
    overlays:
      - name: big
        clusterSelector: {matchLabels: {size: big}}
        helm:
          values: {replicas: 3}
";

/// The `i`th template: a Deployment, a Service or a ConfigMap, by turns.
fn template(i: usize) -> String {
    match i % 3 {
        0 => format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{{{ .Release.Name }}}}-{i}\n  labels: {{{{- include \"bench.labels\" . | nindent 4 }}}}\nspec:\n  replicas: {{{{ .Values.replicas }}}}\n  selector:\n    matchLabels: {{app: w{i}}}\n  template:\n    metadata:\n      labels: {{app: w{i}}}\n    spec:\n      containers:\n        - name: app\n          image: \"{{{{ .Values.image }}}}\"\n          env:\n            - {{name: CLUSTER, value: {{{{ .Values.cluster | quote }}}}}}\n            - {{name: REGION, value: {{{{ .Values.region | quote }}}}}}\n"
        ),
        1 => format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{{{ .Release.Name }}}}-{i}\n  labels: {{{{- include \"bench.labels\" . | nindent 4 }}}}\nspec:\n  selector: {{app: w{}}}\n  ports:\n    - port: {{{{ add 8000 {i} }}}}\n",
            i - 1
        ),
        _ => format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{{{ .Release.Name }}}}-{i}\n  labels: {{{{- include \"bench.labels\" . | nindent 4 }}}}\ndata:\n  cluster: {{{{ .Values.cluster | quote }}}}\n  settings.yaml: |\n    {{{{- toYaml .Values.settings | nindent 4 }}}}\n"
        ),
    }
}

fn inventory(clusters: usize) -> String {
    let regions = ["eu", "us", "ap"];
    let mut text = "apiVersion: flotilla.dev/v1\nkind: ClusterInventory\nclusters:\n".to_owned();
    for i in 0..clusters {
        let size = if i % 3 == 0 { "big" } else { "small" };
        text.push_str(&format!(
            "  - name: c{i:05}\n    labels: {{region: {}, size: {size}}}\n",
            regions[i % regions.len()]
        ));
    }
    text
}

/// Runs the measurement.
pub(crate) async fn run(args: Args) -> anyhow::Result<Value> {
    let Some(helm) = flotilla_testkit::helm::helm_or_skip("bench helm") else {
        anyhow::bail!("bench helm needs the pinned helm: run scripts/k8s-build helm");
    };
    let load = load_average();
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::write(root.join("flotilla.yaml"), SPEC)?;
    let chart = root.join("chart");
    std::fs::create_dir_all(chart.join("templates"))?;
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: bench\nversion: 1.0.0\n",
    )?;
    std::fs::write(
        chart.join("values.yaml"),
        "replicas: 1\nimage: nginx:1.27\ncluster: none\nregion: none\nsettings: {level: info, retries: 3, endpoints: [a, b, c]}\n",
    )?;
    std::fs::write(
        chart.join("templates/_helpers.tpl"),
        "{{- define \"bench.labels\" -}}\napp.kubernetes.io/name: {{ .Chart.Name }}\napp.kubernetes.io/instance: {{ .Release.Name }}\n{{- end }}\n",
    )?;
    for i in 0..args.templates {
        std::fs::write(chart.join(format!("templates/t{i:03}.yaml")), template(i))?;
    }
    let limits = Limits::default();
    let repo = Repository::load(root, limits.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tools =
        flotilla_testkit::helm::render_tools().with_helm(flotilla_core::Helm::Binary(helm.clone()));
    let text = inventory(args.clusters);
    let clusters =
        parse_inventory(&text, "clusters.yaml", &limits).map_err(|e| anyhow::anyhow!("{e}"))?;

    let started = Instant::now();
    let cold = flotilla_core::render_fleet(&repo, &clusters, &tools);
    let cold_ms = millis_since(started);
    if let Some((cluster, bundle, error)) = cold.errors().next() {
        anyhow::bail!("{cluster}/{bundle}: {error}");
    }
    let objects = cold
        .blobs
        .values()
        .next()
        .map(|blob| blob.objects.len())
        .context("nothing rendered")?;

    let started = Instant::now();
    let cached = flotilla_core::render_fleet(&repo, &clusters, &tools);
    let cached_ms = millis_since(started);
    anyhow::ensure!(
        cached.clusters == cold.clusters,
        "a cached render differs from the cold one"
    );

    let mut moved: Vec<Cluster> = clusters.clone();
    if let Some(first) = moved.first_mut() {
        first.labels.insert("region".to_owned(), "moved".to_owned());
    }
    let started = Instant::now();
    let one_changed = flotilla_core::render_fleet(&repo, &moved, &tools);
    let one_changed_ms = millis_since(started);
    anyhow::ensure!(
        one_changed.is_clean(),
        "the render after a label change failed"
    );

    Ok(json!({
        "bench": "helm",
        "clusters": args.clusters,
        "templates": args.templates,
        "objectsPerCluster": objects,
        "distinctRenders": cold.distinct_renders,
        "cores": std::thread::available_parallelism().map_or(1, usize::from),
        "hostLoad1m": load,
        "unit": "ms",
        "cold": cold_ms,
        "coldPerRender": ((cold_ms / cold.distinct_renders.max(1) as f64) * 10.0).round() / 10.0,
        "cached": cached_ms,
        "oneChanged": one_changed_ms,
    }))
}
