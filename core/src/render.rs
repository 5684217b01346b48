//! Rendering a bundle for a cluster: collect its manifests (or build its kustomization),
//! substitute per-cluster values, merge the cluster's overlay, and produce canonical,
//! content-addressed objects.
//!
//! Clusters whose render inputs are equal share one render: the inputs are the bundle,
//! the overlay the cluster gets, and the values of the references the bundle's text
//! actually uses. [`render_fleet`] renders each distinct input once.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::hash::ContentHash;
use crate::inventory::Cluster;
use crate::location::SourceLocation;
use crate::repository::Repository;
use crate::spec::{API_VERSION, Allow, DriftMode, SpecError};

mod applied;
mod fleet;
mod helm;
mod kustomize;
mod object;
mod run;
pub mod sandbox;
mod skeleton;
mod source;
mod substitute;

pub use applied::{BUNDLE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, PRUNE_ANNOTATION, as_applied};
pub use fleet::{BundleOutcome, FleetRender, render_fleet};
pub use helm::{ChartDir, ChartFetcher, ChartUsed, DEFAULT_KUBE_VERSION, Helm};
pub use kustomize::Kustomize;
pub use object::{ObjectId, ObjectKey, RenderedObject};

/// The `kind` of a rendered bundle blob.
pub const RENDERED_BUNDLE_KIND: &str = "RenderedBundle";

/// A bundle rendered for a cluster: what the agent applies, as a unit.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedBundle {
    /// The bundle's name.
    pub bundle: String,
    /// Whether the agent corrects or only reports drift.
    pub drift: DriftMode,
    /// Bundles that must be healthy on the cluster before this one is applied.
    pub depends_on: Vec<String>,
    /// The objects, in canonical order (group, kind, namespace, name), keys sorted.
    pub objects: Vec<RenderedObject>,
    /// What the bundle may touch, checked at render and again by the agent.
    pub allow: Allow,
    /// A namespace the agent creates when it is missing, owned by no bundle and never pruned
    /// (a chart bundle's release namespace, as `helm install --create-namespace`).
    pub create_namespace: Option<String>,
}

/// The serialized form of a [`RenderedBundle`]; field order is fixed, objects are canonical.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BlobDocument {
    api_version: String,
    kind: String,
    bundle: String,
    drift: DriftMode,
    depends_on: Vec<String>,
    objects: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Allow::is_unrestricted")]
    allow: Allow,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    create_namespace: Option<String>,
}

/// [`BlobDocument`] borrowed from a [`RenderedBundle`], to serialize without copying it: the
/// same fields in the same order, so the same bytes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BlobDocumentRef<'a> {
    api_version: &'a str,
    kind: &'a str,
    bundle: &'a str,
    drift: DriftMode,
    depends_on: &'a [String],
    objects: Vec<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow: Option<&'a Allow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    create_namespace: Option<&'a str>,
}

impl RenderedBundle {
    /// The canonical bytes (compact JSON, sorted keys) that the content hash is taken over
    /// and that the hub stores and sends.
    pub fn to_blob(&self) -> Vec<u8> {
        let document = BlobDocumentRef {
            api_version: API_VERSION,
            kind: RENDERED_BUNDLE_KIND,
            bundle: &self.bundle,
            drift: self.drift,
            depends_on: &self.depends_on,
            objects: self.objects.iter().map(|o| &o.object).collect(),
            allow: (!self.allow.is_unrestricted()).then_some(&self.allow),
            create_namespace: self.create_namespace.as_deref(),
        };
        // Serializing JSON values and plain strings into memory cannot fail.
        serde_json::to_vec(&document).unwrap_or_default()
    }

    /// The content hash: blake3 of [`RenderedBundle::to_blob`].
    pub fn hash(&self) -> ContentHash {
        ContentHash::of(&self.to_blob())
    }

    /// Decodes a blob and checks that it hashes to `expected`, as the agent does with what
    /// the hub sends.
    pub fn from_blob(bytes: &[u8], expected: &ContentHash) -> Result<RenderedBundle, BlobError> {
        let actual = ContentHash::of(bytes);
        if &actual != expected {
            return Err(BlobError::HashMismatch {
                expected: *expected,
                actual,
            });
        }
        let document: BlobDocument =
            serde_json::from_slice(bytes).map_err(|e| BlobError::Malformed(e.to_string()))?;
        if document.api_version != API_VERSION || document.kind != RENDERED_BUNDLE_KIND {
            return Err(BlobError::Malformed(format!(
                "expected {API_VERSION} {RENDERED_BUNDLE_KIND}, got {} {}",
                document.api_version, document.kind
            )));
        }
        let objects = document
            .objects
            .into_iter()
            .map(|object| {
                let id = ObjectId::of(&object).map_err(BlobError::Malformed)?;
                Ok(RenderedObject { id, object })
            })
            .collect::<Result<Vec<_>, BlobError>>()?;
        Ok(RenderedBundle {
            bundle: document.bundle,
            drift: document.drift,
            depends_on: document.depends_on,
            objects,
            allow: document.allow,
            create_namespace: document.create_namespace,
        })
    }
}

/// A blob that does not decode to a rendered bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// The bytes do not hash to the name they were sent under.
    #[error("blob hashes to {actual}, not {expected}")]
    HashMismatch {
        /// The hash it was sent under.
        expected: ContentHash,
        /// The hash of the bytes received.
        actual: ContentHash,
    },
    /// The bytes are not a rendered bundle.
    #[error("malformed rendered bundle: {0}")]
    Malformed(String),
}

/// Why a bundle could not be rendered for a cluster, with the file and line concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A file or directory could not be read, is too large, or leaves the repository.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A path or link leads outside the repository.
    #[error(
        "{location}: `{path}` leads outside the repository; every path and link must stay inside it"
    )]
    Escape {
        /// Where the path is written, or the link itself.
        location: SourceLocation,
        /// The offending path.
        path: String,
    },
    /// The bundle has more manifest files than the limit.
    #[error("{location}: more than {limit} manifest files; split the bundle (the limit is fixed)")]
    TooManyFiles {
        /// The bundle directory.
        location: SourceLocation,
        /// The limit.
        limit: usize,
    },
    /// A manifest is not valid YAML or JSON.
    #[error("{location}: {message}")]
    Yaml {
        /// Where the parser stopped.
        location: SourceLocation,
        /// What it expected.
        message: String,
    },
    /// A `${...}` that is not a valid reference.
    #[error("{location}: {message}")]
    BadReference {
        /// Where it is written.
        location: SourceLocation,
        /// What is wrong.
        message: String,
    },
    /// A `${name}` with no declared variable of that name.
    #[error("{location}: undefined variable `{name}`{}; declare it under the bundle's `variables`, or write `$${{{name}}}` for a literal", declared_list(.declared))]
    UndefinedVariable {
        /// Where it is used.
        location: SourceLocation,
        /// The variable.
        name: String,
        /// The variables that are declared for this cluster.
        declared: Vec<String>,
    },
    /// A `${cluster.labels.KEY}` for a cluster without that label.
    #[error(
        "{location}: the cluster has no label `{key}`; label the cluster or narrow the bundle's clusterSelector to clusters that have it"
    )]
    MissingLabel {
        /// Where it is used.
        location: SourceLocation,
        /// The label key.
        key: String,
    },
    /// A document that is not a Kubernetes object.
    #[error("{location}: {message}")]
    InvalidObject {
        /// Where the document starts.
        location: SourceLocation,
        /// What is missing or wrong.
        message: String,
    },
    /// Two manifests describe the same object.
    #[error(
        "{second}: {object} is already defined at {first}; an object may appear once per bundle"
    )]
    DuplicateObject {
        /// The object.
        object: String,
        /// Its first definition.
        first: SourceLocation,
        /// The second one.
        second: SourceLocation,
    },
    /// The bundle renders to more objects than the limit.
    #[error(
        "{location}: renders {count} objects, over the limit of {limit}; split the bundle (the limit is fixed)"
    )]
    TooManyObjects {
        /// The bundle directory.
        location: SourceLocation,
        /// How many it rendered to.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The rendered bundle is larger than the limit.
    #[error(
        "{location}: rendered size {size} bytes is over the limit of {limit} bytes; split the bundle (the limit is fixed)"
    )]
    TooLarge {
        /// The bundle directory.
        location: SourceLocation,
        /// Its rendered size (at least this).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A kustomization is below a plain bundle's root, where it would not be built.
    #[error(
        "{location}: a kustomization inside a plain bundle is not built; point the bundle's or an overlay's `path` at its directory"
    )]
    NestedKustomization {
        /// The kustomization file.
        location: SourceLocation,
    },
    /// A kustomization must be built but neither tool is installed.
    #[error(
        "{location}: has a kustomization but neither `kustomize` nor `kubectl` is on PATH; install one of them"
    )]
    KustomizeMissing {
        /// The kustomization directory.
        location: SourceLocation,
    },
    /// The kustomize build failed.
    #[error("{location}: {tool} failed: {message}")]
    KustomizeFailed {
        /// The kustomization directory.
        location: SourceLocation,
        /// The tool that ran.
        tool: String,
        /// Its error output.
        message: String,
    },
    /// The kustomize build ran past its time limit.
    #[error(
        "{location}: kustomize build did not finish within {timeout:?} and was stopped; make the build lighter (the limit is the hub's --render-timeout)"
    )]
    KustomizeTimeout {
        /// The kustomization directory.
        location: SourceLocation,
        /// The limit.
        timeout: Duration,
    },
    /// A kustomization refers to a remote resource, which rendering never fetches.
    #[error(
        "{location}: remote resource `{resource}` is not allowed; vendor it into the repository"
    )]
    RemoteResource {
        /// Where it is referenced.
        location: SourceLocation,
        /// The reference.
        resource: String,
    },
    /// A chart bundle must be rendered but `helm` is not installed.
    #[error(
        "{location}: is a chart but `helm` is not on PATH; install helm v4 (scripts/k8s-build helm builds the pinned one)"
    )]
    HelmMissing {
        /// The chart's directory.
        location: SourceLocation,
    },
    /// `helm template` failed: a template error, a values problem, a broken chart.
    #[error("{location}: helm template failed: {message}")]
    HelmFailed {
        /// The template it names, else the chart's directory.
        location: SourceLocation,
        /// Helm's error output.
        message: String,
    },
    /// `helm template` ran past its time limit.
    #[error(
        "{location}: helm template did not finish within {timeout:?} and was stopped; make the chart lighter (the limit is the hub's --render-timeout)"
    )]
    HelmTimeout {
        /// The chart's directory.
        location: SourceLocation,
        /// The limit.
        timeout: Duration,
    },
    /// A chart that cannot be rendered faithfully: a missing `Chart.yaml` field, a version
    /// other than the bundle asks for, a dependency not vendored, `lookup`, a hook.
    #[error("{location}: {message}")]
    Chart {
        /// The file (and line) concerned.
        location: SourceLocation,
        /// What is wrong and what to do.
        message: String,
    },
    /// The renderer could not be confined as the sandbox mode requires.
    #[error("{location}: rendering needs a sandbox this host cannot provide: {reason}")]
    SandboxUnavailable {
        /// The directory that was to be rendered.
        location: SourceLocation,
        /// Why the sandbox is unavailable and what to do.
        reason: String,
    },
    /// An object the bundle's `allow` does not permit.
    #[error(
        "{location}: {object}: {reason}; remove it, or widen the bundle's (or its stage's) `allow`"
    )]
    NotAllowed {
        /// Where the object is written.
        location: SourceLocation,
        /// The object.
        object: String,
        /// What is not allowed.
        reason: String,
    },
    /// Two bundles on one cluster render the same object: each object has one owner.
    #[error(
        "{location}: {object} is also rendered by bundle `{other}` ({other_location}) for cluster `{cluster}`; an object belongs to one bundle: remove it from one of them"
    )]
    OwnedTwice {
        /// Where this bundle writes it.
        location: SourceLocation,
        /// The object.
        object: String,
        /// The other bundle.
        other: String,
        /// Where the other bundle writes it (boxed: errors stay small to pass around).
        other_location: Box<SourceLocation>,
        /// The cluster both bundles target.
        cluster: String,
    },
    /// The render was stopped because a newer commit preempted it.
    #[error("{location}: the render was stopped (a newer commit preempted it)")]
    Cancelled {
        /// The directory that was being rendered.
        location: SourceLocation,
    },
    /// No bundle of that name.
    #[error("no bundle named `{0}`")]
    UnknownBundle(String),
}

fn declared_list(declared: &[String]) -> String {
    if declared.is_empty() {
        " (no variables are declared)".to_owned()
    } else {
        format!(" (declared: {})", declared.join(", "))
    }
}

impl RenderError {
    /// Where the problem is, when it is in a file.
    pub fn location(&self) -> Option<&SourceLocation> {
        match self {
            RenderError::Spec(error) => Some(error.location()),
            RenderError::Escape { location, .. }
            | RenderError::TooManyFiles { location, .. }
            | RenderError::Yaml { location, .. }
            | RenderError::BadReference { location, .. }
            | RenderError::UndefinedVariable { location, .. }
            | RenderError::MissingLabel { location, .. }
            | RenderError::InvalidObject { location, .. }
            | RenderError::TooManyObjects { location, .. }
            | RenderError::TooLarge { location, .. }
            | RenderError::NestedKustomization { location }
            | RenderError::KustomizeMissing { location }
            | RenderError::KustomizeFailed { location, .. }
            | RenderError::KustomizeTimeout { location, .. }
            | RenderError::RemoteResource { location, .. }
            | RenderError::SandboxUnavailable { location, .. }
            | RenderError::HelmMissing { location }
            | RenderError::HelmFailed { location, .. }
            | RenderError::HelmTimeout { location, .. }
            | RenderError::Chart { location, .. }
            | RenderError::NotAllowed { location, .. }
            | RenderError::OwnedTwice { location, .. }
            | RenderError::Cancelled { location } => Some(location),
            RenderError::DuplicateObject { second, .. } => Some(second),
            RenderError::UnknownBundle(_) => None,
        }
    }
}

/// The tools rendering runs: kustomize for kustomizations, helm for charts, and where charts
/// from chart repositories and registries come from.
#[derive(Debug, Clone)]
pub struct Tools {
    /// Builds kustomizations.
    pub kustomize: Kustomize,
    /// Renders charts.
    pub helm: Helm,
    /// Fetches remote charts; without one, a remote chart is an error saying how to give it.
    pub charts: Option<Arc<dyn ChartFetcher>>,
}

impl Tools {
    /// Both tools, looked for on `PATH`.
    pub fn discover() -> Tools {
        Tools {
            kustomize: Kustomize::discover(),
            helm: Helm::discover(),
            charts: None,
        }
    }

    /// Neither tool: a kustomization or a chart fails to render, saying so.
    pub fn none() -> Tools {
        Tools {
            kustomize: Kustomize::Unavailable,
            helm: Helm::Unavailable,
            charts: None,
        }
    }

    /// These tools with `charts` fetching remote charts.
    pub fn with_charts(self, charts: Arc<dyn ChartFetcher>) -> Tools {
        Tools {
            charts: Some(charts),
            ..self
        }
    }

    /// These tools with another helm.
    pub fn with_helm(self, helm: Helm) -> Tools {
        Tools { helm, ..self }
    }

    /// These tools with another kustomize.
    pub fn with_kustomize(self, kustomize: Kustomize) -> Tools {
        Tools { kustomize, ..self }
    }

    /// A short description for messages.
    pub fn describe(&self) -> String {
        format!("{}; {}", self.kustomize.describe(), self.helm.describe())
    }
}

/// Renders one bundle for one cluster.
pub fn render_bundle(
    repo: &Repository,
    bundle: &str,
    cluster: &Cluster,
    tools: &Tools,
) -> Result<RenderedBundle, RenderError> {
    let index = repo
        .spec()
        .bundles
        .iter()
        .position(|b| b.name == bundle)
        .ok_or_else(|| RenderError::UnknownBundle(bundle.to_owned()))?;
    fleet::Renderer::new(repo, tools)
        .render(index, cluster)
        .map(|(_, bundle)| bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash of every stored blob is taken over these bytes: writing them from borrowed
    /// fields must give exactly what the owned document gives.
    #[test]
    fn borrowed_blob_bytes_equal_the_owned_document() {
        let object = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "n"}, "data": {"k": "v"},
        });
        let id = ObjectId::of(&object).expect("object id");
        for (allow, create_namespace) in [
            (Allow::default(), None),
            (
                Allow {
                    namespaces: Some(vec!["n".to_owned()]),
                    kinds: Some(vec!["ConfigMap".to_owned()]),
                    cluster_scoped: Some(false),
                },
                Some("n".to_owned()),
            ),
        ] {
            let bundle = RenderedBundle {
                bundle: "web".to_owned(),
                drift: DriftMode::Report,
                depends_on: vec!["base".to_owned()],
                objects: vec![RenderedObject {
                    id: id.clone(),
                    object: object.clone(),
                }],
                allow: allow.clone(),
                create_namespace: create_namespace.clone(),
            };
            let owned = BlobDocument {
                api_version: API_VERSION.to_owned(),
                kind: RENDERED_BUNDLE_KIND.to_owned(),
                bundle: bundle.bundle.clone(),
                drift: bundle.drift,
                depends_on: bundle.depends_on.clone(),
                objects: vec![object.clone()],
                allow,
                create_namespace,
            };
            let blob = bundle.to_blob();
            assert_eq!(blob, serde_json::to_vec(&owned).expect("serialize"));
            assert_eq!(
                RenderedBundle::from_blob(&blob, &ContentHash::of(&blob)).expect("decode"),
                bundle
            );
        }
    }
}
