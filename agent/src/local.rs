//! The local modes, for people and tests: `flotilla-agent apply --dir` applies a directory once;
//! `flotilla-agent run --source-dir` keeps every subfolder of a directory applied as a bundle.
//! Both print the engine's reports as readable lines.

pub mod apply;
pub mod manifests;
pub mod source;

use std::path::PathBuf;

use crate::connect::ConnectError;
use crate::engine::EngineError;

/// Where the cluster is, shared by the local modes.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Kubeconfig file for the cluster (default: `$KUBECONFIG`, `~/.kube/config`, or the
    /// in-cluster service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace where the agent keeps bundle inventories.
    #[arg(long = "agent-namespace", default_value = "flotilla-system")]
    pub agent_namespace: String,
}

/// Why a local mode failed before it could report on its bundles.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The manifests could not be read.
    #[error(transparent)]
    Manifests(#[from] manifests::ManifestError),
    /// The cluster's configuration could not be loaded.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The engine refused the bundle or could not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The source directory's subfolders could not be listed.
    #[error("{path}: {source}")]
    SourceDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}
