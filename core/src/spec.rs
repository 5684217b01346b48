//! The `flotilla.yaml` model: stages (where revisions go and how they roll out) and bundles
//! (what is rendered for which clusters).
//!
//! The file is parsed strictly into a private document model that keeps every node's line,
//! then validated into the types below, which hold only valid, defaulted values.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::labels::Labels;
use crate::limits::Limits;
use crate::location::SourceLocation;
use crate::selector::LabelSelector;

mod document;
mod quantity;
#[cfg(test)]
mod tests;
mod validate;

pub(crate) use validate::{chart_name, chart_repo, exact_version};

pub(crate) use document::FleetDocument as FleetDocumentSchema;
pub use quantity::{Duration, IntOrPercent};

/// The `apiVersion` every Flotilla file carries.
pub const API_VERSION: &str = "flotilla.dev/v1";
/// The `kind` of `flotilla.yaml`.
pub const FLEET_KIND: &str = "Fleet";
/// The file name of the spec at the repository root.
pub const SPEC_FILE: &str = "flotilla.yaml";

/// A validated `flotilla.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetSpec {
    /// `metadata.name`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Stages in declaration order.
    pub stages: Vec<Stage>,
    /// Bundles in declaration order.
    pub bundles: Vec<Bundle>,
}

/// A set of clusters that receives revisions from one source with one rollout policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// Unique DNS-1123 label.
    pub name: String,
    /// The clusters of the stage; a cluster belongs to at most one stage.
    pub cluster_selector: LabelSelector,
    /// Where the stage's revisions come from.
    pub source: StageSource,
    /// How a revision rolls out across the stage's clusters.
    pub rollout: RolloutPolicy,
    /// Keys one of which must have signed a revision before it enters this stage; empty
    /// means unsigned revisions are accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_signed_by: Vec<SigningKey>,
    /// Whether a rollout may pass while the stage selects no cluster.
    #[serde(default)]
    pub allow_empty: bool,
    /// What bundles may touch on this stage's clusters, where a bundle does not say.
    #[serde(default, skip_serializing_if = "Allow::is_unrestricted")]
    pub allow: Allow,
    /// Where the stage is declared.
    pub location: SourceLocation,
}

/// Where a stage takes its revisions from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StageSource {
    /// The head of a branch of the repository.
    Track {
        /// Branch name, e.g. `main`.
        branch: String,
    },
    /// Revisions that completed their rollout in another stage.
    PromoteFrom {
        /// Name of the upstream stage.
        stage: String,
    },
}

/// A stage's rollout policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPolicy {
    /// Waves in order; clusters no wave selects form a last, implicit wave.
    pub waves: Vec<Wave>,
    /// Most clusters of the stage not Healthy at any moment while a rollout runs (a
    /// percentage is of the stage's clusters, rounded up, at least 1).
    pub max_unavailable: IntOrPercent,
    /// How long a cluster given a revision may take to report it Healthy before the rollout
    /// fails.
    pub health_timeout: Duration,
    /// How long a healthy wave is watched before the next wave starts; after the last wave,
    /// before the revision counts as rolled out (and downstream stages may take it).
    pub soak: Duration,
    /// Whether a candidate revision starts rolling out by itself.
    pub approval: Approval,
    /// What happens when a wave fails its health gate.
    pub failure_action: FailureAction,
    /// What a newer candidate does to a rollout in progress.
    pub supersede: Supersede,
    /// Which revisions wait for an approval because of what they would delete.
    pub deletion_guard: DeletionGuard,
}

/// Limits on what one revision may delete from a stage's clusters; a revision over any of them
/// waits for `flotilla approve` whatever the stage's `approval` (an emptied `bundles:` list
/// must not roll out by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionGuard {
    /// Whether any check runs.
    pub enabled: bool,
    /// Most objects one cluster may lose, as a count or a share of the objects it holds.
    pub max_pruned_objects: IntOrPercent,
    /// Most clusters of the stage one bundle may be removed from (a percentage of the stage,
    /// rounded down, at least 1).
    pub max_bundle_removals: IntOrPercent,
    /// Whether a revision may leave every cluster of the stage with no bundle.
    pub allow_no_bundles: bool,
}

impl Default for DeletionGuard {
    fn default() -> Self {
        Self {
            enabled: true,
            max_pruned_objects: IntOrPercent::Percent(50),
            max_bundle_removals: IntOrPercent::Percent(10),
            allow_no_bundles: false,
        }
    }
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        Self {
            waves: Vec::new(),
            max_unavailable: IntOrPercent::Percent(100),
            health_timeout: Duration::from_secs(300),
            soak: Duration::default(),
            approval: Approval::Auto,
            failure_action: FailureAction::Pause,
            supersede: Supersede::AfterRollout,
            deletion_guard: DeletionGuard::default(),
        }
    }
}

/// One wave of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    /// Name shown in status (`wave-N` when not given).
    pub name: String,
    /// Which clusters the wave takes.
    pub target: WaveTarget,
    /// Soak for this wave, overriding the stage's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<Duration>,
}

/// How a wave picks its clusters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WaveTarget {
    /// The stage's clusters matching a selector that no earlier wave took.
    Selector(LabelSelector),
    /// Enough clusters, in name order, that this percentage of the stage has been reached
    /// (cumulative: `10` then `50` then `100`).
    Percent(u32),
}

/// Whether rollouts into a stage start by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Approval {
    /// A candidate revision rolls out as soon as it is eligible.
    Auto,
    /// A candidate revision waits for `flotilla approve` (or `flotilla promote`).
    Manual,
}

/// What a failed health gate does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FailureAction {
    /// Stop the rollout where it is, for an operator to decide.
    Pause,
    /// Put every cluster the rollout touched back on the stage's previous revision.
    Rollback,
}

/// What a newer candidate revision does to a rollout in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Supersede {
    /// Abandon the running rollout and start the newer revision from the first wave.
    Immediate,
    /// Let the running rollout finish, then roll out the newest candidate.
    AfterRollout,
}

/// A public key whose signatures a stage accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningKey {
    /// Name shown in status and audit (`release-team`).
    pub name: String,
    /// The key itself.
    pub key: SigningKeyMaterial,
}

/// Public key material for commit signature verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SigningKeyMaterial {
    /// An OpenSSH public key line (`ssh-ed25519 AAAA... comment`).
    Ssh(String),
    /// An ASCII-armored OpenPGP public key block.
    OpenPgp(String),
}

/// Whether the agent corrects drift or only reports it. Either way, fields another manager
/// added to an owned object (not set by the bundle) are reported and left in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DriftMode {
    /// Re-apply the desired state when a field the bundle sets drifts or an object is deleted.
    Correct,
    /// Report drift without touching the object.
    Report,
}

impl fmt::Display for DriftMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriftMode::Correct => "correct",
            DriftMode::Report => "report",
        })
    }
}

/// A directory of manifests delivered to the clusters its selector matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// Unique DNS-1123 label.
    pub name: String,
    /// Directory relative to the repository root, `/`-separated, normalized.
    pub path: String,
    /// The clusters that receive the bundle (every cluster when empty).
    pub cluster_selector: LabelSelector,
    /// Namespace given to namespaced objects that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Declared variables and their default values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Overlays in priority order; a cluster gets the first whose selector matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlays: Vec<Overlay>,
    /// Drift handling by the agent.
    pub drift: DriftMode,
    /// Bundles that must be healthy on a cluster before this one is applied there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// What the bundle may touch; a field left out comes from the cluster's stage.
    #[serde(default, skip_serializing_if = "Allow::is_unrestricted")]
    pub allow: Allow,
    /// Where the bundle is declared.
    pub location: SourceLocation,
    /// Where `path` is written, for errors about the directory.
    pub path_location: SourceLocation,
    /// The Helm chart the bundle renders instead of manifests (its `path` is the chart's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmChart>,
}

/// A Helm chart a bundle renders with `helm template`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmChart {
    /// For a chart fetched from a chart repository (`https://…`) or an OCI registry
    /// (`oci://…`): that source and the chart's name there. `None`: the chart is the bundle's
    /// `path` in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteChart>,
    /// The exact version the chart's `Chart.yaml` must declare, when given (always, for a
    /// remote chart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The release name templates see as `.Release.Name`: the bundle's name unless set.
    pub release_name: String,
    /// The bundle's values, below any overlay's.
    pub values: HelmValues,
}

/// A chart in a chart repository or an OCI registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteChart {
    /// `https://…` (or `http://…`) chart repository, or `oci://host/path` registry prefix.
    pub repo: String,
    /// The chart's name there.
    pub name: String,
}

/// Values given to a chart: the files in order, then the inline values; later ones win.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmValues {
    /// Values files relative to the repository root, normalized, each with where it is named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<(String, SourceLocation)>,
    /// Inline values (a mapping) and where they are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<(serde_json::Value, SourceLocation)>,
}

impl HelmValues {
    /// True when no values are given.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.inline.is_none()
    }
}

/// What a bundle may touch on a cluster. `None` in a field allows everything of its sort.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allow {
    /// Namespaces its namespaced objects may be in, and Namespace objects it may create (`*`:
    /// any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    /// Kinds it may contain: `group/Kind`, `Kind` for the core group, `group/*`, or `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<String>>,
    /// Whether it may contain cluster-scoped objects other than the Namespaces it may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scoped: Option<bool>,
}

impl Allow {
    /// True when nothing is restricted.
    pub fn is_unrestricted(&self) -> bool {
        self.namespaces.is_none() && self.kinds.is_none() && self.cluster_scoped.is_none()
    }

    /// This policy, each field it leaves out taken from `defaults`.
    pub fn or(&self, defaults: &Allow) -> Allow {
        Allow {
            namespaces: self
                .namespaces
                .clone()
                .or_else(|| defaults.namespaces.clone()),
            kinds: self.kinds.clone().or_else(|| defaults.kinds.clone()),
            cluster_scoped: self.cluster_scoped.or(defaults.cluster_scoped),
        }
    }

    /// Why an object of `group`/`kind` in `namespace` (`None`: cluster-scoped) named `name` is
    /// not allowed, or `None` when it is.
    pub fn refuses(
        &self,
        group: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<String> {
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{group}/{kind}")
        };
        if let Some(kinds) = &self.kinds {
            let listed = kinds.iter().any(|allowed| {
                allowed == "*" || *allowed == qualified || *allowed == format!("{group}/*")
            });
            if !listed {
                return Some(format!(
                    "kind `{qualified}` is not in the bundle's allow.kinds ({})",
                    kinds.join(", ")
                ));
            }
        }
        let namespace_allowed = |ns: &str| {
            self.namespaces
                .as_ref()
                .is_none_or(|list| list.iter().any(|allowed| allowed == "*" || allowed == ns))
        };
        match namespace {
            Some(ns) if !namespace_allowed(ns) => Some(format!(
                "namespace `{ns}` is not in the bundle's allow.namespaces ({})",
                self.namespaces.as_deref().unwrap_or_default().join(", ")
            )),
            Some(_) => None,
            None if group.is_empty() && kind == "Namespace" && self.namespaces.is_some() => {
                (!namespace_allowed(name)).then(|| {
                    format!(
                        "Namespace `{name}` is not in the bundle's allow.namespaces ({})",
                        self.namespaces.as_deref().unwrap_or_default().join(", ")
                    )
                })
            }
            None if self.cluster_scoped == Some(false) => Some(format!(
                "cluster-scoped `{qualified}` is not allowed: the bundle says allow.clusterScoped: false"
            )),
            None => None,
        }
    }
}

/// A per-cluster variation of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overlay {
    /// Name, unique within the bundle.
    pub name: String,
    /// The clusters this overlay is for.
    pub cluster_selector: LabelSelector,
    /// Directory relative to the bundle's directory, normalized to be relative to the
    /// repository root; a kustomization there replaces the bundle's build, plain manifests
    /// there are merged over the bundle's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Variable values overriding the bundle's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Chart values over the bundle's (chart bundles only).
    #[serde(default, skip_serializing_if = "HelmValues::is_empty")]
    pub helm: HelmValues,
    /// Where the overlay is declared.
    pub location: SourceLocation,
}

impl FleetSpec {
    /// Parses and validates the text of a `flotilla.yaml`. `file` names it in errors.
    pub fn parse(text: &str, file: &str, limits: &Limits) -> Result<FleetSpec, SpecErrors> {
        let document: document::FleetDocument = crate::yaml::parse_one(text, file, limits)
            .map_err(|p| {
                SpecErrors::one(SpecError::Syntax {
                    location: p.location,
                    message: p.message,
                })
            })?;
        validate::fleet(document, file)
    }

    /// The stage with this name.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|stage| stage.name == name)
    }

    /// The bundle with this name.
    pub fn bundle(&self, name: &str) -> Option<&Bundle> {
        self.bundles.iter().find(|bundle| bundle.name == name)
    }

    /// The stage a cluster with these labels belongs to: `Ok(None)` when no stage selects
    /// it, an error naming every matching stage when more than one does.
    pub fn stage_for(&self, labels: &Labels) -> Result<Option<&Stage>, Vec<&Stage>> {
        let matching: Vec<&Stage> = self
            .stages
            .iter()
            .filter(|stage| stage.cluster_selector.matches(labels))
            .collect();
        match matching.as_slice() {
            [] => Ok(None),
            [stage] => Ok(Some(stage)),
            _ => Err(matching),
        }
    }

    /// Bundles ordered so that each comes after the bundles it depends on (declaration
    /// order otherwise). Validation guarantees there is no cycle.
    pub fn bundles_in_dependency_order(&self) -> Vec<&Bundle> {
        let mut ordered: Vec<&Bundle> = Vec::with_capacity(self.bundles.len());
        while ordered.len() < self.bundles.len() {
            let before = ordered.len();
            for bundle in &self.bundles {
                let placed = |name: &str| ordered.iter().any(|b| b.name == name);
                if !placed(&bundle.name) && bundle.depends_on.iter().all(|dep| placed(dep)) {
                    ordered.push(bundle);
                }
            }
            if ordered.len() == before {
                break;
            }
        }
        ordered
    }
}

impl Bundle {
    /// True when the bundle is delivered to a cluster with these labels.
    pub fn targets(&self, labels: &Labels) -> bool {
        self.cluster_selector.matches(labels)
    }

    /// The overlay a cluster with these labels gets: the first whose selector matches.
    pub fn overlay_for(&self, labels: &Labels) -> Option<&Overlay> {
        self.overlays
            .iter()
            .find(|overlay| overlay.cluster_selector.matches(labels))
    }
}

/// A problem in a repository's spec or layout, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A file could not be read.
    #[error("{location}: cannot read: {message}")]
    Read {
        /// The file.
        location: SourceLocation,
        /// The operating system's reason.
        message: String,
    },
    /// A file is larger than the configured limit.
    #[error(
        "{location}: file is {size} bytes, over the limit of {limit} bytes; split it into smaller files (the limit is fixed)"
    )]
    TooLarge {
        /// The file.
        location: SourceLocation,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// YAML syntax, an unknown field, a missing field or a value of the wrong type.
    #[error("{location}: {message}")]
    Syntax {
        /// Where the parser stopped.
        location: SourceLocation,
        /// What it expected.
        message: String,
    },
    /// Well-formed YAML holding a value that is not allowed.
    #[error("{location}: {field}: {message}")]
    Invalid {
        /// Where the value is written.
        location: SourceLocation,
        /// The field, as a path like `stages[2].promoteFrom`.
        field: String,
        /// What is wrong and what would be right.
        message: String,
    },
    /// A path or symbolic link leads outside the repository.
    #[error(
        "{location}: `{path}` leads outside the repository; every path and link must stay inside it"
    )]
    Escape {
        /// Where the path is written, or the link itself.
        location: SourceLocation,
        /// The offending path or link target.
        path: String,
    },
    /// The repository has more entries than the configured limit.
    #[error(
        "{location}: the repository has more than {limit} files and directories; slim it down, e.g. move unrelated files to another repository (the limit is fixed)"
    )]
    TooManyEntries {
        /// The repository root.
        location: SourceLocation,
        /// The limit.
        limit: usize,
    },
}

impl SpecError {
    /// Where the problem is.
    pub fn location(&self) -> &SourceLocation {
        match self {
            SpecError::Read { location, .. }
            | SpecError::TooLarge { location, .. }
            | SpecError::Syntax { location, .. }
            | SpecError::Invalid { location, .. }
            | SpecError::Escape { location, .. }
            | SpecError::TooManyEntries { location, .. } => location,
        }
    }
}

/// Every problem found in a spec; validation does not stop at the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct SpecErrors {
    /// The problems, in file order where known.
    pub errors: Vec<SpecError>,
}

impl SpecErrors {
    pub(crate) fn one(error: SpecError) -> Self {
        Self {
            errors: vec![error],
        }
    }
}
