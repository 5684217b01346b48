//! The integration tests of this crate, built as one test binary: one link instead of one
//! per file keeps the build's disk use and link time down. Each module is one former test file;
//! a new test file must be declared here.

mod support;

mod examples_fleet_renders;
mod render_allow_and_ownership;
mod render_dedup;
mod render_hash_stability;
mod render_helm;
mod render_kustomize;
mod render_kustomize_confinement;
mod render_limits;
mod render_objects;
mod render_overlays;
mod render_substitution;
mod repository_confinement;
mod schema_docs_in_sync;
mod selector_targeting;
mod signing_git_commits;
mod spec_strict_parsing;
