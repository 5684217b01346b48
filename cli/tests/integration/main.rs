//! The integration tests of this crate, built as one test binary: one link instead of one
//! per file keeps the build's disk use and link time down. Each module is one former test file;
//! a new test file must be declared here.

mod support;

mod cli_commands_against_hub;
mod contexts_and_global_flags;
mod demo_command_runs_the_demo_binary;
mod diff_example_repo;
mod lint_example_repo;
mod preview_a_branch;
mod rollout_commands_against_hub;
