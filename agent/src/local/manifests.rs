//! Reading a directory of manifests into a bundle revision, for the local modes.
//!
//! Every `.yaml`, `.yml` and `.json` file under the directory (recursively, hidden entries
//! skipped, in path order) is read; YAML files may hold many documents, and `kind: List`
//! documents are expanded as kubectl does. YAML is parsed with serde-saphyr under the same
//! budgets the hub uses for repositories (depth, aliases, documents, file size), so a hostile
//! file is refused before it is expanded.

use std::path::{Path, PathBuf};

use flotilla_core::hash::{ContentHash, canonical_json};
use flotilla_core::{Limits, SourceLocation};
use serde_json::Value;
use serde_saphyr::{DefaultMessageFormatter, MessageFormatter, Spanned};

use crate::bundle::{BundleRevision, DriftMode};

/// A manifest directory that cannot be read as a bundle.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not valid YAML or JSON, or breaks a limit.
    #[error("{location}: {message}")]
    Syntax {
        /// Where.
        location: SourceLocation,
        /// What is wrong.
        message: String,
    },
    /// A document is not a Kubernetes object.
    #[error("{location}: {message}")]
    Object {
        /// Where the document starts.
        location: SourceLocation,
        /// What is missing.
        message: String,
    },
    /// The directory breaks a size limit.
    #[error("{path}: {message}")]
    Limit {
        /// The directory or file.
        path: PathBuf,
        /// Which limit.
        message: String,
    },
    /// The directory is a kustomization, which the hub renders.
    #[error(
        "{0}: is a kustomization; render it first (kubectl kustomize {dir} > bundle.yaml)",
        dir = .0.parent().map(|p| p.display().to_string()).unwrap_or_default()
    )]
    Kustomization(PathBuf),
}

/// The objects of every manifest under `dir`, in file order, then document order.
pub fn load_dir(dir: &Path, limits: &Limits) -> Result<Vec<Value>, ManifestError> {
    let files = manifest_files(dir, limits)?;
    let mut objects = Vec::new();
    for file in &files {
        load_file(dir, file, limits, &mut objects)?;
        if objects.len() > limits.max_objects_per_bundle {
            return Err(ManifestError::Limit {
                path: dir.to_owned(),
                message: format!(
                    "more than {} objects in one bundle",
                    limits.max_objects_per_bundle
                ),
            });
        }
    }
    Ok(objects)
}

/// A bundle revision of `objects`, named by the content hash of their canonical JSON (the
/// revision is the hash's first 12 digits: a directory has no commit).
pub fn revision(
    name: &str,
    namespace: &str,
    drift: DriftMode,
    objects: Vec<Value>,
) -> BundleRevision {
    let canonical = canonical_json(Value::Array(objects.clone()));
    // Serializing a JSON value into memory cannot fail.
    let hash = ContentHash::of(&serde_json::to_vec(&canonical).unwrap_or_default());
    BundleRevision {
        allow: Default::default(),
        name: name.to_owned(),
        revision: hash.short(),
        content_hash: hash.to_string(),
        namespace: namespace.to_owned(),
        drift,
        objects,
    }
}

/// A fingerprint of a directory's manifest files (names and bytes), cheap enough to take every
/// second to notice changes.
pub fn fingerprint(dir: &Path, limits: &Limits) -> Result<ContentHash, ManifestError> {
    let mut bytes = Vec::new();
    for file in manifest_files(dir, limits)? {
        let content = std::fs::read(&file).map_err(|source| ManifestError::Io {
            path: file.clone(),
            source,
        })?;
        bytes.extend_from_slice(file.to_string_lossy().as_bytes());
        bytes.extend_from_slice(&(content.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&content);
    }
    Ok(ContentHash::of(&bytes))
}

fn manifest_files(dir: &Path, limits: &Limits) -> Result<Vec<PathBuf>, ManifestError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|source| ManifestError::Io {
            path: current.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| ManifestError::Io {
                path: current.clone(),
                source,
            })?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            // Follows links, as kubectl does; a dangling link is an error worth seeing.
            let metadata = std::fs::metadata(&path).map_err(|source| ManifestError::Io {
                path: path.clone(),
                source,
            })?;
            if metadata.is_dir() {
                pending.push(path);
            } else if matches!(
                name.as_ref(),
                "kustomization.yaml" | "kustomization.yml" | "Kustomization"
            ) {
                return Err(ManifestError::Kustomization(path));
            } else if [".yaml", ".yml", ".json"]
                .iter()
                .any(|ext| name.ends_with(ext))
            {
                if metadata.len() > limits.max_file_bytes {
                    return Err(ManifestError::Limit {
                        path,
                        message: format!("larger than {} bytes", limits.max_file_bytes),
                    });
                }
                files.push(path);
            }
        }
        if files.len() > limits.max_files_per_bundle {
            return Err(ManifestError::Limit {
                path: dir.to_owned(),
                message: format!("more than {} manifest files", limits.max_files_per_bundle),
            });
        }
    }
    files.sort();
    Ok(files)
}

fn load_file(
    root: &Path,
    file: &Path,
    limits: &Limits,
    out: &mut Vec<Value>,
) -> Result<(), ManifestError> {
    let shown = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    let text = std::fs::read_to_string(file).map_err(|source| ManifestError::Io {
        path: file.to_owned(),
        source,
    })?;
    let documents: Vec<(u32, Value)> = if shown.ends_with(".json") {
        let value: Value = serde_json::from_str(&text).map_err(|e| ManifestError::Syntax {
            location: SourceLocation::at(&shown, line(e.line()), line(e.column())),
            message: e.to_string(),
        })?;
        vec![(1, value)]
    } else {
        let parsed: Vec<Spanned<Value>> =
            serde_saphyr::from_multiple_with_options(&text, options(limits)).map_err(|e| {
                ManifestError::Syntax {
                    location: e
                        .location()
                        .filter(|l| l.line() > 0)
                        .map(|l| {
                            SourceLocation::at(
                                &shown,
                                line(l.line() as usize),
                                line(l.column() as usize),
                            )
                        })
                        .unwrap_or_else(|| SourceLocation::file(&shown)),
                    message: DefaultMessageFormatter
                        .format_message(e.without_snippet())
                        .to_string(),
                }
            })?;
        parsed
            .into_iter()
            .filter(|d| !d.value.is_null())
            .map(|d| (line(d.referenced.line() as usize), d.value))
            .collect()
    };
    for (start, document) in documents {
        let location = SourceLocation::at(&shown, start, 1);
        if document.get("kind").and_then(Value::as_str) == Some("List") {
            let items = document
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for item in items {
                out.push(checked(item, &location)?);
            }
        } else {
            out.push(checked(document, &location)?);
        }
    }
    Ok(())
}

/// The document, if it names an apiVersion, a kind and a name.
fn checked(document: Value, location: &SourceLocation) -> Result<Value, ManifestError> {
    let missing = |what: &str| ManifestError::Object {
        location: location.clone(),
        message: format!("the document has no {what}; each document must be a Kubernetes object"),
    };
    if !document.is_object() {
        return Err(missing("fields (it is not a mapping)"));
    }
    for (pointer, what) in [
        ("/apiVersion", "apiVersion"),
        ("/kind", "kind"),
        ("/metadata/name", "metadata.name"),
    ] {
        if document
            .pointer(pointer)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(missing(what));
        }
    }
    Ok(document)
}

fn line(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Parser options enforcing `limits`; octal and YAML 1.1 booleans as kubectl reads them.
fn options(limits: &Limits) -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: limits.max_yaml_depth,
            max_aliases: limits.max_yaml_aliases,
            max_documents: limits.max_documents_per_file,
            max_reader_input_bytes: usize::try_from(limits.max_file_bytes).ok(),
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: limits.max_alias_expansion_events,
        },
        legacy_octal_numbers: true,
    }
}

#[cfg(test)]
mod tests;
