//! The Flotilla hub: a Raft-replicated state machine (raft-rs on a redb log), its peer
//! transport, and the services built on them.
//!
//! Start a node with [`node::Node::start`]; everything else goes through the returned
//! [`node::NodeHandle`]. The replicated domain lives in [`state`].

pub mod admin;
pub mod config;
pub mod node;
pub mod state;
pub mod storage;
pub mod transport;
