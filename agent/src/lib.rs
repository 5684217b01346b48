//! The Flotilla agent: applies bundles of Kubernetes objects to one cluster as a unit, prunes
//! what left them, corrects drift and judges health.
//!
//! [`Engine`] is the library API: the hub connection (or `flotilla-agent run`) hands it
//! [`BundleRevision`]s and forwards the [`Report`]s it publishes.

pub mod api_probe;
pub mod apply;
pub mod bundle;
pub mod capabilities;
pub mod catalog;
pub mod cluster;
pub mod cluster_identity;
pub mod connect;
pub mod drift;
pub mod engine;
pub mod health;
pub mod hub;
pub mod inventory;
pub mod local;
pub mod metrics;
pub mod object;
pub mod owners;
pub mod plan;
pub mod prune;
pub mod report;
pub mod retry;
pub mod state;
pub mod watch;

pub use bundle::{BundleRevision, DriftMode, HeldBundle};
pub use cluster_identity::ClusterUid;
pub use engine::{BundleStatus, Engine, EngineConfig, EngineError, Phase};
/// Wall-clock time for report timestamps (core's, shared with the hub).
pub use flotilla_core::clock::{Clock, SystemClock};
pub use report::{Event, ObjectMessage, Report};
