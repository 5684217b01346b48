//! The integration tests of this crate, built as one test binary: one link instead of one
//! per file keeps the build's disk use and link time down. Each module is one former test file;
//! a new test file must be declared here.

mod support;

mod agent_health_of_storage_networking_and_autoscalers;
mod agent_on_real_clusters;
mod agent_rbac_least_privilege_on_a_real_cluster;
mod agent_reports_fields_added_by_others;
mod agent_restart_keeps_owned_objects;
mod bench_dashboard_runs_in_chromium;
mod chart_bundle_rolls_out_stage_by_stage;
mod chart_bundles_from_chart_sources;
mod chart_sources_serve_charts;
mod cli_cluster_and_bundle_get;
mod cli_lint_and_diff_agree_with_the_clusters;
mod dashboard_reconnects_after_failover;
mod delivery_broken_commit_changes_no_cluster;
mod delivery_commit_reaches_every_cluster;
mod delivery_emptied_bundle_list_waits_for_approval;
mod delivery_on_real_clusters;
mod delivery_removed_bundle_is_pruned;
mod delivery_webhook_skips_the_poll;
mod demo_runs_a_healthy_fleet_and_stops_cleanly;
mod deploy_chart;
mod deploy_manifests;
mod deploy_monitoring;
mod lint_matches_a_real_api_server;
mod listeners_close_slow_and_idle_connections;
mod listeners_survive_a_connection_flood;
mod nemesis_real_network;
mod notifications_follow_a_commit;
mod notifications_once_across_failover;
mod real_clusters_start_and_stop;
mod security_agent_identity_bound_to_its_cluster;
mod security_bad_input_corpus;
mod sim_matches_a_real_api_server;
mod status_shows_a_failed_apply;
mod status_shows_an_unreachable_cluster_api;
mod status_shows_drift;
mod swarm_of_thin_agents;
