//! The Flotilla hub: the fleet's replicated state, kept by a raft group of hub nodes
//! (`flotilla_consensus`), and the services built on it.
//!
//! Start a node with [`node::Node::start`]; everything else goes through the returned
//! [`node::NodeHandle`]. The replicated domain lives in [`state`].

pub mod api;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod context;
pub mod controller;
pub mod http;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod server;
pub mod state;
pub mod status;
pub mod sync;
