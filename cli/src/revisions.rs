//! `flotilla revisions`: the revisions the hub keeps, newest first, with render errors located
//! by file and line.

use clap::Args;
use flotilla_proto::v1::{AdminListRevisionsRequest, AdminRevision, AdminRevisionError};
use serde::Serialize;

use crate::hub::HubArgs;
use crate::output::{OutputFormat, Table, emit, or_dash, print_structured, short};
use crate::time::{ago, rfc3339};

/// Arguments of `flotilla revisions`.
#[derive(Debug, Args)]
pub(crate) struct RevisionsArgs {
    #[arg(skip = crate::global::hub())]
    hub: HubArgs,
    /// Output format.
    #[arg(skip = crate::global::output())]
    output: OutputFormat,
}

/// Where a render error is, and what it is.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ErrorView {
    /// File relative to the repository root; absent for problems of the whole commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) line: Option<u32>,
    pub(crate) message: String,
}

impl ErrorView {
    pub(crate) fn of(error: AdminRevisionError) -> Self {
        ErrorView {
            file: Some(error.file).filter(|f| !f.is_empty()),
            line: Some(error.line).filter(|l| *l > 0),
            message: error.message,
        }
    }

    /// `file:line: message`.
    pub(crate) fn describe(&self) -> String {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => format!("{file}:{line}: {}", self.message),
            (Some(file), None) => format!("{file}: {}", self.message),
            _ => self.message.clone(),
        }
    }
}

/// A revision as printed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RevisionView {
    pub(crate) commit: String,
    pub(crate) status: String,
    pub(crate) fetched_at: Option<String>,
    pub(crate) rendered_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorView>,
    pub(crate) pinned_by: Vec<String>,
    pub(crate) clusters: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) cluster_errors: Vec<ClusterErrorView>,
    /// Stages that require signatures it lacks, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) signature_refusals: Vec<String>,
    /// The charts its chart bundles rendered from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) charts: Vec<ChartView>,
    #[serde(skip)]
    fetched_ms: i64,
}

/// The chart a chart bundle rendered from.
#[derive(Debug, Serialize)]
pub(crate) struct ChartView {
    bundle: String,
    source: String,
    version: String,
    digest: String,
}

/// A cluster a revision did not render for.
#[derive(Debug, Serialize)]
pub(crate) struct ClusterErrorView {
    cluster: String,
    error: ErrorView,
}

impl RevisionView {
    pub(crate) fn of(revision: AdminRevision) -> Self {
        RevisionView {
            commit: revision.commit,
            status: revision.status,
            fetched_at: rfc3339(revision.fetched_at_ms),
            rendered_at: rfc3339(revision.rendered_at_ms),
            error: revision.error.map(ErrorView::of),
            pinned_by: revision.pinned_by,
            clusters: revision.clusters,
            cluster_errors: revision
                .cluster_errors
                .into_iter()
                .filter_map(|e| {
                    Some(ClusterErrorView {
                        cluster: e.cluster,
                        error: ErrorView::of(e.error?),
                    })
                })
                .collect(),
            signature_refusals: revision.signature_refusals,
            charts: revision
                .charts
                .into_iter()
                .map(|c| ChartView {
                    bundle: c.bundle,
                    source: c.source,
                    version: c.version,
                    digest: c.digest,
                })
                .collect(),
            fetched_ms: revision.fetched_at_ms,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RevisionList {
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<SourceView>,
    revisions: Vec<RevisionView>,
}

/// The followed source as printed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SourceView {
    pub(crate) url: String,
    pub(crate) branch: String,
    pub(crate) head: Option<String>,
    pub(crate) fetched_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_error: Option<String>,
}

impl SourceView {
    pub(crate) fn of(source: flotilla_proto::v1::AdminSource) -> Self {
        SourceView {
            url: source.url,
            branch: source.branch,
            head: Some(source.head).filter(|h| !h.is_empty()),
            fetched_at: rfc3339(source.fetched_at_ms),
            last_error: Some(source.last_error).filter(|e| !e.is_empty()),
        }
    }

    /// One line: `URL branch @ head`, and the fetch error if any.
    pub(crate) fn describe(&self) -> String {
        let mut line = format!(
            "{} {} @ {}",
            self.url,
            self.branch,
            short(self.head.as_deref().unwrap_or("-"))
        );
        if let Some(error) = &self.last_error {
            line.push_str(&format!("\nFETCH FAILING  {error}"));
        }
        line
    }
}

/// Lists the revisions.
pub(crate) async fn run(args: &RevisionsArgs) -> anyhow::Result<()> {
    let mut admin = args.hub.connect().await?;
    let list = admin
        .list_revisions(AdminListRevisionsRequest {})
        .await
        .map_err(|s| args.hub.call_error("listing revisions", s))?
        .into_inner();
    let view = RevisionList {
        source: list.source.map(SourceView::of),
        revisions: list.revisions.into_iter().map(RevisionView::of).collect(),
    };
    match args.output {
        OutputFormat::Table => emit(&table(&view)),
        format => print_structured(&view, format),
    }
}

fn table(view: &RevisionList) -> String {
    let now = chrono::Utc::now();
    let mut out = String::new();
    if let Some(source) = &view.source {
        out.push_str(&format!("SOURCE  {}\n\n", source.describe()));
    }
    if view.revisions.is_empty() {
        out.push_str("No revisions fetched yet.\n");
        return out;
    }
    let mut table = Table::new(&["COMMIT", "STATUS", "FETCHED", "STAGES", "ERROR"]);
    for r in &view.revisions {
        let mut error = r
            .error
            .as_ref()
            .map(ErrorView::describe)
            .unwrap_or_default();
        if error.is_empty() && !r.cluster_errors.is_empty() {
            error = format!(
                "{} cluster(s) failed: {}",
                r.cluster_errors.len(),
                r.cluster_errors
                    .iter()
                    .map(|e| format!("{}: {}", e.cluster, e.error.describe()))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        if error.is_empty() && !r.signature_refusals.is_empty() {
            error = format!("refused by {}", r.signature_refusals.join("; "));
        }
        table.row(vec![
            short(&r.commit).to_owned(),
            r.status.clone(),
            ago(r.fetched_ms, now),
            or_dash(&r.pinned_by.join(",")),
            or_dash(&error),
        ]);
    }
    out.push_str(&table.render());
    out
}
