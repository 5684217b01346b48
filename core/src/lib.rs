//! Flotilla's domain model, shared by the hub, the agent and the CLI: the repository spec
//! (`flotilla.yaml`), label selectors, the cluster inventory, per-cluster rendering of
//! bundles into content-addressed blobs, rollout wave planning and the health model.
//!
//! Nothing here talks to a cluster or a hub, so the CLI can lint and diff a repository
//! offline.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod clock;
pub mod diff;
pub mod hash;
pub mod health;
pub mod inventory;
pub mod labels;
pub mod limits;
pub mod location;
pub mod process;
pub mod render;
pub mod repository;
pub mod rollout;
pub mod schema;
pub mod selector;
pub mod signing;
pub mod spec;
pub mod validate;
mod yaml;

pub use hash::ContentHash;
pub use health::{Health, SyncState};
pub use inventory::Cluster;
pub use labels::Labels;
pub use limits::Limits;
pub use location::SourceLocation;
pub use render::sandbox::SandboxMode;
pub use render::{
    ChartDir, ChartFetcher, FleetRender, Helm, Kustomize, ObjectId, RenderError, RenderedBundle,
    Tools, render_bundle, render_fleet,
};
pub use repository::{Cancel, Repository};
pub use selector::LabelSelector;
pub use spec::{Allow, Bundle, FleetSpec, SpecError, SpecErrors, Stage};
