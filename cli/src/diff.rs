//! `flotilla diff REV_A REV_B [--cluster C]`: per cluster, the objects a move from one revision
//! to another adds, removes or changes, with every changed field; clusters with identical
//! changes are listed together, their changes once (`groups` in JSON, beside `clusters`). Revisions are commit ids or
//! unique prefixes of at least 4 digits, as `flotilla revisions` lists them. Exits 0 whether or
//! not there are differences.

use std::process::ExitCode;

use clap::Args;
use flotilla_proto::v1::{AdminDiffReply, AdminDiffRequest};
use serde::Serialize;

use crate::hub::HubArgs;
use crate::output::{OutputFormat, emit, print_structured, short};

/// Arguments of `flotilla diff`.
#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The revision to compare from.
    from: String,
    /// The revision to compare to.
    to: String,
    /// Only this cluster.
    #[arg(long)]
    cluster: Option<String>,
    #[arg(skip = crate::global::hub())]
    hub: HubArgs,
    /// Output format.
    #[arg(skip = crate::global::output())]
    output: OutputFormat,
    /// Exit with 1 when the revisions differ and 0 when they do not (errors exit with 2), as
    /// `git diff --exit-code` and `kubectl diff` do, for scripts and CI gates.
    #[arg(long)]
    pub(crate) exit_code: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DiffView {
    from_revision: String,
    to_revision: String,
    clusters: Vec<ClusterDiff>,
    /// Clusters with identical changes, listed once: what a table prints.
    groups: Vec<DiffGroup>,
}

/// Clusters whose changes are the same, with those changes.
#[derive(Debug, Serialize)]
struct DiffGroup {
    clusters: Vec<String>,
    bundles: Vec<BundleDiff>,
}

#[derive(Debug, Serialize)]
struct ClusterDiff {
    cluster: String,
    bundles: Vec<BundleDiff>,
}

#[derive(Debug, Clone, Serialize)]
struct BundleDiff {
    bundle: String,
    change: String,
    objects: Vec<ObjectDiff>,
}

#[derive(Debug, Clone, Serialize)]
struct ObjectDiff {
    object: String,
    change: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<FieldDiff>,
}

#[derive(Debug, Clone, Serialize)]
struct FieldDiff {
    path: String,
    change: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<serde_json::Value>,
}

fn json(text: String) -> Option<serde_json::Value> {
    (!text.is_empty())
        .then(|| serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// Groups clusters whose changes are identical, in order of their first cluster.
fn group(clusters: &[ClusterDiff]) -> Vec<DiffGroup> {
    crate::output::group_alike(clusters.iter().map(|c| (&c.cluster, &c.bundles)))
        .into_iter()
        .map(|(clusters, bundles)| DiffGroup { clusters, bundles })
        .collect()
}

impl DiffView {
    fn of(reply: AdminDiffReply) -> Self {
        let mut view = DiffView {
            from_revision: reply.from_revision,
            to_revision: reply.to_revision,
            groups: Vec::new(),
            clusters: reply
                .clusters
                .into_iter()
                .map(|c| ClusterDiff {
                    cluster: c.cluster,
                    bundles: c
                        .bundles
                        .into_iter()
                        .map(|b| BundleDiff {
                            bundle: b.bundle,
                            change: b.change,
                            objects: b
                                .objects
                                .into_iter()
                                .map(|o| ObjectDiff {
                                    object: o.object,
                                    change: o.change,
                                    fields: o
                                        .fields
                                        .into_iter()
                                        .map(|f| FieldDiff {
                                            path: f.path,
                                            change: f.change,
                                            from: json(f.from_value),
                                            to: json(f.to_value),
                                        })
                                        .collect(),
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
        };
        view.groups = group(&view.clusters);
        view
    }
}

/// Prints the difference between two revisions; with `--exit-code`, says by the exit code
/// whether there is one.
pub(crate) async fn run(args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let mut admin = args.hub.connect().await?;
    let reply = admin
        .diff(AdminDiffRequest {
            from_revision: args.from.clone(),
            to_revision: args.to.clone(),
            cluster: args.cluster.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| {
            args.hub
                .call_error(&format!("comparing {} with {}", args.from, args.to), s)
        })?
        .into_inner();
    let view = DiffView::of(reply);
    match args.output {
        OutputFormat::Table => emit(&text(&view))?,
        format => print_structured(&view, format)?,
    }
    Ok(if args.exit_code && !view.clusters.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn mark(change: &str) -> &'static str {
    match change {
        "added" => "+",
        "removed" => "-",
        _ => "~",
    }
}

fn text(view: &DiffView) -> String {
    let mut out = format!(
        "{} → {}\n",
        short(&view.from_revision),
        short(&view.to_revision)
    );
    if view.clusters.is_empty() {
        out.push_str("no differences\n");
        return out;
    }
    for group in &view.groups {
        let (noun, count) = match group.clusters.len() {
            1 => ("cluster", String::new()),
            n => ("clusters", format!(" ({n})")),
        };
        out.push_str(&format!("\n{noun} {}{count}\n", group.clusters.join(", ")));
        for bundle in &group.bundles {
            out.push_str(&format!(
                "  {} bundle {} ({})\n",
                mark(&bundle.change),
                bundle.bundle,
                bundle.change
            ));
            for object in &bundle.objects {
                out.push_str(&format!("    {} {}\n", mark(&object.change), object.object));
                for field in &object.fields {
                    let value = |v: &Option<serde_json::Value>| {
                        v.as_ref().map_or("(none)".to_owned(), |v| v.to_string())
                    };
                    let line = match field.change.as_str() {
                        "added" => format!("{}: {}", field.path, value(&field.to)),
                        "removed" => format!("{}: {}", field.path, value(&field.from)),
                        _ => format!(
                            "{}: {} → {}",
                            field.path,
                            value(&field.from),
                            value(&field.to)
                        ),
                    };
                    out.push_str(&format!("        {} {line}\n", mark(&field.change)));
                }
            }
        }
    }
    out
}
