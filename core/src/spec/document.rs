//! `flotilla.yaml` as written: strict serde types that keep each node's location. The JSON
//! schema in `docs/` is generated from these types, so the schema and the parser agree.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::quantity::{Duration, IntOrPercent, VariableValue};
use super::{Approval, DriftMode, FailureAction, Supersede};
use crate::selector::LabelSelector;

/// A Flotilla fleet: the stages revisions go through and the bundles delivered to clusters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Flotilla Fleet (flotilla.yaml)")]
pub(crate) struct FleetDocument {
    /// Always `flotilla.dev/v1`.
    #[schemars(with = "String", extend("const" = "flotilla.dev/v1"))]
    pub(crate) api_version: Spanned<String>,
    /// Always `Fleet`.
    #[schemars(with = "String", extend("const" = "Fleet"))]
    pub(crate) kind: Spanned<String>,
    /// Optional metadata.
    #[serde(default)]
    pub(crate) metadata: Option<MetadataDocument>,
    /// Stages, each a set of clusters with a revision source and a rollout policy.
    #[schemars(with = "Vec<StageDocument>")]
    pub(crate) stages: Vec<Spanned<StageDocument>>,
    /// Bundles: directories of manifests and the clusters they go to.
    #[serde(default)]
    #[schemars(with = "Vec<BundleDocument>")]
    pub(crate) bundles: Vec<Spanned<BundleDocument>>,
}

/// Metadata of the fleet.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct MetadataDocument {
    /// A name for the fleet, shown in status.
    #[serde(default)]
    pub(crate) name: Option<String>,
}

/// A stage: a set of clusters, where its revisions come from, and how they roll out.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct StageDocument {
    /// Unique name (DNS-1123 label), e.g. `prod`.
    #[schemars(with = "String")]
    pub(crate) name: Spanned<String>,
    /// The stage's clusters; absent selects every cluster. A cluster may be in one stage only.
    #[serde(default)]
    #[schemars(with = "Option<LabelSelector>")]
    pub(crate) cluster_selector: Option<Spanned<LabelSelector>>,
    /// Follow the head of a branch. Exactly one of `track` and `promoteFrom` is required.
    #[serde(default)]
    #[schemars(with = "Option<TrackDocument>")]
    pub(crate) track: Option<Spanned<TrackDocument>>,
    /// Take revisions that completed their rollout in this other stage.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub(crate) promote_from: Option<Spanned<String>>,
    /// Rollout policy; every field has a default.
    #[serde(default)]
    pub(crate) rollout: Option<RolloutDocument>,
    /// Keys one of which must have signed a revision before it enters the stage.
    #[serde(default)]
    #[schemars(with = "Vec<SigningKeyDocument>")]
    pub(crate) require_signed_by: Vec<Spanned<SigningKeyDocument>>,
    /// Let a rollout pass while the stage selects no cluster. Off by default: a selector that
    /// matches nothing (a typo) holds the rollout instead of passing it on at once.
    #[serde(default)]
    pub(crate) allow_empty: bool,
    /// What bundles may touch on this stage's clusters, for bundles that do not say.
    #[serde(default)]
    pub(crate) allow: Option<AllowDocument>,
}

/// What a bundle may touch; an absent field allows everything of its sort.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct AllowDocument {
    /// Namespaces its namespaced objects may be in (and Namespace objects it may create);
    /// `*` allows any.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub(crate) namespaces: Option<Vec<Spanned<String>>>,
    /// Kinds it may contain: `group/Kind`, `Kind` for the core group, `group/*` for every kind
    /// of a group, `*` for any.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub(crate) kinds: Option<Vec<Spanned<String>>>,
    /// Whether it may contain cluster-scoped objects (Namespaces it may use excepted).
    #[serde(default)]
    pub(crate) cluster_scoped: Option<bool>,
}

/// The branch a stage follows.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TrackDocument {
    /// Branch name, e.g. `main`.
    #[schemars(with = "String")]
    pub(crate) branch: Spanned<String>,
}

/// How a revision rolls out across a stage.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RolloutDocument {
    /// Waves in order; clusters no wave takes form a last wave. Absent: one wave.
    #[serde(default)]
    #[schemars(with = "Vec<WaveDocument>")]
    pub(crate) waves: Vec<Spanned<WaveDocument>>,
    /// Most clusters of the stage not Healthy at any moment during a rollout: a count or a
    /// percentage of the stage. Default `100%`.
    #[serde(default)]
    #[schemars(with = "Option<IntOrPercent>")]
    pub(crate) max_unavailable: Option<Spanned<IntOrPercent>>,
    /// How long a cluster given a revision may take to report it Healthy. Default `5m`.
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub(crate) health_timeout: Option<Spanned<Duration>>,
    /// How long each healthy wave is watched before going on. Default `0s`.
    #[serde(default)]
    pub(crate) soak: Option<Duration>,
    /// `auto` (default) or `manual` (wait for `flotilla approve`).
    #[serde(default)]
    pub(crate) approval: Option<Approval>,
    /// `pause` (default) or `rollback` when a wave fails its health gate.
    #[serde(default)]
    pub(crate) failure_action: Option<FailureAction>,
    /// `afterRollout` (default): a newer candidate waits for the running rollout to end;
    /// `immediate`: it replaces the running rollout.
    #[serde(default)]
    pub(crate) supersede: Option<Supersede>,
    /// Holds a revision that would delete much of what the stage runs for `flotilla approve`,
    /// whatever `approval` says. On by default.
    #[serde(default)]
    pub(crate) deletion_guard: Option<DeletionGuardDocument>,
}

/// Limits on what one revision may delete from a stage before it waits for an approval.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DeletionGuardDocument {
    /// `false` turns every check of the guard off for the stage. Default `true`.
    #[serde(default)]
    pub(crate) enabled: Option<bool>,
    /// Most objects one cluster may lose (pruned, counted across its bundles): a count or a
    /// percentage of the objects it holds at the stage's revision. Default `50%`; `100%` turns
    /// this check off.
    #[serde(default)]
    pub(crate) max_pruned_objects: Option<IntOrPercent>,
    /// Most clusters of the stage one bundle may be removed from: a count or a percentage of
    /// the stage's clusters (rounded down, at least 1). Default `10%`; `100%` turns this check
    /// off.
    #[serde(default)]
    pub(crate) max_bundle_removals: Option<IntOrPercent>,
    /// Let a revision leave every cluster of the stage with no bundle at all. Default `false`.
    #[serde(default)]
    pub(crate) allow_no_bundles: Option<bool>,
}

/// A wave: clusters picked by a selector, or by a cumulative percentage of the stage.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct WaveDocument {
    /// Name shown in status; default `wave-N`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub(crate) name: Option<Spanned<String>>,
    /// Clusters of the stage matching this selector (and not taken by an earlier wave).
    #[serde(default)]
    #[schemars(with = "Option<LabelSelector>")]
    pub(crate) cluster_selector: Option<Spanned<LabelSelector>>,
    /// Cumulative percentage of the stage reached at the end of this wave (1-100).
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(min = 1, max = 100))]
    pub(crate) percent: Option<Spanned<u32>>,
    /// Soak for this wave, overriding the stage's.
    #[serde(default)]
    pub(crate) soak: Option<Duration>,
}

/// A public key accepted for commit signatures. Exactly one of `ssh` and `openpgp`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SigningKeyDocument {
    /// Name shown in status and audit.
    #[schemars(with = "String")]
    pub(crate) name: Spanned<String>,
    /// An OpenSSH public key line: `ssh-ed25519 AAAA... comment`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub(crate) ssh: Option<Spanned<String>>,
    /// An ASCII-armored OpenPGP public key block.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub(crate) openpgp: Option<Spanned<String>>,
}

/// A bundle: a directory of manifests, the clusters it goes to, and its per-cluster values.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct BundleDocument {
    /// Unique name (DNS-1123 label).
    #[schemars(with = "String")]
    pub(crate) name: Spanned<String>,
    /// Directory of manifests or of a kustomization, relative to the repository root.
    /// Exactly one of `path` and `helm` is required.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub(crate) path: Option<Spanned<String>>,
    /// A Helm chart rendered with `helm template` instead of manifests.
    #[serde(default)]
    #[schemars(with = "Option<HelmDocument>")]
    pub(crate) helm: Option<Spanned<HelmDocument>>,
    /// The clusters that receive the bundle; absent selects every cluster.
    #[serde(default)]
    #[schemars(with = "Option<LabelSelector>")]
    pub(crate) cluster_selector: Option<Spanned<LabelSelector>>,
    /// Namespace for namespaced objects that name none.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub(crate) namespace: Option<Spanned<String>>,
    /// Declared variables (`${name}` in manifests) with their default values.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, VariableValue>")]
    pub(crate) variables: BTreeMap<String, Spanned<VariableValue>>,
    /// Overlays in priority order: a cluster gets the first whose selector matches.
    #[serde(default)]
    #[schemars(with = "Vec<OverlayDocument>")]
    pub(crate) overlays: Vec<Spanned<OverlayDocument>>,
    /// `correct` (default): re-apply on drift; `report`: only report it. Fields other managers
    /// add (a label, a port) are reported in both modes and never removed.
    #[serde(default)]
    pub(crate) drift: Option<DriftMode>,
    /// Bundles that must be healthy on a cluster before this one is applied there.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub(crate) depends_on: Vec<Spanned<String>>,
    /// What the bundle may touch; a field it leaves out comes from its cluster's stage.
    #[serde(default)]
    pub(crate) allow: Option<AllowDocument>,
}

/// An overlay: values and manifests for the clusters its selector matches.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct OverlayDocument {
    /// Name, unique within the bundle.
    #[schemars(with = "String")]
    pub(crate) name: Spanned<String>,
    /// The clusters this overlay is for.
    #[schemars(with = "LabelSelector")]
    pub(crate) cluster_selector: Spanned<LabelSelector>,
    /// Directory relative to the bundle's directory: a kustomization there is built instead
    /// of the bundle's; plain manifests there are merged over the bundle's.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub(crate) path: Option<Spanned<String>>,
    /// Variable values overriding the bundle's.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, VariableValue>")]
    pub(crate) variables: BTreeMap<String, Spanned<VariableValue>>,
    /// Chart values over the bundle's, for a chart bundle.
    #[serde(default)]
    pub(crate) helm: Option<HelmValuesDocument>,
}

/// A Helm chart and the values it is rendered with.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct HelmDocument {
    /// The chart's directory relative to the repository root (its `Chart.yaml` there; its
    /// dependencies vendored in its `charts/`); with `repo`, the chart's name there.
    #[schemars(with = "String")]
    pub(crate) chart: Spanned<String>,
    /// A chart repository (`https://…`) or OCI registry prefix (`oci://host/path`) the hub
    /// fetches `chart` from; the hub must allow it (`chartSources`), and `version` is then
    /// required.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub(crate) repo: Option<Spanned<String>>,
    /// The exact version `Chart.yaml` must declare.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub(crate) version: Option<Spanned<String>>,
    /// The release name (`.Release.Name`); the bundle's name when absent.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub(crate) release_name: Option<Spanned<String>>,
    /// Values over the chart's `values.yaml`, after `valuesFiles`; `${...}` substitutes in
    /// their strings.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub(crate) values: Option<Spanned<serde_json::Value>>,
    /// Values files relative to the repository root, applied in order over the chart's.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub(crate) values_files: Vec<Spanned<String>>,
}

/// Chart values an overlay adds over its bundle's.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct HelmValuesDocument {
    /// Values over the bundle's values and the overlay's `valuesFiles`.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub(crate) values: Option<Spanned<serde_json::Value>>,
    /// Values files relative to the repository root, over the bundle's values.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub(crate) values_files: Vec<Spanned<String>>,
}
