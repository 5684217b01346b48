//! Cluster identities and the inventory file `flotilla lint` renders a repository against.
//!
//! ```yaml
//! apiVersion: flotilla.dev/v1
//! kind: ClusterInventory
//! clusters:
//!   - name: prod-eu-1
//!     labels: {env: prod, region: eu}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::labels::{Labels, validate_dns1123_label, validate_label_key, validate_label_value};
use crate::limits::Limits;
use crate::location::SourceLocation;
use crate::spec::{API_VERSION, SpecError, SpecErrors};

/// The `kind` of an inventory file.
pub const INVENTORY_KIND: &str = "ClusterInventory";

/// A cluster as rendering sees it: a name, labels, and what it serves once its agent said.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cluster {
    /// Unique DNS-1123 label, e.g. `prod-eu-1`.
    pub name: String,
    /// Labels selectors match against.
    #[serde(default)]
    pub labels: Labels,
    /// The Kubernetes version and APIs it serves (charts render against them); `None` for a
    /// cluster whose agent has not reported yet, and offline (lint, render).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
}

/// What a cluster serves, as its agent read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// The API server's version, like `v1.37.2`.
    pub kube_version: String,
    /// Every served `group/version` (`v1` for the core group), sorted.
    pub api_versions: Vec<String>,
}

impl Cluster {
    /// A cluster from a name and `(key, value)` label pairs.
    pub fn new<'a>(name: &str, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            name: name.to_owned(),
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            capabilities: None,
        }
    }

    /// Problems with the name or labels, one message each; empty when valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(why) = validate_dns1123_label(&self.name) {
            problems.push(format!("cluster name: {why}"));
        }
        for (key, value) in &self.labels {
            problems.extend(validate_label_key(key).err());
            problems.extend(validate_label_value(value).err());
        }
        problems
    }
}

/// A list of clusters and their labels, kept in a file (`clusters.yaml`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Flotilla cluster inventory")]
pub(crate) struct InventoryDocument {
    /// Always `flotilla.dev/v1`.
    #[schemars(with = "String", extend("const" = "flotilla.dev/v1"))]
    api_version: Spanned<String>,
    /// Always `ClusterInventory`.
    #[schemars(with = "String", extend("const" = "ClusterInventory"))]
    kind: Spanned<String>,
    /// The clusters.
    #[schemars(with = "Vec<ClusterDocument>")]
    clusters: Vec<Spanned<ClusterDocument>>,
}

/// One cluster of an inventory.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ClusterDocument {
    /// Unique name (DNS-1123 label).
    name: String,
    /// Labels, matched by stage, bundle, overlay and wave selectors.
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Parses an inventory's text; `file` names it in errors.
pub fn parse_inventory(
    text: &str,
    file: &str,
    limits: &Limits,
) -> Result<Vec<Cluster>, SpecErrors> {
    let document: InventoryDocument = crate::yaml::parse_one(text, file, limits).map_err(|p| {
        SpecErrors::one(SpecError::Syntax {
            location: p.location,
            message: p.message,
        })
    })?;
    let mut errors = Vec::new();
    let mut invalid = |at: serde_saphyr::Location, field: String, message: String| {
        errors.push(SpecError::Invalid {
            location: SourceLocation::from_yaml(file, at),
            field,
            message,
        });
    };
    if document.api_version.value != API_VERSION {
        invalid(
            document.api_version.referenced,
            "apiVersion".into(),
            format!("use `{API_VERSION}`"),
        );
    }
    if document.kind.value != INVENTORY_KIND {
        invalid(
            document.kind.referenced,
            "kind".into(),
            format!("use `{INVENTORY_KIND}`"),
        );
    }
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut clusters = Vec::with_capacity(document.clusters.len());
    for (index, entry) in document.clusters.into_iter().enumerate() {
        let cluster = Cluster {
            name: entry.value.name,
            labels: entry.value.labels,
            capabilities: None,
        };
        for problem in cluster.validate() {
            invalid(entry.referenced, format!("clusters[{index}]"), problem);
        }
        if let Some(first) = seen.insert(cluster.name.clone(), entry.referenced.line()) {
            invalid(
                entry.referenced,
                format!("clusters[{index}].name"),
                format!(
                    "cluster `{}` is already listed on line {first}",
                    cluster.name
                ),
            );
        }
        clusters.push(cluster);
    }
    if errors.is_empty() {
        Ok(clusters)
    } else {
        Err(SpecErrors { errors })
    }
}

/// Reads and parses an inventory file.
pub fn load_inventory(path: &Path, limits: &Limits) -> Result<Vec<Cluster>, SpecErrors> {
    let file = path.display().to_string();
    let text = crate::repository::read_limited(path, &file, limits).map_err(SpecErrors::one)?;
    parse_inventory(&text, &file, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_parses_and_rejects_duplicates_and_bad_labels() {
        let text = "apiVersion: flotilla.dev/v1\nkind: ClusterInventory\nclusters:\n  - name: a\n    labels: {env: dev}\n  - name: a\n  - name: B\n    labels: {\"bad key\": x}\n";
        let err = parse_inventory(text, "clusters.yaml", &Limits::default()).unwrap_err();
        let lines: Vec<Option<u32>> = err.errors.iter().map(|e| e.location().line).collect();
        assert_eq!(lines, vec![Some(6), Some(7), Some(7)], "{err}");
        let good = "apiVersion: flotilla.dev/v1\nkind: ClusterInventory\nclusters:\n  - name: a\n    labels: {env: dev}\n";
        let clusters = parse_inventory(good, "clusters.yaml", &Limits::default()).unwrap();
        assert_eq!(clusters, vec![Cluster::new("a", [("env", "dev")])]);
    }
}
