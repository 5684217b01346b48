//! The text a bundle renders from, for one overlay choice: manifest files, kustomize output,
//! or a chart and its values, tokenized once and shared by every cluster that makes the same
//! choice.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use super::RenderError;
use super::Tools;
use super::helm::Chart;
use super::kustomize::{KUSTOMIZATION_FILES, Kustomize, kustomization_file};
use super::skeleton::Skeleton;
use super::substitute::{Piece, Reference, tokenize};
use crate::location::SourceLocation;
use crate::repository::{Repository, read_limited};
use crate::spec::{Bundle, HelmChart, HelmValues, Overlay};

/// Whether a file's objects form the bundle or are merged over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Base,
    Overlay,
}

/// One source text: a manifest file or a kustomize build's output.
pub(crate) struct SourceFile {
    /// Name in messages: the file relative to the repository, or `DIR (kustomize build)`.
    pub(crate) display: String,
    pub(crate) text: String,
    pub(crate) json: bool,
    pub(crate) role: Role,
    pub(crate) pieces: Vec<Piece>,
    /// The text parsed once with placeholders for its references, when it can be.
    pub(crate) skeleton: OnceLock<Option<Skeleton>>,
}

/// Everything a bundle renders from for one overlay choice.
pub(crate) struct Template {
    pub(crate) files: Vec<SourceFile>,
    /// Every reference the texts make: the only cluster facts the render depends on.
    pub(crate) references: BTreeSet<Reference>,
    /// The bundle directory, for errors about the bundle as a whole.
    pub(crate) location: SourceLocation,
    /// For a chart bundle (whose `files` are empty): the chart and its values.
    pub(crate) chart: Option<ChartTemplate>,
}

/// A chart and the values it is rendered with for one overlay choice.
pub(crate) struct ChartTemplate {
    pub(crate) chart: Chart,
    pub(crate) release: String,
    /// Lowest precedence first: the bundle's files and inline values, then the overlay's.
    pub(crate) values: Vec<ValuesSource>,
}

/// One source of chart values.
pub(crate) enum ValuesSource {
    /// A values file, substituted as text (like a manifest) and then parsed.
    File(SourceFile),
    /// Inline values from `flotilla.yaml`, substituted string by string.
    Inline {
        value: Value,
        location: SourceLocation,
    },
}

/// Loads the bundle's sources for clusters that get `overlay`. A kustomization in the
/// overlay's directory replaces the bundle's build; otherwise the bundle is built (or its
/// manifests collected, overlay directories left out) and the overlay's plain manifests are
/// merged over it.
pub(crate) fn load_template(
    repo: &Repository,
    bundle: &Bundle,
    overlay: Option<&Overlay>,
    tools: &Tools,
) -> Result<Template, RenderError> {
    if let Some(helm) = &bundle.helm {
        return load_chart(repo, bundle, helm, overlay, tools);
    }
    let kustomize = &tools.kustomize;
    let bundle_dir = repo.resolve_dir(&bundle.path, &bundle.path_location)?;
    let overlay_dir = match overlay {
        Some(Overlay {
            path: Some(path),
            location,
            ..
        }) => Some(repo.resolve_dir(path, location)?),
        _ => None,
    };
    let mut files = Vec::new();
    let mut collector = Collector {
        repo,
        limit: repo.limits().max_files_per_bundle,
        location: SourceLocation::file(bundle.path.clone()),
        count: 0,
    };
    match &overlay_dir {
        Some(dir) if kustomization_file(dir).is_some() => {
            files.push(built(repo, kustomize, dir)?);
        }
        _ => {
            if kustomization_file(&bundle_dir).is_some() {
                files.push(built(repo, kustomize, &bundle_dir)?);
            } else {
                let exclude: Vec<PathBuf> = bundle
                    .overlays
                    .iter()
                    .filter_map(|o| o.path.as_ref())
                    .filter_map(|path| repo.root().join(path).canonicalize().ok())
                    .filter(|dir| dir != &bundle_dir)
                    .collect();
                collector.collect(&bundle_dir, &exclude, Role::Base, &mut files)?;
            }
            if let Some(dir) = &overlay_dir {
                collector.collect(dir, &[], Role::Overlay, &mut files)?;
            }
        }
    }
    let mut references = BTreeSet::new();
    for file in &files {
        references.extend(file.pieces.iter().filter_map(|piece| match piece {
            Piece::Reference(reference, _, _) => Some(reference.clone()),
            Piece::Text(_) => None,
        }));
    }
    Ok(Template {
        files,
        references,
        location: collector.location,
        chart: None,
    })
}

/// Loads a chart bundle: the chart, checked, and its values sources in precedence order.
fn load_chart(
    repo: &Repository,
    bundle: &Bundle,
    helm: &HelmChart,
    overlay: Option<&Overlay>,
    tools: &Tools,
) -> Result<Template, RenderError> {
    let chart = Chart::load(repo, bundle, helm, tools.charts.as_deref())?;
    let mut values = Vec::new();
    let mut references = BTreeSet::new();
    let layers = std::iter::once(&helm.values).chain(overlay.map(|o| &o.helm));
    for layer in layers {
        add_values(repo, layer, &mut values, &mut references)?;
    }
    Ok(Template {
        files: Vec::new(),
        references,
        location: bundle.path_location.clone(),
        chart: Some(ChartTemplate {
            chart,
            release: helm.release_name.clone(),
            values,
        }),
    })
}

fn add_values(
    repo: &Repository,
    layer: &HelmValues,
    values: &mut Vec<ValuesSource>,
    references: &mut BTreeSet<Reference>,
) -> Result<(), RenderError> {
    for (path, location) in &layer.files {
        let file = repo.resolve_file(path, location)?;
        let text = read_limited(&file, path, repo.limits())?;
        let source = source_file(path.clone(), text, path.ends_with(".json"), Role::Base)?;
        references.extend(source.pieces.iter().filter_map(|piece| match piece {
            Piece::Reference(reference, _, _) => Some(reference.clone()),
            Piece::Text(_) => None,
        }));
        values.push(ValuesSource::File(source));
    }
    if let Some((value, location)) = &layer.inline {
        for text in strings(value) {
            let pieces = tokenize(text).map_err(|problem| RenderError::BadReference {
                location: location.clone(),
                message: problem.message,
            })?;
            references.extend(pieces.into_iter().filter_map(|piece| match piece {
                Piece::Reference(reference, _, _) => Some(reference),
                Piece::Text(_) => None,
            }));
        }
        values.push(ValuesSource::Inline {
            value: value.clone(),
            location: location.clone(),
        });
    }
    Ok(())
}

/// Every string value in `value`, depth first.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(text) => vec![text.as_str()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

fn built(repo: &Repository, kustomize: &Kustomize, dir: &Path) -> Result<SourceFile, RenderError> {
    let text = kustomize.build(repo, dir)?;
    source_file(
        format!("{} (kustomize build)", repo.relative(dir)),
        text,
        false,
        Role::Base,
    )
}

fn source_file(
    display: String,
    text: String,
    json: bool,
    role: Role,
) -> Result<SourceFile, RenderError> {
    let pieces = tokenize(&text).map_err(|problem| RenderError::BadReference {
        location: SourceLocation::at(display.clone(), problem.line, problem.column),
        message: problem.message,
    })?;
    Ok(SourceFile {
        display,
        text,
        json,
        role,
        pieces,
        skeleton: OnceLock::new(),
    })
}

struct Collector<'a> {
    repo: &'a Repository,
    limit: usize,
    location: SourceLocation,
    count: usize,
}

impl Collector<'_> {
    /// Adds every `.yaml`, `.yml` and `.json` file under `dir`, recursively, in name order,
    /// skipping hidden entries and the `exclude`d directories.
    fn collect(
        &mut self,
        dir: &Path,
        exclude: &[PathBuf],
        role: Role,
        files: &mut Vec<SourceFile>,
    ) -> Result<(), RenderError> {
        let walker = walkdir::WalkDir::new(dir)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|entry| {
                let hidden =
                    entry.depth() > 0 && entry.file_name().to_string_lossy().starts_with('.');
                let excluded = entry.file_type().is_dir()
                    && entry
                        .path()
                        .canonicalize()
                        .is_ok_and(|path| exclude.contains(&path));
                !hidden && !excluded
            });
        for entry in walker {
            let entry = entry.map_err(|e| {
                let path = e.path().map(|p| self.repo.relative(p)).unwrap_or_default();
                crate::spec::SpecError::Read {
                    location: SourceLocation::file(path),
                    message: e.to_string(),
                }
            })?;
            let path = entry.path();
            if !self.repo.contains(path) {
                let target = std::fs::read_link(path).map(|t| t.display().to_string());
                return Err(RenderError::Escape {
                    location: SourceLocation::file(self.repo.relative(path)),
                    path: target.unwrap_or_else(|_| path.display().to_string()),
                });
            }
            if !entry.file_type().is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy();
            let display = self.repo.relative(path);
            if KUSTOMIZATION_FILES.contains(&name.as_ref()) {
                return Err(RenderError::NestedKustomization {
                    location: SourceLocation::file(display),
                });
            }
            let json = name.ends_with(".json");
            if !(json || name.ends_with(".yaml") || name.ends_with(".yml")) {
                continue;
            }
            self.count += 1;
            if self.count > self.limit {
                return Err(RenderError::TooManyFiles {
                    location: self.location.clone(),
                    limit: self.limit,
                });
            }
            let text = read_limited(path, &display, self.repo.limits())?;
            files.push(source_file(display, text, json, role)?);
        }
        Ok(())
    }
}
