//! `flotilla lint PATH [--clusters FILE]`: parse a repository and render every bundle for
//! every cluster of an inventory, offline, reporting every problem with file and line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use flotilla_core::inventory::{Cluster, load_inventory};
use flotilla_core::render::{FleetRender, Tools, as_applied, render_fleet};
use flotilla_core::spec::{FleetSpec, StageSource};
use flotilla_core::validate::{self, CustomResources, Schemas, Verdict};
use flotilla_core::{ContentHash, Limits, Repository, SourceLocation};

use crate::output::{OutputFormat, emit, print_structured};

mod report;

use report::{
    BundleReport, ClusterReport, LintReport, Problem, SchemaReport, Severity, StageReport,
    WaveReport,
};

/// The inventory file looked for in the repository when `--clusters` is not given.
const DEFAULT_INVENTORY: &str = "clusters.yaml";

/// Arguments of `flotilla lint`.
#[derive(Debug, Args)]
pub(crate) struct LintArgs {
    /// The repository directory, holding `flotilla.yaml`.
    path: PathBuf,
    /// Inventory of clusters and their labels to render for (default: PATH/clusters.yaml
    /// when it exists; without an inventory only the spec is checked).
    #[arg(long, value_name = "FILE")]
    clusters: Option<PathBuf>,
    /// The Kubernetes version whose shipped OpenAPI schemas built-in kinds are checked
    /// against (shipped: 1.36, 1.37; default the newest).
    #[arg(long, value_name = "VERSION")]
    kube_version: Option<String>,
    /// Check against the OpenAPI v3 documents (`*.json`) in DIR instead of the shipped ones,
    /// e.g. saved from a cluster with `kubectl get --raw /openapi/v3/apis/apps/v1`.
    #[arg(long, value_name = "DIR", conflicts_with = "kube_version")]
    schemas: Option<PathBuf>,
    /// Packaged charts (`NAME-VERSION.tgz`, as `helm pull` writes them) for chart bundles
    /// whose chart comes from a chart repository or registry: lint and render stay offline.
    #[arg(long, value_name = "DIR")]
    charts: Option<PathBuf>,
    /// Output format.
    #[arg(skip = crate::global::output())]
    output: OutputFormat,
}

/// The render tools found on `PATH`, with the packaged charts in `charts` when given.
pub(crate) fn tools(charts: Option<&std::path::Path>) -> Tools {
    let tools = Tools::discover();
    match charts {
        Some(dir) => tools.with_charts(std::sync::Arc::new(flotilla_core::ChartDir(
            dir.to_path_buf(),
        ))),
        None => tools,
    }
}

/// Runs the lint and prints its report; exit code 0 when clean, 1 when any error was found.
pub(crate) fn run(args: &LintArgs) -> anyhow::Result<ExitCode> {
    let schemas = load_schemas(args)?;
    let report = lint(
        &args.path,
        args.clusters.as_deref(),
        &tools(args.charts.as_deref()),
        &schemas,
    );
    match args.output {
        OutputFormat::Table => emit(&report.render_table())?,
        format => print_structured(&report, format)?,
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The schemas a lint checks against, and where they came from.
struct SchemaSet {
    schemas: Schemas,
    source: String,
}

fn load_schemas(args: &LintArgs) -> anyhow::Result<SchemaSet> {
    let Some(directory) = &args.schemas else {
        let version = args.kube_version.clone().unwrap_or_else(|| {
            validate::SHIPPED_VERSIONS[validate::SHIPPED_VERSIONS.len() - 1].to_owned()
        });
        return Ok(SchemaSet {
            schemas: validate::shipped(&version)?,
            source: "shipped".to_owned(),
        });
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)
        .map_err(|e| anyhow::anyhow!("--schemas {}: {e}", directory.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut documents = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let document: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", file.display()))?;
        // Discovery documents (`/openapi/v3` itself) list paths, not schemas.
        if document.pointer("/components/schemas").is_some() {
            documents.push(document);
        }
    }
    let version = documents
        .iter()
        .find_map(|d| d.pointer("/info/version").and_then(|v| v.as_str()))
        .unwrap_or("from --schemas")
        .to_owned();
    let schemas = Schemas::from_documents(&version, documents).map_err(|e| {
        anyhow::anyhow!(
            "--schemas {}: {e}; give a directory of OpenAPI v3 documents (*.json)",
            directory.display()
        )
    })?;
    Ok(SchemaSet {
        schemas,
        source: directory.display().to_string(),
    })
}

fn lint(path: &Path, inventory: Option<&Path>, tools: &Tools, schemas: &SchemaSet) -> LintReport {
    let mut report = LintReport::new(path);
    // Offline lint runs on developer machines and CI runners where namespaces may be
    // forbidden; the static checks refuse remote references either way.
    let limits = Limits {
        render_sandbox: flotilla_core::SandboxMode::Preferred,
        ..Limits::default()
    };
    let repo = match Repository::load(path, limits.clone()) {
        Ok(repo) => Some(repo),
        Err(errors) => {
            for error in &errors.errors {
                report.push(Problem::in_repo(
                    Severity::Error,
                    path,
                    error.location(),
                    &error.to_string(),
                ));
            }
            None
        }
    };
    let inventory = inventory.map(Path::to_path_buf).or_else(|| {
        let default = path.join(DEFAULT_INVENTORY);
        default.is_file().then_some(default)
    });
    let clusters = match &inventory {
        Some(file) => match load_inventory(file, &limits) {
            Ok(clusters) => Some(clusters),
            Err(errors) => {
                for error in &errors.errors {
                    report.push(Problem::outside(
                        Severity::Error,
                        error.location(),
                        &error.to_string(),
                    ));
                }
                None
            }
        },
        None => None,
    };
    report.inventory = inventory.map(|p| p.display().to_string());
    let Some(repo) = repo else {
        return report.finish();
    };
    report.summary.stages = repo.spec().stages.len();
    report.summary.bundles = repo.spec().bundles.len();
    let Some(clusters) = clusters else {
        report.stages = stage_reports(repo.spec(), &[]);
        return report.finish();
    };
    report.summary.clusters = clusters.len();
    check_membership(&mut report, repo.spec(), &clusters, path);
    let rendered = render_fleet(&repo, &clusters, tools);
    add_render_problems(&mut report, &rendered, path);
    check_schemas(&mut report, &rendered, schemas, path);
    report.summary.pairs = rendered.pairs();
    report.summary.distinct_renders = rendered.distinct_renders;
    report.summary.blobs = rendered.blobs.len();
    report.stages = stage_reports(repo.spec(), &clusters);
    report.clusters = cluster_reports(repo.spec(), &clusters, &rendered);
    report.finish()
}

/// Each cluster in exactly one stage; warnings for what selects nothing.
fn check_membership(report: &mut LintReport, spec: &FleetSpec, clusters: &[Cluster], root: &Path) {
    for cluster in clusters {
        match spec.stage_for(&cluster.labels) {
            Ok(Some(_)) => {}
            Ok(None) => report.push(Problem::plain(
                Severity::Warning,
                format!(
                    "cluster `{}` is in no stage, so it receives nothing",
                    cluster.name
                ),
            )),
            Err(stages) => {
                let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
                report.push(Problem::in_repo(
                    Severity::Error,
                    root,
                    &stages[1].location,
                    &format!(
                        "cluster `{}` matches stages {}; a cluster may be in one stage only, \
                         so make the stages' clusterSelectors exclusive",
                        cluster.name,
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    for stage in &spec.stages {
        if !clusters
            .iter()
            .any(|c| stage.cluster_selector.matches(&c.labels))
        {
            report.push(Problem::in_repo(
                Severity::Warning,
                root,
                &stage.location,
                &format!("stage `{}` selects no cluster of the inventory", stage.name),
            ));
        }
    }
    for bundle in &spec.bundles {
        if !clusters.iter().any(|c| bundle.targets(&c.labels)) {
            report.push(Problem::in_repo(
                Severity::Warning,
                root,
                &bundle.location,
                &format!(
                    "bundle `{}` targets no cluster of the inventory",
                    bundle.name
                ),
            ));
        }
    }
}

/// One problem per distinct error, listing the clusters and bundle it concerns.
fn add_render_problems(report: &mut LintReport, rendered: &FleetRender, root: &Path) {
    let mut grouped: BTreeMap<(String, String), (Option<SourceLocation>, Vec<String>)> =
        BTreeMap::new();
    for (cluster, bundle, error) in rendered.errors() {
        let entry = grouped
            .entry((bundle.to_owned(), error.to_string()))
            .or_insert_with(|| (error.location().cloned(), Vec::new()));
        entry.1.push(cluster.to_owned());
    }
    for ((bundle, message), (location, clusters)) in grouped {
        let mut problem = match &location {
            Some(location) => Problem::in_repo(Severity::Error, root, location, &message),
            None => Problem::plain(Severity::Error, message),
        };
        problem.bundle = Some(bundle);
        problem.clusters = clusters;
        report.push(problem);
    }
}

/// Every distinct rendered object checked against the schemas; one problem per distinct
/// finding, placed at the line that writes the field when the manifest shows it.
fn check_schemas(
    report: &mut LintReport,
    rendered: &FleetRender,
    schemas: &SchemaSet,
    root: &Path,
) {
    let crds = CustomResources::from_objects(
        rendered
            .blobs
            .values()
            .flat_map(|blob| blob.objects.iter().map(|o| &o.object)),
    );
    let mut users: HashMap<&ContentHash, BTreeSet<&str>> = HashMap::new();
    for (cluster, bundles) in &rendered.clusters {
        for hash in bundles.values().filter_map(|outcome| outcome.as_ref().ok()) {
            users.entry(hash).or_default().insert(cluster);
        }
    }
    let mut texts: HashMap<String, Option<String>> = HashMap::new();
    // Keyed by place too: overlays rendering the same mistake are reported each at its own.
    type Finding = (Severity, String, String, Option<SourceLocation>);
    let mut found: BTreeMap<Finding, BTreeSet<&str>> = BTreeMap::new();
    let (mut checked, mut unchecked) = (BTreeSet::new(), BTreeSet::new());
    for (hash, blob) in &rendered.blobs {
        let clusters = users.get(hash).cloned().unwrap_or_default();
        for (index, object) in blob.objects.iter().enumerate() {
            let origin = rendered.origin(hash, index);
            let mut add = |severity, message: String, location: Option<SourceLocation>| {
                found
                    .entry((severity, blob.bundle.clone(), message, location))
                    .or_default()
                    .extend(clusters.iter().copied());
            };
            // Judged as the agent sends it: no status or server-owned metadata, the
            // namespace set or removed, the ownership labels added.
            let applied = match object.object.as_object() {
                Some(fields) => as_applied(fields, object.id.namespace.as_deref(), &blob.bundle),
                None => object.object.clone(),
            };
            match schemas.schemas.validate(&applied, &crds) {
                Verdict::Valid => {
                    checked.insert(object.object.to_string());
                }
                Verdict::Invalid(violations) => {
                    checked.insert(object.object.to_string());
                    for violation in violations {
                        let location =
                            origin.map(|o| field_location(root, o, &violation.path, &mut texts));
                        add(
                            Severity::Error,
                            format!("{}: {violation}", object.id),
                            location,
                        );
                    }
                }
                Verdict::Unchecked(why) => {
                    unchecked.insert(object.object.to_string());
                    add(Severity::Warning, why, origin.cloned());
                }
            }
        }
    }
    for ((severity, bundle, message, location), clusters) in found {
        let mut problem = match &location {
            Some(location) => Problem::in_repo(severity, root, location, &message),
            None => Problem::plain(severity, message),
        };
        problem.bundle = Some(bundle);
        problem.clusters = clusters.into_iter().map(str::to_owned).collect();
        report.push(problem);
    }
    report.schemas = Some(SchemaReport {
        kubernetes_version: schemas.schemas.version().to_owned(),
        source: schemas.source.clone(),
        checked: checked.len(),
        unchecked: unchecked.len(),
    });
}

/// The line writing `path` in the document at `origin`, or the document's own line.
fn field_location(
    root: &Path,
    origin: &SourceLocation,
    path: &validate::FieldPath,
    texts: &mut HashMap<String, Option<String>>,
) -> SourceLocation {
    let text = texts
        .entry(origin.file.clone())
        .or_insert_with(|| std::fs::read_to_string(root.join(&origin.file)).ok());
    let line = match (text, origin.line) {
        (Some(text), Some(line)) => validate::locate(text, line, path),
        _ => None,
    };
    match line {
        Some(line) => SourceLocation {
            file: origin.file.clone(),
            line: Some(line),
            column: None,
        },
        None => origin.clone(),
    }
}

fn stage_reports(spec: &FleetSpec, clusters: &[Cluster]) -> Vec<StageReport> {
    spec.stages
        .iter()
        .map(|stage| {
            let members: Vec<Cluster> = clusters
                .iter()
                .filter(|c| stage.cluster_selector.matches(&c.labels))
                .cloned()
                .collect();
            StageReport {
                name: stage.name.clone(),
                source: match &stage.source {
                    StageSource::Track { branch } => format!("track {branch}"),
                    StageSource::PromoteFrom { stage } => format!("promote from {stage}"),
                },
                approval: format!("{:?}", stage.rollout.approval).to_lowercase(),
                waves: stage
                    .rollout
                    .plan(&members)
                    .into_iter()
                    .map(|wave| WaveReport {
                        name: wave.name,
                        clusters: wave.clusters,
                    })
                    .collect(),
            }
        })
        .collect()
}

fn cluster_reports(
    spec: &FleetSpec,
    clusters: &[Cluster],
    rendered: &FleetRender,
) -> Vec<ClusterReport> {
    clusters
        .iter()
        .map(|cluster| {
            let stage = spec
                .stage_for(&cluster.labels)
                .ok()
                .flatten()
                .map(|s| s.name.clone());
            let bundles = rendered
                .clusters
                .get(&cluster.name)
                .map(|bundles| {
                    bundles
                        .iter()
                        .map(|(name, outcome)| BundleReport {
                            name: name.clone(),
                            hash: outcome.as_ref().ok().map(ToString::to_string),
                            objects: outcome
                                .as_ref()
                                .ok()
                                .and_then(|hash| rendered.blobs.get(hash))
                                .map(|b| b.objects.len()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            ClusterReport {
                name: cluster.name.clone(),
                labels: cluster.labels.clone(),
                stage,
                bundles,
            }
        })
        .collect()
}
