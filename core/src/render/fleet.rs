//! Rendering a whole repository for a list of clusters, once per distinct render input.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use super::helm::merge_values;
use super::object::{SourcedObject, assemble};
use super::skeleton::Skeleton;
use super::source::{ChartTemplate, Role, SourceFile, Template, ValuesSource, load_template};
use super::substitute::{Reference, substitute, tokenize};
use super::{ChartUsed, RenderError, RenderedBundle, Tools};
use crate::hash::ContentHash;
use crate::inventory::{Capabilities, Cluster};
use crate::limits::Limits;
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
    /// Per chart bundle, the chart it rendered from.
    pub charts: BTreeMap<String, ChartUsed>,
    /// Each blob's canonical bytes ([`RenderedBundle::to_blob`]), what its hash is taken over.
    pub encoded: HashMap<ContentHash, Vec<u8>>,
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
pub fn render_fleet(repo: &Repository, clusters: &[Cluster], tools: &Tools) -> FleetRender {
    let mut renderer = Renderer::new(repo, tools);
    renderer.preload(clusters);
    renderer.render_distinct(clusters);
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
    let bundles = &repo.spec().bundles;
    let charts = renderer
        .templates
        .iter()
        .filter_map(|((bundle, _), template)| {
            let chart = template.as_ref().ok()?.chart.as_ref()?;
            Some((bundles[*bundle].name.clone(), chart.chart.used()))
        })
        .collect();
    FleetRender {
        charts,
        clusters: result,
        distinct_renders: renderer.renders.len(),
        blobs: renderer.blobs,
        encoded: renderer.encoded,
        origins: renderer.origins,
    }
}

/// Which bundle, which overlay, what it may touch, the value (or absence) of each reference
/// used, and for a chart what the cluster serves.
type RenderKey = (
    usize,
    Option<usize>,
    Allow,
    Vec<Option<String>>,
    Option<Capabilities>,
);

/// An object's identity across versions (group, kind, namespace, name), as owners see it.
type OwnedKey<'a> = (&'a str, &'a str, Option<&'a str>, &'a str);

/// Where each object of a rendered bundle is written, in the bundle's object order.
type Origins = Arc<Vec<SourceLocation>>;

pub(super) struct Renderer<'r> {
    repo: &'r Repository,
    tools: &'r Tools,
    templates: HashMap<(usize, Option<usize>), Result<Arc<Template>, RenderError>>,
    renders: HashMap<RenderKey, BundleOutcome>,
    blobs: BTreeMap<ContentHash, RenderedBundle>,
    encoded: HashMap<ContentHash, Vec<u8>>,
    origins: HashMap<ContentHash, Origins>,
}

/// One render's result: the blob's hash, the bundle, where its objects are written and its
/// canonical bytes.
struct Produced {
    hash: ContentHash,
    bundle: RenderedBundle,
    origins: Origins,
    encoded: Vec<u8>,
}

impl<'r> Renderer<'r> {
    pub(super) fn new(repo: &'r Repository, tools: &'r Tools) -> Self {
        Self {
            repo,
            tools,
            templates: HashMap::new(),
            renders: HashMap::new(),
            blobs: BTreeMap::new(),
            encoded: HashMap::new(),
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
            load_template(self.repo, &bundles[bundle], overlay_spec, self.tools).map(Arc::new)
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

    /// Renders every distinct input the clusters need, on all cores: a chart's `helm
    /// template` is the slow part of its render, and distinct inputs never wait for one
    /// another. What fails here (a template that does not load) is rendered again, and
    /// reported, on first use.
    fn render_distinct(&mut self, clusters: &[Cluster]) {
        let bundles = &self.repo.spec().bundles;
        let mut seen = HashSet::new();
        let mut wanted = Vec::new();
        for cluster in clusters {
            for (index, bundle) in bundles.iter().enumerate() {
                if !bundle.targets(&cluster.labels) {
                    continue;
                }
                if let Ok((key, template)) = self.key(index, cluster)
                    && !self.renders.contains_key(&key)
                    && seen.insert(key.clone())
                {
                    wanted.push((key, template));
                }
            }
        }
        let workers = std::thread::available_parallelism()
            .map_or(1, NonZeroUsize::get)
            .min(wanted.len());
        if workers <= 1 {
            return; // Rendered on first use, on this thread.
        }
        let next = AtomicUsize::new(0);
        let this = &*self;
        let produced: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        while let Some((key, template)) =
                            wanted.get(next.fetch_add(1, Ordering::Relaxed))
                        {
                            if this.repo.cancel().is_cancelled() {
                                break;
                            }
                            let outcome = this.produce(key.0, key, template);
                            done.push((key.clone(), outcome));
                        }
                        done
                    })
                })
                .collect();
            // A worker that panicked leaves its inputs to be rendered on first use.
            handles
                .into_iter()
                .flat_map(|handle| handle.join().unwrap_or_default())
                .collect()
        });
        for (key, produced) in produced {
            let outcome = produced.map(|produced| self.keep(produced));
            self.renders.insert(key, outcome);
        }
    }

    /// Renders (or recalls) the bundle for the cluster, keeping the blob.
    fn outcome(&mut self, bundle_index: usize, cluster: &Cluster) -> BundleOutcome {
        let (key, template) = self.key(bundle_index, cluster)?;
        if let Some(outcome) = self.renders.get(&key) {
            return outcome.clone();
        }
        let outcome = self
            .produce(bundle_index, &key, &template)
            .map(|produced| self.keep(produced));
        self.renders.insert(key, outcome.clone());
        outcome
    }

    /// Keeps a render's blob (once per content) and gives its hash.
    fn keep(&mut self, produced: Produced) -> ContentHash {
        let hash = produced.hash;
        if let std::collections::btree_map::Entry::Vacant(entry) = self.blobs.entry(hash) {
            entry.insert(produced.bundle);
            self.encoded.insert(hash, produced.encoded);
            self.origins.insert(hash, produced.origins);
        }
        hash
    }

    /// Renders the bundle for the cluster without caching the result.
    pub(super) fn render(
        &mut self,
        bundle_index: usize,
        cluster: &Cluster,
    ) -> Result<(ContentHash, RenderedBundle), RenderError> {
        let (key, template) = self.key(bundle_index, cluster)?;
        self.produce(bundle_index, &key, &template)
            .map(|produced| (produced.hash, produced.bundle))
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
        let mut owners: HashMap<OwnedKey<'_>, (&str, &SourceLocation)> = HashMap::new();
        let mut conflicts = Vec::new();
        for (bundle, hash) in rendered {
            let (Some(blob), Some(origins)) = (self.blobs.get(hash), self.origins.get(hash)) else {
                continue;
            };
            for (object, origin) in blob.objects.iter().zip(origins.iter()) {
                let id = &object.id;
                let key = (
                    id.group.as_str(),
                    id.kind.as_str(),
                    id.namespace.as_deref(),
                    id.name.as_str(),
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
                load_template(self.repo, bundle, overlay, self.tools).map(Arc::new)
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
        let capabilities = template.chart.as_ref().and(cluster.capabilities.clone());
        Ok((
            (bundle_index, overlay_index, allow, values, capabilities),
            template,
        ))
    }

    fn produce(
        &self,
        bundle_index: usize,
        key: &RenderKey,
        template: &Template,
    ) -> Result<Produced, RenderError> {
        let (_, overlay_index, allow, values, capabilities) = key;
        let overlay_index = *overlay_index;
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
        let resolve = |reference: &Reference, location: SourceLocation| match (
            reference,
            lookup.get(reference).copied().flatten(),
        ) {
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
        };
        let mut base = Vec::new();
        let mut overlay = Vec::new();
        if let Some(chart) = &template.chart {
            base = self.chart_objects(bundle, chart, capabilities.as_ref(), &resolve)?;
            if base.len() > limits.max_objects_per_bundle {
                return Err(self.too_many(template, base.len()));
            }
        }
        let mut text_budget = limits.max_rendered_bytes.saturating_mul(2);
        for file in &template.files {
            let spend = |budget: usize, length: usize| {
                budget
                    .checked_sub(length)
                    .ok_or_else(|| RenderError::TooLarge {
                        location: template.location.clone(),
                        size: limits.max_rendered_bytes.saturating_mul(2),
                        limit: limits.max_rendered_bytes,
                    })
            };
            let documents = match filled(file, &lookup, limits) {
                Some((documents, length)) => {
                    text_budget = spend(text_budget, length)?;
                    documents
                }
                None => {
                    let text = substitute(&file.text, &file.pieces, |reference, line, column| {
                        resolve(
                            reference,
                            SourceLocation::at(file.display.clone(), line, column),
                        )
                    })?;
                    text_budget = spend(text_budget, text.len())?;
                    if file.json {
                        parse_json(&text, &file.display, limits).map(|value| vec![(1, value)])
                    } else {
                        parse_documents(&text, &file.display, 0, limits)
                    }
                    .map_err(|problem| RenderError::Yaml {
                        location: problem.location,
                        message: problem.message,
                    })?
                }
            };
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
        // As `helm install --create-namespace`: the release's namespace is created when
        // missing and stays when the release goes (it may hold what others put there); the
        // agent creates it, so two charts (or a chart and a plain bundle) may share it.
        let create_namespace = template
            .chart
            .as_ref()
            .and(bundle.namespace.clone())
            .filter(|namespace| !assembled_namespaces(&objects).contains(namespace.as_str()));
        let rendered = RenderedBundle {
            bundle: bundle.name.clone(),
            drift: bundle.drift,
            depends_on: bundle.depends_on.clone(),
            objects,
            allow: allow.clone(),
            create_namespace,
        };
        let blob = rendered.to_blob();
        if blob.len() > limits.max_rendered_bytes {
            return Err(RenderError::TooLarge {
                location: template.location.clone(),
                size: blob.len(),
                limit: limits.max_rendered_bytes,
            });
        }
        Ok(Produced {
            hash: ContentHash::of(&blob),
            bundle: rendered,
            origins: Arc::new(origins),
            encoded: blob,
        })
    }

    /// Renders a chart with its values substituted and merged for one cluster: its objects,
    /// each located at the template it comes from.
    fn chart_objects(
        &self,
        bundle: &Bundle,
        chart: &ChartTemplate,
        capabilities: Option<&Capabilities>,
        resolve: &dyn Fn(&Reference, SourceLocation) -> Result<String, RenderError>,
    ) -> Result<Vec<SourcedObject>, RenderError> {
        let limits = self.repo.limits();
        let mut values = Value::Object(serde_json::Map::new());
        for source in &chart.values {
            let layer = match source {
                ValuesSource::File(file) => {
                    let text = substitute(&file.text, &file.pieces, |reference, line, column| {
                        resolve(
                            reference,
                            SourceLocation::at(file.display.clone(), line, column),
                        )
                    })?;
                    values_document(&text, &file.display, file.json, limits)?
                }
                ValuesSource::Inline { value, location } => {
                    substitute_value(value, location, resolve)?
                }
            };
            merge_values(&mut values, layer);
        }
        let namespace = bundle.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
        // Serializing a JSON value into memory cannot fail.
        let input = serde_json::to_vec(&values).unwrap_or_default();
        let output = self.tools.helm.template(
            self.repo,
            &chart.chart,
            &chart.release,
            namespace,
            capabilities,
            input,
        )?;
        let display = format!("{} (helm template)", chart.chart.display);
        let sources = chart.chart.sources(&output);
        let documents =
            parse_documents(&output, &display, 0, limits).map_err(|problem| RenderError::Yaml {
                location: problem.location,
                message: problem.message,
            })?;
        documents
            .into_iter()
            .map(|(line, object)| {
                let from = usize::try_from(line)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(1);
                let origin = match sources.get(from).cloned().flatten() {
                    Some(template) => SourceLocation::file(template),
                    None => SourceLocation {
                        file: display.clone(),
                        line: Some(line),
                        column: None,
                    },
                };
                chart.chart.refuse_hook(&object, &origin)?;
                Ok(SourcedObject { object, origin })
            })
            .collect()
    }

    fn too_many(&self, template: &Template, count: usize) -> RenderError {
        RenderError::TooManyObjects {
            location: template.location.clone(),
            count,
            limit: self.repo.limits().max_objects_per_bundle,
        }
    }
}

/// A YAML file's documents for the cluster's values taken from its skeleton (parsed once for
/// every cluster), with the length of the text they stand for; `None` when the file has no
/// skeleton, a reference has no value, or a value must be substituted as text and parsed.
fn filled(
    file: &SourceFile,
    lookup: &BTreeMap<&Reference, Option<&String>>,
    limits: &Limits,
) -> Option<(Vec<(u32, Value)>, usize)> {
    if file.json {
        return None;
    }
    let skeleton = file
        .skeleton
        .get_or_init(|| Skeleton::parse(&file.text, &file.pieces, &file.display, limits))
        .as_ref()?;
    let values: Vec<&str> = skeleton
        .slots()
        .iter()
        .map(|reference| lookup.get(reference).copied().flatten().map(String::as_str))
        .collect::<Option<_>>()?;
    let length = skeleton.text_length(&values);
    if u64::try_from(length).map_or(true, |length| length > limits.max_file_bytes) {
        return None; // The text parse reports it.
    }
    Some((skeleton.fill(&values)?, length))
}

/// The overlay of `bundle` that `cluster` gets: the first whose selector matches.
fn overlay_for(bundle: &Bundle, cluster: &Cluster) -> Option<usize> {
    bundle
        .overlays
        .iter()
        .position(|overlay| overlay.cluster_selector.matches(&cluster.labels))
}

/// A values file's mapping (an empty file is no values).
fn values_document(
    text: &str,
    display: &str,
    json: bool,
    limits: &crate::limits::Limits,
) -> Result<Value, RenderError> {
    let yaml_error = |problem: crate::yaml::YamlProblem| RenderError::Yaml {
        location: problem.location,
        message: problem.message,
    };
    let mut documents = if json {
        vec![(1, parse_json(text, display, limits).map_err(yaml_error)?)]
    } else {
        parse_documents(text, display, 0, limits).map_err(yaml_error)?
    };
    match (documents.len(), documents.pop()) {
        (0, _) => Ok(Value::Object(serde_json::Map::new())),
        (1, Some((_, value))) if value.is_object() => Ok(value),
        (_, Some((line, _))) => Err(RenderError::Chart {
            location: SourceLocation {
                file: display.to_owned(),
                line: Some(line),
                column: None,
            },
            message: "a values file holds one mapping of value names to values".to_owned(),
        }),
        (_, None) => Ok(Value::Object(serde_json::Map::new())),
    }
}

/// Inline values with every `${...}` in their strings substituted. A substituted string stays
/// a string: `tag: ${version}` with `version: 1.30` gives the tag `"1.30"`, never the number
/// 1.3 (templates print `replicas: {{ .Values.replicas }}` the same either way). A values
/// file is substituted as text, like a manifest, so there the YAML decides the type.
fn substitute_value(
    value: &Value,
    location: &SourceLocation,
    resolve: &dyn Fn(&Reference, SourceLocation) -> Result<String, RenderError>,
) -> Result<Value, RenderError> {
    Ok(match value {
        Value::String(text) => {
            let pieces = tokenize(text).map_err(|problem| RenderError::BadReference {
                location: location.clone(),
                message: problem.message,
            })?;
            Value::String(substitute(text, &pieces, |reference, _, _| {
                resolve(reference, location.clone())
            })?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| substitute_value(item, location, resolve))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| Ok((key.clone(), substitute_value(item, location, resolve)?)))
                .collect::<Result<_, RenderError>>()?,
        ),
        other => other.clone(),
    })
}

/// The Namespaces a bundle's objects define.
fn assembled_namespaces(objects: &[super::RenderedObject]) -> BTreeSet<&str> {
    objects
        .iter()
        .filter(|o| o.id.group.is_empty() && o.id.kind == "Namespace")
        .map(|o| o.id.name.as_str())
        .collect()
}
