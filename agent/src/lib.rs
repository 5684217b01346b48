//! The Flotilla agent: applies bundles of Kubernetes objects to one cluster as a unit, prunes
//! what left them, corrects drift and judges health.

pub mod bundle;
pub mod clock;
pub mod drift;
pub mod health;
pub mod object;
pub mod report;
pub mod state;
