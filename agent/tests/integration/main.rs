//! The integration tests of this crate, built as one test binary: one link instead of one
//! per file keeps the build's disk use and link time down. Each module is one former test file;
//! a new test file must be declared here.

mod support;

mod apply_crd_and_custom_resources;
mod apply_invalid_blocks_revision;
mod apply_prune_cycle;
mod cli_apply_dir;
mod cli_run_source_dir;
mod drift_corrected_after_kubectl;
mod fault_cluster_errors_never_partial_prune;
mod health_transitions_per_kind;
mod hub_agent_process_lifecycle;
mod prune_spares_foreign_objects;
mod prune_two_bundles_never_collide;
mod restart_reuses_state_and_inventory;
