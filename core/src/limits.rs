//! Limits that keep a hostile or runaway repository from exhausting the hub.

use std::time::Duration;

use crate::render::sandbox::SandboxMode;

/// Every bound applied while reading a repository and rendering its bundles. A breach is a
/// clear error on the revision, never a truncated result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest file read (`flotilla.yaml`, an inventory, one manifest), in bytes.
    pub max_file_bytes: u64,
    /// Most manifest files in one bundle (base plus overlay).
    pub max_files_per_bundle: usize,
    /// Most entries (files, directories, links) walked when checking a repository's links.
    pub max_repo_entries: usize,
    /// Most Kubernetes objects one bundle may render to.
    pub max_objects_per_bundle: usize,
    /// Largest rendered bundle for one cluster (canonical JSON), in bytes.
    pub max_rendered_bytes: usize,
    /// Deepest nesting of YAML or JSON collections.
    pub max_yaml_depth: usize,
    /// Most aliases (`*ref`) in one YAML file.
    pub max_yaml_aliases: usize,
    /// Most events replayed by alias expansion in one YAML file (the billion-laughs bound).
    pub max_alias_expansion_events: usize,
    /// Most YAML documents in one file.
    pub max_documents_per_file: usize,
    /// Longest one renderer run (a `kustomize build`) may take before it is killed; also its
    /// CPU-time limit.
    pub render_timeout: Duration,
    /// Address space one renderer run may use, in bytes.
    pub render_memory_bytes: u64,
    /// How renderers are confined (no network, read-only checkout).
    pub render_sandbox: SandboxMode,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 4 * 1024 * 1024,
            max_files_per_bundle: 1_000,
            max_repo_entries: 100_000,
            max_objects_per_bundle: 2_000,
            max_rendered_bytes: 16 * 1024 * 1024,
            max_yaml_depth: 64,
            max_yaml_aliases: 1_000,
            max_alias_expansion_events: 100_000,
            max_documents_per_file: 1_000,
            render_timeout: Duration::from_secs(20),
            render_memory_bytes: 2 * 1024 * 1024 * 1024,
            render_sandbox: SandboxMode::Required,
        }
    }
}
