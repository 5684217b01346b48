//! Support for Flotilla's end-to-end tests and benchmarks: the workspace's binaries found next
//! to the running executable, real processes that are killed when dropped (simulator, hub,
//! agents), the `flotilla` CLI, Git repositories made with git2, and the simulated clusters'
//! objects read with kube-rs.
//!
//! This is test code: errors are `anyhow`, as in tests.

pub mod agent;
pub mod attacker;
pub mod binaries;
pub mod browser;
pub mod built;
pub mod charts;
pub mod cli;
pub mod differential;
pub mod fleet;
pub mod forward;
pub mod git;
pub mod helm;
pub mod http;
pub mod hub;
pub mod hub_group;
pub mod linearizable;
pub mod linked_agent;
pub mod manifests;
pub mod netns;
pub mod ports;
pub mod process;
pub mod protocol;
pub mod raft_log;
pub mod real;
pub mod receiver;
pub mod sim;
pub mod small_fleet;
pub mod swarm;
pub mod wait;
