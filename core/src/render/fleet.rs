//! Rendering a whole repository for a list of clusters, once per distinct render input.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::object::{SourcedObject, assemble};
use super::source::{Role, Template, load_template};
use super::substitute::{Reference, substitute};
use super::{Kustomize, RenderError, RenderedBundle};
use crate::hash::ContentHash;
use crate::inventory::Cluster;
use crate::location::SourceLocation;
use crate::repository::Repository;
use crate::spec::{Allow, Bundle};
use crate::yaml::{parse_documents, parse_json};

/// The namespace the agent gives namespaced objects that name none and whose bundle sets none.
const DEFAULT_NAMESPACE: &str = "default";

/// The result of rendering one bundle for one cluster: the blob's hash, or why not.
pub type BundleOutcome = Result<ContentHash, RenderError>;

/// A repository rendered for a set of clusters.
#[derive(Debug, Clone)]
pub struct FleetRender {
    /// Per cluster name, per bundle name it targets: the outcome. A cluster no bundle
    /// targets has an empty map.
    pub clusters: BTreeMap<String, BTreeMap<String, BundleOutcome>>,
    /// Every rendered bundle, once per distinct content.
    pub blobs: BTreeMap<ContentHash, RenderedBundle>,
    /// How many renders ran: one per distinct (bundle, overlay, used values) input.
    pub distinct_renders: usize,
    /// Where each object of each blob is written, in the blob's object order.
    origins: HashMap<ContentHash, Origins>,
}

impl FleetRender {
    /// Every failed (cluster, bundle) pair with its error.
    pub fn errors(&self) -> impl Iterator<Item = (&str, &str, &RenderError)> {
        self.clusters.iter().flat_map(|(cluster, bundles)| {
            bundles.iter().filter_map(move |(bundle, outcome)| {
                outcome
                    .as_ref()
                    .err()
                    .map(|e| (cluster.as_str(), bundle.as_str(), e))
            })
        })
    }

    /// Where the `index`th object of the blob `hash` is written (for an object an overlay
    /// patches, the base manifest's document).
    pub fn origin(&self, hash: &ContentHash, index: usize) -> Option<&SourceLocation> {
        self.origins.get(hash)?.get(index)
    }

    /// True when every bundle rendered for every cluster.
    pub fn is_clean(&self) -> bool {
        self.errors().next().is_none()
    }

    /// How many (cluster, bundle) pairs were rendered, successfully or not.
    pub fn pairs(&self) -> usize {
        self.clusters.values().map(BTreeMap::len).sum()
    }
}

/// Renders every bundle of `repo` for every cluster it targets. Clusters with equal render
/// inputs share one render, and equal content is stored once in `blobs`.
pub fn render_fleet(repo: &Repository, clusters: &[Cluster], kustomize: &Kustomize) -> FleetRender {
    let mut renderer = Renderer::new(repo, kustomize);
    renderer.preload(clusters);
    let mut result = BTreeMap::new();
    for cluster in clusters {
        let mut bundles = BTreeMap::new();
        for (index, bundle) in repo.spec().bundles.iter().enumerate() {
            if bundle.targets(&cluster.labels) {
                bundles.insert(bundle.name.clone(), renderer.outcome(index, cluster));
            }
        }
        result.insert(cluster.name.clone(), bundles);
    }
    renderer.check_ownership(&mut result);
    FleetRender {
        clusters: result,
        distinct_renders: renderer.renders.len(),
        blobs: renderer.blobs,
        origins: renderer.origins,
    }
}

/// Which bundle, which overlay, what it may touch, and the value (or absence) of each
/// reference used.
type RenderKey = (usize, Option<usize>, Allow, Vec<Option<String>>);

/// An object's identity across versions (group, kind, namespace, name), as owners see it.
type OwnedKey = (String, String, Option<String>, String);

/// Where each object of a rendered bundle is written, in the bundle's object order.
type Origins = Arc<Vec<SourceLocation>>;

pub(super) struct Renderer<'r> {
    repo: &'r Repository,
    kustomize: &'r Kustomize,
    templates: HashMap<(usize, Option<usize>), Result<Arc<Template>, RenderError>>,
    renders: HashMap<RenderKey, BundleOutcome>,
    blobs: BTreeMap<ContentHash, RenderedBundle>,
    origins: HashMap<ContentHash, Origins>,
}

impl<'r> Renderer<'r> {
    pub(super) fn new(repo: &'r Repository, kustomize: &'r Kustomize) -> Self {
        Self {
            repo,
            kustomize,
            templates: HashMap::new(),
            renders: HashMap::new(),
            blobs: BTreeMap::new(),
            origins: HashMap::new(),
        }
    }

    /// Loads every template the clusters need, on all cores: building kustomizations is the
    /// slow part of a render, and one bundle's build never waits for another's.
    fn preload(&mut self, clusters: &[Cluster]) {
        let bundles = &self.repo.spec().bundles;
        let wanted: Vec<(usize, Option<usize>)> = clusters
            .iter()
            .flat_map(|cluster| {
                bundles
                    .iter()
                    .enumerate()
                    .filter(|(_, bundle)| bundle.targets(&cluster.labels))
                    .map(|(index, bundle)| (index, overlay_for(bundle, cluster)))
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|key| !self.templates.contains_key(key))
            .collect();
        let workers = std::thread::available_parallelism()
            .map_or(1, NonZeroUsize::get)
            .min(wanted.len());
        if workers <= 1 {
            return; // Loaded on first use, on this thread.
        }
        let next = AtomicUsize::new(0);
        let load = |(bundle, overlay): (usize, Option<usize>)| {
            let overlay_spec = overlay.map(|i| &bundles[bundle].overlays[i]);
            load_template(self.repo, &bundles[bundle], overlay_spec, self.kustomize).map(Arc::new)
        };
        let loaded: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        while let Some(&key) = wanted.get(next.fetch_add(1, Ordering::Relaxed)) {
                            if self.repo.cancel().is_cancelled() {
                                break;
                            }
                            done.push((key, load(key)));
                        }
                        done
                    })
                })
                .collect();
            // A worker that panicked leaves its templates to be loaded on first use.
            handles
                .into_iter()
                .flat_map(|handle| handle.join().unwrap_or_default())
                .collect()
        });
        self.templates.extend(loaded);
    }

    /// Renders (or recalls) the bundle for the cluster, keeping the blob.
    fn outcome(&mut self, bundle_index: usize, cluster: &Cluster) -> BundleOutcome {
        let (key, template) = self.key(bundle_index, cluster)?;
        if let Some(outcome) = self.renders.get(&key) {
            return outcome.clone();
        }
        let outcome = self
            .produce(bundle_index, key.1, &key.2, &template, &key.3)
            .map(|(hash, bundle, origins)| {
                self.blobs.entry(hash).or_insert(bundle);
                self.origins.entry(hash).or_insert(origins);
                hash
            });
        self.renders.insert(key, outcome.clone());
        outcome
    }

    /// Renders the bundle for the cluster without caching the result.
    pub(super) fn render(
        &mut self,
        bundle_index: usize,
        cluster: &Cluster,
    ) -> Result<(ContentHash, RenderedBundle), RenderError> {
        let (key, template) = self.key(bundle_index, cluster)?;
        self.produce(bundle_index, key.1, &key.2, &template, &key.3)
            .map(|(hash, bundle, _)| (hash, bundle))
    }

    /// Refuses, for each cluster, an object two of its bundles render: the bundle declared
    /// later gets the error, located where it writes the object. Clusters with the same
    /// rendered bundles share one check.
    fn check_ownership(&self, clusters: &mut BTreeMap<String, BTreeMap<String, BundleOutcome>>) {
        let order: Vec<&str> = self
            .repo
            .spec()
            .bundles
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        let mut checked: HashMap<Vec<ContentHash>, Vec<(String, RenderError)>> = HashMap::new();
        for (cluster, bundles) in clusters.iter_mut() {
            let rendered: Vec<(&str, ContentHash)> = order
                .iter()
                .filter_map(|name| match bundles.get(*name) {
                    Some(Ok(hash)) => Some((*name, *hash)),
                    _ => None,
                })
                .collect();
            let hashes: Vec<ContentHash> = rendered.iter().map(|(_, hash)| *hash).collect();
            let conflicts = checked
                .entry(hashes)
                .or_insert_with(|| self.conflicts(&rendered));
            for (bundle, error) in conflicts.iter() {
                let mut error = error.clone();
                if let RenderError::OwnedTwice { cluster: named, .. } = &mut error {
                    named.clone_from(cluster);
                }
                bundles.insert(bundle.clone(), Err(error));
            }
        }
    }

    /// The bundles of `rendered` (in declaration order) that render an object an earlier one
    /// already does, each with its first such object.
    fn conflicts(&self, rendered: &[(&str, ContentHash)]) -> Vec<(String, RenderError)> {
        let mut owners: HashMap<OwnedKey, (&str, &SourceLocation)> = HashMap::new();
        let mut conflicts = Vec::new();
        for (bundle, hash) in rendered {
            let (Some(blob), Some(origins)) = (self.blobs.get(hash), self.origins.get(hash)) else {
                continue;
            };
            for (object, origin) in blob.objects.iter().zip(origins.iter()) {
                let id = &object.id;
                let key = (
                    id.group.clone(),
                    id.kind.clone(),
                    id.namespace.clone(),
                    id.name.clone(),
                );
                match owners.get(&key) {
                    Some((other, other_location)) => {
                        conflicts.push((
                            (*bundle).to_owned(),
                            RenderError::OwnedTwice {
                                location: origin.clone(),
                                object: id.to_string(),
                                other: (*other).to_owned(),
                                other_location: Box::new((*other_location).clone()),
                                cluster: String::new(),
                            },
                        ));
                        break;
                    }
                    None => {
                        owners.insert(key, (bundle, origin));
                    }
                }
            }
        }
        conflicts
    }

    fn bundle(&self, index: usize) -> &'r Bundle {
        &self.repo.spec().bundles[index]
    }

    fn key(
        &mut self,
        bundle_index: usize,
        cluster: &Cluster,
    ) -> Result<(RenderKey, Arc<Template>), RenderError> {
        let bundle = self.bundle(bundle_index);
        let overlay_index = overlay_for(bundle, cluster);
        let template = self
            .templates
            .entry((bundle_index, overlay_index))
            .or_insert_with(|| {
                let overlay = overlay_index.map(|i| &bundle.overlays[i]);
                load_template(self.repo, bundle, overlay, self.kustomize).map(Arc::new)
            })
            .clone()?;
        let values = template
            .references
            .iter()
            .map(|reference| match reference {
                Reference::ClusterName => Some(cluster.name.clone()),
                Reference::ClusterLabel(key) => cluster.labels.get(key).cloned(),
                Reference::Variable(name) => overlay_index
                    .and_then(|i| bundle.overlays[i].variables.get(name))
                    .or_else(|| bundle.variables.get(name))
                    .cloned(),
            })
            .collect();
        let stage_allow = self
            .repo
            .spec()
            .stage_for(&cluster.labels)
            .ok()
            .flatten()
            .map(|stage| stage.allow.clone())
            .unwrap_or_default();
        let allow = bundle.allow.or(&stage_allow);
        Ok(((bundle_index, overlay_index, allow, values), template))
    }

    fn produce(
        &self,
        bundle_index: usize,
        overlay_index: Option<usize>,
        allow: &Allow,
        template: &Template,
        values: &[Option<String>],
    ) -> Result<(ContentHash, RenderedBundle, Origins), RenderError> {
        let bundle = self.bundle(bundle_index);
        let limits = self.repo.limits();
        let lookup: BTreeMap<&Reference, Option<&String>> = template
            .references
            .iter()
            .zip(values.iter().map(Option::as_ref))
            .collect();
        let mut declared: Vec<String> = bundle.variables.keys().cloned().collect();
        if let Some(index) = overlay_index {
            declared.extend(bundle.overlays[index].variables.keys().cloned());
            declared.sort();
            declared.dedup();
        }
        let mut base = Vec::new();
        let mut overlay = Vec::new();
        let mut text_budget = limits.max_rendered_bytes.saturating_mul(2);
        for file in &template.files {
            let text = substitute(&file.text, &file.pieces, |reference, line, column| {
                let location = SourceLocation::at(file.display.clone(), line, column);
                match (reference, lookup.get(reference).copied().flatten()) {
                    (_, Some(value)) => Ok(value.clone()),
                    (Reference::Variable(name), None) => Err(RenderError::UndefinedVariable {
                        location,
                        name: name.clone(),
                        declared: declared.clone(),
                    }),
                    (Reference::ClusterLabel(key), None) => Err(RenderError::MissingLabel {
                        location,
                        key: key.clone(),
                    }),
                    (Reference::ClusterName, None) => Err(RenderError::BadReference {
                        location,
                        message: "cluster name unavailable".to_owned(),
                    }),
                }
            })?;
            text_budget =
                text_budget
                    .checked_sub(text.len())
                    .ok_or_else(|| RenderError::TooLarge {
                        location: template.location.clone(),
                        size: limits.max_rendered_bytes.saturating_mul(2),
                        limit: limits.max_rendered_bytes,
                    })?;
            let documents = if file.json {
                parse_json(&text, &file.display, limits).map(|value| vec![(1, value)])
            } else {
                parse_documents(&text, &file.display, 0, limits)
            }
            .map_err(|problem| RenderError::Yaml {
                location: problem.location,
                message: problem.message,
            })?;
            let target = if file.role == Role::Overlay {
                &mut overlay
            } else {
                &mut base
            };
            target.extend(documents.into_iter().map(|(line, object)| SourcedObject {
                object,
                origin: SourceLocation {
                    file: file.display.clone(),
                    line: Some(line),
                    column: None,
                },
            }));
            if base.len() + overlay.len() > limits.max_objects_per_bundle {
                return Err(self.too_many(template, base.len() + overlay.len()));
            }
        }
        let assembled = assemble(base, overlay, bundle.namespace.as_deref())?;
        if assembled.len() > limits.max_objects_per_bundle {
            return Err(self.too_many(template, assembled.len()));
        }
        for item in &assembled {
            let id = &item.object.id;
            // A namespaced object naming no namespace lands in the agent's default one.
            let namespace = match (item.cluster_scoped, id.namespace.as_deref()) {
                (true, _) => None,
                (false, given) => Some(given.unwrap_or(DEFAULT_NAMESPACE)),
            };
            if let Some(reason) = allow.refuses(&id.group, &id.kind, namespace, &id.name) {
                return Err(RenderError::NotAllowed {
                    location: item.origin.clone(),
                    object: id.to_string(),
                    reason,
                });
            }
        }
        let (objects, origins): (Vec<_>, Vec<_>) = assembled
            .into_iter()
            .map(|item| (item.object, item.origin))
            .unzip();
        let rendered = RenderedBundle {
            bundle: bundle.name.clone(),
            drift: bundle.drift,
            depends_on: bundle.depends_on.clone(),
            objects,
            allow: allow.clone(),
        };
        let blob = rendered.to_blob();
        if blob.len() > limits.max_rendered_bytes {
            return Err(RenderError::TooLarge {
                location: template.location.clone(),
                size: blob.len(),
                limit: limits.max_rendered_bytes,
            });
        }
        Ok((ContentHash::of(&blob), rendered, Arc::new(origins)))
    }

    fn too_many(&self, template: &Template, count: usize) -> RenderError {
        RenderError::TooManyObjects {
            location: template.location.clone(),
            count,
            limit: self.repo.limits().max_objects_per_bundle,
        }
    }
}

/// The overlay of `bundle` that `cluster` gets: the first whose selector matches.
fn overlay_for(bundle: &Bundle, cluster: &Cluster) -> Option<usize> {
    bundle
        .overlays
        .iter()
        .position(|overlay| overlay.cluster_selector.matches(&cluster.labels))
}
