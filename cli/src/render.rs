//! `flotilla render PATH --cluster NAME [--clusters FILE] [--bundle NAME] [-o yaml|json]`:
//! prints, offline, exactly the objects one cluster would receive from the working tree at
//! PATH — every bundle that targets it, rendered as the hub renders it and shaped as the agent
//! applies it (ownership labels added, status and server-owned metadata removed).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use flotilla_core::inventory::{Cluster, load_inventory};
use flotilla_core::render::{RenderedBundle, as_applied, render_bundle};
use flotilla_core::{Limits, Repository, SourceLocation};
use serde::Serialize;
use serde_json::Value;

use crate::output::emit;

/// The inventory looked for in the repository when `--clusters` is not given.
const DEFAULT_INVENTORY: &str = "clusters.yaml";

/// How `render` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RenderFormat {
    /// A YAML stream, one document per object, each bundle introduced by a comment.
    Yaml,
    /// One JSON document: the cluster and, per bundle, its content hash and objects.
    Json,
}

impl RenderFormat {
    /// `-o json` is JSON; anything else (`yaml`, none) the YAML stream.
    fn given() -> RenderFormat {
        match crate::global::output_given() {
            Some(crate::output::OutputFormat::Json) => RenderFormat::Json,
            _ => RenderFormat::Yaml,
        }
    }
}

/// Arguments of `flotilla render`.
#[derive(Debug, Args)]
pub(crate) struct RenderArgs {
    /// The repository directory, holding `flotilla.yaml`.
    path: PathBuf,
    /// The cluster to render for, by its inventory name.
    #[arg(long, value_name = "NAME")]
    cluster: String,
    /// The inventory of clusters and their labels (default: PATH/clusters.yaml).
    #[arg(long, value_name = "FILE")]
    clusters: Option<PathBuf>,
    /// Only this bundle.
    #[arg(long, value_name = "NAME")]
    bundle: Option<String>,
    /// Packaged charts (`NAME-VERSION.tgz`, as `helm pull` writes them) for chart bundles
    /// whose chart comes from a chart repository or registry: lint and render stay offline.
    #[arg(long, value_name = "DIR")]
    charts: Option<PathBuf>,
    /// The Kubernetes version charts are rendered against, like v1.37.2 (`flotilla status`
    /// shows each cluster's); default: the hub's default for a cluster that has not reported.
    #[arg(long, value_name = "VERSION")]
    kube_version: Option<String>,
    /// Output format.
    #[arg(skip = RenderFormat::given())]
    output: RenderFormat,
}

/// One bundle as the cluster receives it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RenderedForCluster {
    name: String,
    content_hash: String,
    objects: Vec<Value>,
}

/// What `-o json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Rendered {
    cluster: String,
    bundles: Vec<RenderedForCluster>,
}

/// Renders and prints; exit code 1 (with every error on stderr) when a bundle does not render.
pub(crate) fn run(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let limits = Limits {
        render_sandbox: flotilla_core::SandboxMode::Preferred,
        ..Limits::default()
    };
    let repo = Repository::load(&args.path, limits.clone()).map_err(|errors| {
        anyhow::anyhow!(
            "{} does not load:\n{}",
            args.path.display(),
            errors
                .errors
                .iter()
                .map(|e| format!(
                    "  {}",
                    located(&args.path, Some(e.location()), &e.to_string())
                ))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let mut cluster = find_cluster(args, &limits)?;
    if let Some(version) = &args.kube_version {
        let valid = version
            .strip_prefix('v')
            .unwrap_or(version)
            .split('.')
            .take(2)
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()));
        if !valid {
            bail!("--kube-version {version}: give a Kubernetes version like v1.37.2");
        }
        cluster.capabilities = Some(flotilla_core::inventory::Capabilities {
            kube_version: version.clone(),
            api_versions: Vec::new(),
        });
    }
    let spec = repo.spec();
    if let Some(wanted) = &args.bundle
        && !spec.bundles.iter().any(|b| &b.name == wanted)
    {
        bail!(
            "no bundle `{wanted}` in {}; its bundles: {}",
            args.path.join(flotilla_core::spec::SPEC_FILE).display(),
            spec.bundles
                .iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let tools = crate::lint::tools(args.charts.as_deref());
    let mut bundles = Vec::new();
    let mut errors = Vec::new();
    for bundle in &spec.bundles {
        if args
            .bundle
            .as_ref()
            .is_some_and(|wanted| wanted != &bundle.name)
        {
            continue;
        }
        if !bundle.targets(&cluster.labels) {
            if args.bundle.is_some() {
                bail!(
                    "bundle `{}` does not target cluster `{}` (labels {}): its clusterSelector \
                     leaves it out",
                    bundle.name,
                    cluster.name,
                    describe_labels(&cluster)
                );
            }
            continue;
        }
        match render_bundle(&repo, &bundle.name, &cluster, &tools) {
            Ok(rendered) => bundles.push(for_cluster(&rendered)),
            Err(error) => errors.push(located(&args.path, error.location(), &error.to_string())),
        }
    }
    if !errors.is_empty() {
        for error in &errors {
            eprintln!("error: {error}");
        }
        eprintln!(
            "render failed: {} bundle(s) of cluster `{}` did not render",
            errors.len(),
            cluster.name
        );
        return Ok(ExitCode::FAILURE);
    }
    let text = match args.output {
        RenderFormat::Yaml => yaml_stream(&cluster.name, &bundles)?,
        RenderFormat::Json => {
            let rendered = Rendered {
                cluster: cluster.name.clone(),
                bundles,
            };
            format!(
                "{}\n",
                serde_json::to_string_pretty(&rendered).context("encoding JSON")?
            )
        }
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn find_cluster(args: &RenderArgs, limits: &Limits) -> anyhow::Result<Cluster> {
    let inventory = args
        .clusters
        .clone()
        .unwrap_or_else(|| args.path.join(DEFAULT_INVENTORY));
    let clusters = load_inventory(&inventory, limits).map_err(|errors| {
        anyhow::anyhow!(
            "the inventory {} does not load (give one with --clusters FILE):\n{}",
            inventory.display(),
            errors
                .errors
                .iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    clusters
        .iter()
        .find(|c| c.name == args.cluster)
        .cloned()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no cluster `{}` in {}; its clusters: {}",
                args.cluster,
                inventory.display(),
                clusters
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn for_cluster(rendered: &RenderedBundle) -> RenderedForCluster {
    RenderedForCluster {
        name: rendered.bundle.clone(),
        content_hash: rendered.hash().to_string(),
        objects: rendered
            .objects
            .iter()
            .map(|o| match o.object.as_object() {
                Some(fields) => as_applied(fields, o.id.namespace.as_deref(), &rendered.bundle),
                None => o.object.clone(),
            })
            .collect(),
    }
}

fn yaml_stream(cluster: &str, bundles: &[RenderedForCluster]) -> anyhow::Result<String> {
    let mut out = format!("# cluster {cluster}: {} bundle(s)\n", bundles.len());
    for bundle in bundles {
        out.push_str(&format!(
            "# bundle {} ({} objects, content {})\n",
            bundle.name,
            bundle.objects.len(),
            bundle.content_hash
        ));
        for object in &bundle.objects {
            out.push_str("---\n");
            out.push_str(&serde_saphyr::to_string(object).context("encoding YAML")?);
        }
    }
    Ok(out)
}

fn describe_labels(cluster: &Cluster) -> String {
    let labels: Vec<String> = cluster
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if labels.is_empty() {
        "none".to_owned()
    } else {
        labels.join(",")
    }
}

/// An error whose message starts with `file:line: `, with the file made a path usable from
/// the current directory.
fn located(root: &Path, location: Option<&SourceLocation>, message: &str) -> String {
    match location {
        Some(location) => {
            let prefix = format!("{location}: ");
            let rest = message.strip_prefix(&prefix).unwrap_or(message);
            let mut place = root.join(&location.file).display().to_string();
            if let Some(line) = location.line {
                place.push_str(&format!(":{line}"));
            }
            format!("{place}: {rest}")
        }
        None => message.to_owned(),
    }
}
