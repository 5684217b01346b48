//! The integration tests of this crate, built as one test binary: one link instead of one
//! per file keeps the build's disk use and link time down. Each module is one former test file;
//! a new test file must be declared here.

mod support;

mod api_rules_a_real_server_enforces;
mod api_semantics;
mod binary_process;
mod controllers_status;
mod faults_admin;
mod kube_client;
mod kubectl_apply;
mod kubectl_crd;
mod kubectl_create;
mod kubectl_read;
mod validation_errors;
