//! Output formats shared by commands: `-o table|json|yaml`, as kubectl does.

use std::fmt::Write as _;

use anyhow::Context;
use clap::ValueEnum;
use serde::Serialize;

/// How a command prints its result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
    /// YAML for scripts and people.
    Yaml,
    /// Markdown, for a pull request's comment (`flotilla preview` only).
    Markdown,
}

/// Prints `value` as JSON or YAML (tables are each command's own).
pub(crate) fn print_structured<T: Serialize>(
    value: &T,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let text = match format {
        OutputFormat::Json => serde_json::to_string_pretty(value).context("encoding JSON")?,
        OutputFormat::Yaml => serde_saphyr::to_string(value).context("encoding YAML")?,
        OutputFormat::Table => anyhow::bail!("a table is printed by the command itself"),
        OutputFormat::Markdown => {
            anyhow::bail!("-o markdown is for `flotilla preview`; use table, json or yaml")
        }
    };
    emit(&format!("{}\n", text.trim_end()))
}

/// Writes to stdout; a closed pipe (`flotilla ... | head`) is not an error.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// A table with a header row and columns padded to their widest cell.
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub(crate) fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells print empty.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, no trailing spaces.
    pub(crate) fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (index, cell) in row.iter().enumerate().take(columns) {
                widths[index] = widths[index].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (index, width) in widths.iter().enumerate() {
                let cell = row.get(index).map(String::as_str).unwrap_or("");
                let _ = write!(line, "{cell:<width$}   ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A status as JSON and YAML carry it (one camelCase word, `awaitingApproval`) as a table
/// shows it (`awaiting approval`).
pub(crate) fn words(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push(' ');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Clusters with identical changes together: each distinct change (compared by its JSON) with
/// the clusters that have it, in order of their first cluster.
pub(crate) fn group_alike<'a, T: Serialize + Clone + 'a>(
    changes: impl IntoIterator<Item = (&'a String, &'a T)>,
) -> Vec<(Vec<String>, T)> {
    let mut groups: Vec<(Vec<String>, T)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    for (cluster, change) in changes {
        let key = serde_json::to_string(change).unwrap_or_default();
        match index.get(&key) {
            Some(&at) => groups[at].0.push(cluster.clone()),
            None => {
                index.insert(key, groups.len());
                groups.push((vec![cluster.clone()], change.clone()));
            }
        }
    }
    groups
}

/// A commit id shortened for tables.
pub(crate) fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// `-` for an empty cell.
pub(crate) fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}
