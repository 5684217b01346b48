//! A repository checked out on disk: its spec, and the rule that nothing in it points
//! outside it.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::limits::Limits;
use crate::location::SourceLocation;
use crate::spec::{FleetSpec, SPEC_FILE, SpecError, SpecErrors};

/// A loaded repository: a canonical root whose links all stay inside, and its valid spec.
#[derive(Debug, Clone)]
pub struct Repository {
    root: PathBuf,
    spec: FleetSpec,
    limits: Limits,
    cancel: Cancel,
}

/// A flag that stops a render in flight: renderers still running are killed and no further
/// template is built. Cloned handles share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    /// Stops every render that holds this flag.
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Repository {
    /// Reads `flotilla.yaml` at `root`, validates it, and checks that no symbolic link in the
    /// tree (`.git` aside) and no bundle or overlay directory leads outside `root`. Every
    /// problem found is returned, not only the first.
    pub fn load(root: &Path, limits: Limits) -> Result<Repository, SpecErrors> {
        let root = root.canonicalize().map_err(|e| {
            SpecErrors::one(SpecError::Read {
                location: SourceLocation::file(root.display().to_string()),
                message: e.to_string(),
            })
        })?;
        let mut errors = scan_links(&root, &limits);
        let spec_path = root.join(SPEC_FILE);
        let spec = read_limited(&spec_path, SPEC_FILE, &limits)
            .map_err(SpecErrors::one)
            .and_then(|text| FleetSpec::parse(&text, SPEC_FILE, &limits));
        let spec = match spec {
            Ok(spec) => spec,
            Err(spec_errors) => {
                errors.extend(spec_errors.errors);
                return Err(SpecErrors { errors });
            }
        };
        let repository = Repository {
            root,
            spec,
            limits,
            cancel: Cancel::default(),
        };
        errors.extend(repository.check_directories());
        if errors.is_empty() {
            Ok(repository)
        } else {
            Err(SpecErrors { errors })
        }
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The validated spec.
    pub fn spec(&self) -> &FleetSpec {
        &self.spec
    }

    /// Renders of this repository stop when `cancel` is cancelled.
    pub fn cancel_with(&mut self, cancel: Cancel) {
        self.cancel = cancel;
    }

    /// The flag that stops its renders.
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// The limits it was loaded with, which rendering applies too.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// `path` (absolute, inside the root) as a `/`-separated path relative to the root.
    pub fn relative(&self, path: &Path) -> String {
        let relative = path.strip_prefix(&self.root).unwrap_or(path);
        let text = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if text.is_empty() {
            ".".to_owned()
        } else {
            text
        }
    }

    /// The canonical path of a repository-relative directory, refusing anything that
    /// resolves outside the root.
    pub(crate) fn resolve_dir(
        &self,
        relative: &str,
        location: &SourceLocation,
    ) -> Result<PathBuf, SpecError> {
        let joined = self.root.join(relative);
        let canonical = joined.canonicalize().map_err(|e| SpecError::Invalid {
            location: location.clone(),
            field: "path".to_owned(),
            message: format!("directory `{relative}` cannot be opened: {e}"),
        })?;
        if !canonical.starts_with(&self.root) {
            return Err(SpecError::Escape {
                location: location.clone(),
                path: relative.to_owned(),
            });
        }
        if !canonical.is_dir() {
            return Err(SpecError::Invalid {
                location: location.clone(),
                field: "path".to_owned(),
                message: format!("`{relative}` is not a directory"),
            });
        }
        Ok(canonical)
    }

    /// The canonical path of a repository-relative file, refusing anything that resolves
    /// outside the root.
    pub(crate) fn resolve_file(
        &self,
        relative: &str,
        location: &SourceLocation,
    ) -> Result<PathBuf, SpecError> {
        let canonical =
            self.root
                .join(relative)
                .canonicalize()
                .map_err(|e| SpecError::Invalid {
                    location: location.clone(),
                    field: "path".to_owned(),
                    message: format!("file `{relative}` cannot be opened: {e}"),
                })?;
        if !canonical.starts_with(&self.root) {
            return Err(SpecError::Escape {
                location: location.clone(),
                path: relative.to_owned(),
            });
        }
        if !canonical.is_file() {
            return Err(SpecError::Invalid {
                location: location.clone(),
                field: "path".to_owned(),
                message: format!("`{relative}` is not a file"),
            });
        }
        Ok(canonical)
    }

    /// Whether an absolute path is inside the root once links are resolved.
    pub(crate) fn contains(&self, path: &Path) -> bool {
        path.canonicalize().is_ok_and(|p| p.starts_with(&self.root))
    }

    fn check_directories(&self) -> Vec<SpecError> {
        let mut errors = Vec::new();
        for bundle in &self.spec.bundles {
            let remote_chart = bundle.helm.as_ref().is_some_and(|h| h.remote.is_some());
            if !remote_chart && let Err(e) = self.resolve_dir(&bundle.path, &bundle.path_location) {
                errors.push(e);
            }
            for overlay in &bundle.overlays {
                if let Some(path) = &overlay.path
                    && let Err(e) = self.resolve_dir(path, &overlay.location)
                {
                    errors.push(e);
                }
            }
        }
        errors
    }
}

/// Walks the tree without following links and reports every link whose target is outside
/// `root` (dangling links are judged by their written target).
fn scan_links(root: &Path, limits: &Limits) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| !(entry.depth() == 1 && entry.file_name() == ".git"));
    for (count, entry) in walker.enumerate() {
        if count >= limits.max_repo_entries {
            errors.push(SpecError::TooManyEntries {
                location: SourceLocation::file("."),
                limit: limits.max_repo_entries,
            });
            break;
        }
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let path = e.path().map(|p| relative_to(root, p)).unwrap_or_default();
                errors.push(SpecError::Read {
                    location: SourceLocation::file(path),
                    message: e.to_string(),
                });
                continue;
            }
        };
        if entry.path_is_symlink() && !link_stays_inside(root, entry.path()) {
            let target = std::fs::read_link(entry.path())
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            errors.push(SpecError::Escape {
                location: SourceLocation::file(relative_to(root, entry.path())),
                path: target,
            });
        }
    }
    errors
}

fn link_stays_inside(root: &Path, link: &Path) -> bool {
    match link.canonicalize() {
        Ok(target) => target.starts_with(root),
        Err(_) => {
            let Ok(written) = std::fs::read_link(link) else {
                return false;
            };
            let base = link.parent().unwrap_or(root);
            lexical_normalize(&base.join(written)).starts_with(root)
        }
    }
}

fn lexical_normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                normalized.pop();
            }
            Component::CurDir => {}
            other => normalized.push(other),
        }
    }
    normalized
}

fn relative_to(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Reads a UTF-8 file of at most `limits.max_file_bytes`; `display` names it in errors.
pub(crate) fn read_limited(
    path: &Path,
    display: &str,
    limits: &Limits,
) -> Result<String, SpecError> {
    let read_error = |e: std::io::Error| SpecError::Read {
        location: SourceLocation::file(display),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let size = file.metadata().map_err(read_error)?.len();
    let too_large = |size| SpecError::TooLarge {
        location: SourceLocation::file(display),
        size,
        limit: limits.max_file_bytes,
    };
    if size > limits.max_file_bytes {
        return Err(too_large(size));
    }
    // The size can change between stat and read; never read past the limit.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limits.max_file_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| SpecError::Read {
        location: SourceLocation::file(display),
        message: format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
    })
}
