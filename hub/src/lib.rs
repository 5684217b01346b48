//! The Flotilla hub: a Raft-replicated state machine (raft-rs on a redb log), its peer
//! transport, and the services built on them.
//!
//! Start a node with [`node::Node::start`]; everything else goes through the returned
//! [`node::NodeHandle`]. The replicated domain lives in [`state`].

pub mod admin;
pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod controller;
pub mod http;
pub mod metrics;
pub mod node;
pub mod server;
pub mod state;
pub mod status;
pub mod storage;
pub mod sync;
pub mod transport;
