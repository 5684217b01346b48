//! The integration tests of this crate, built as one test binary: one link instead of one
//! per file keeps the build's disk use and link time down. Each module is one former test file;
//! a new test file must be declared here.

mod support;

mod admin_api_hub_process;
mod agent_certificate_renewal;
mod agent_cluster_identity_binding;
mod agent_identity_isolation;
mod agent_registration_tokens;
mod api_tokens_roles_and_audit;
mod audit_floods_keep_privileged_events;
mod content_outside_the_log;
mod controllers_follow_leadership;
mod dashboard_in_a_browser;
mod dashboard_sign_in_and_actions;
mod hub_process_failover;
mod hub_process_restart;
mod hub_process_truncated_log;
mod layering;
mod raft_disk_faults;
mod raft_fault_schedules;
mod raft_group_replication;
mod raft_membership_changes;
mod retention_forgets_unreferenced_revisions;
mod rollout_bad_canary_rolls_back;
mod rollout_max_unavailable_holds;
mod rollout_newer_revision_mid_rollout;
mod rollout_pipeline_reaches_prod;
mod rollout_survives_leader_kill;
mod source_broken_commit_keeps_last_good;
mod source_commit_rendered_per_cluster;
mod source_fetch_error_recorded;
mod source_signed_commits_gate_stages;
mod sync_agent_outlives_its_hub;
mod sync_bundles_reach_their_clusters;
mod sync_failover_resends_nothing;
mod sync_large_bundles_are_chunked;
mod sync_liveness_after_node_death;
mod sync_one_agent_per_cluster;
mod sync_silent_peers_are_cut_off;
mod tls_listeners_refuse_plaintext;
mod tls_node_certificates_renew;
mod tls_peers_need_the_group_ca;
mod webhook_triggers_fetch;
