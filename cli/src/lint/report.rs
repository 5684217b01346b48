//! The lint report: what JSON and YAML output serialize and what the table shows.

use std::fmt::Write as _;
use std::path::Path;

use flotilla_core::{Labels, SourceLocation};
use serde::Serialize;

use crate::output::Table;

/// How bad a problem is: errors fail the lint, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Severity {
    Error,
    Warning,
}

/// One problem, located where possible.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Problem {
    pub(super) severity: Severity,
    /// The file, as a path usable from the current directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) column: Option<u32>,
    pub(super) message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) bundle: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) clusters: Vec<String>,
}

impl Problem {
    /// A problem in a repository file; `full` is the error's display, which starts with
    /// the location, dropped here since it is carried apart.
    pub(super) fn in_repo(
        severity: Severity,
        root: &Path,
        location: &SourceLocation,
        full: &str,
    ) -> Self {
        let mut problem = Self::outside(severity, location, full);
        problem.file = Some(root.join(&location.file).display().to_string());
        problem
    }

    /// A problem in a file named as is (an inventory given on the command line).
    pub(super) fn outside(severity: Severity, location: &SourceLocation, full: &str) -> Self {
        let prefix = format!("{location}: ");
        Self {
            severity,
            file: Some(location.file.clone()),
            line: location.line,
            column: location.column,
            message: full.strip_prefix(&prefix).unwrap_or(full).to_owned(),
            bundle: None,
            clusters: Vec::new(),
        }
    }

    /// A problem with no file.
    pub(super) fn plain(severity: Severity, message: String) -> Self {
        Self {
            severity,
            file: None,
            line: None,
            column: None,
            message,
            bundle: None,
            clusters: Vec::new(),
        }
    }

    fn place(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        Some(match (self.line, self.column) {
            (Some(line), Some(column)) => format!("{file}:{line}:{column}"),
            (Some(line), None) => format!("{file}:{line}"),
            _ => file.clone(),
        })
    }
}

/// Counts shown at the end of the report.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Summary {
    pub(super) stages: usize,
    pub(super) bundles: usize,
    pub(super) clusters: usize,
    /// (cluster, bundle) pairs rendered.
    pub(super) pairs: usize,
    /// Renders actually run: one per distinct render input.
    pub(super) distinct_renders: usize,
    /// Distinct rendered contents.
    pub(super) blobs: usize,
    pub(super) errors: usize,
    pub(super) warnings: usize,
}

impl Summary {
    fn count(problems: &[Problem], severity: Severity) -> usize {
        problems.iter().filter(|p| p.severity == severity).count()
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StageReport {
    pub(super) name: String,
    pub(super) source: String,
    pub(super) approval: String,
    pub(super) waves: Vec<WaveReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WaveReport {
    pub(super) name: String,
    pub(super) clusters: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ClusterReport {
    pub(super) name: String,
    pub(super) labels: Labels,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) stage: Option<String>,
    pub(super) bundles: Vec<BundleReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BundleReport {
    pub(super) name: String,
    /// The rendered content's hash; absent when the render failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) objects: Option<usize>,
}

/// Which schemas rendered objects were checked against, and how many were.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SchemaReport {
    /// The Kubernetes version of the built-in schemas.
    pub(super) kubernetes_version: String,
    /// `shipped`, or the directory the OpenAPI documents were read from.
    pub(super) source: String,
    /// Distinct rendered objects checked (built-in kinds and custom resources whose
    /// definition the repository carries).
    pub(super) checked: usize,
    /// Distinct rendered objects no schema describes (warned about).
    pub(super) unchecked: usize,
}

/// The whole result of a lint.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LintReport {
    pub(super) path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) inventory: Option<String>,
    pub(super) ok: bool,
    pub(super) summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) schemas: Option<SchemaReport>,
    pub(super) problems: Vec<Problem>,
    pub(super) stages: Vec<StageReport>,
    pub(super) clusters: Vec<ClusterReport>,
}

impl LintReport {
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.display().to_string(),
            inventory: None,
            ok: false,
            summary: Summary::default(),
            schemas: None,
            problems: Vec::new(),
            stages: Vec::new(),
            clusters: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    /// Counts problems and decides the verdict.
    pub(super) fn finish(mut self) -> Self {
        self.summary.errors = Summary::count(&self.problems, Severity::Error);
        self.summary.warnings = Summary::count(&self.problems, Severity::Warning);
        self.ok = self.summary.errors == 0;
        self
    }

    pub(super) fn render_table(&self) -> String {
        let mut out = String::new();
        if !self.stages.is_empty() {
            let mut table = Table::new(&["STAGE", "SOURCE", "APPROVAL", "WAVES"]);
            for stage in &self.stages {
                let waves: Vec<String> = stage
                    .waves
                    .iter()
                    .map(|w| format!("{}: {}", w.name, or_none(&w.clusters.join(","))))
                    .collect();
                table.row(vec![
                    stage.name.clone(),
                    stage.source.clone(),
                    stage.approval.clone(),
                    waves.join("  "),
                ]);
            }
            out.push_str(&table.render());
            out.push('\n');
        }
        if !self.clusters.is_empty() {
            let mut table = Table::new(&["CLUSTER", "STAGE", "BUNDLE", "REVISION", "OBJECTS"]);
            for cluster in &self.clusters {
                for bundle in &cluster.bundles {
                    table.row(vec![
                        cluster.name.clone(),
                        cluster.stage.clone().unwrap_or_else(|| "-".to_owned()),
                        bundle.name.clone(),
                        bundle
                            .hash
                            .as_ref()
                            .map_or("error".to_owned(), |h| h[..12].to_owned()),
                        bundle.objects.map_or("-".to_owned(), |n| n.to_string()),
                    ]);
                }
            }
            out.push_str(&table.render());
            out.push('\n');
        }
        for problem in &self.problems {
            let severity = match problem.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let _ = write!(out, "{severity}: ");
            if let Some(place) = problem.place() {
                let _ = write!(out, "{place}: ");
            }
            out.push_str(&problem.message);
            if let Some(bundle) = &problem.bundle {
                let _ = write!(
                    out,
                    " [bundle {bundle}; clusters {}]",
                    problem.clusters.join(", ")
                );
            }
            out.push('\n');
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "{}: {} stages, {} bundles, {} clusters; {} (cluster, bundle) pairs, {} distinct renders, {} distinct blobs",
            self.path, s.stages, s.bundles, s.clusters, s.pairs, s.distinct_renders, s.blobs
        );
        if let Some(schemas) = &self.schemas {
            let _ = writeln!(
                out,
                "objects checked against the Kubernetes {} schemas ({}): {} checked, {} without a schema",
                schemas.kubernetes_version, schemas.source, schemas.checked, schemas.unchecked
            );
        }
        if self.inventory.is_none() {
            out.push_str(
                "no inventory: only the spec was checked; pass --clusters FILE to render bundles\n",
            );
        }
        let _ = writeln!(
            out,
            "{}: {} error(s), {} warning(s)",
            if self.ok {
                "lint passed"
            } else {
                "lint failed"
            },
            s.errors,
            s.warnings
        );
        out
    }
}

fn or_none(text: &str) -> &str {
    if text.is_empty() { "(none)" } else { text }
}
