//! Flotilla's consensus tier: a raft group (raft-rs on a redb log, tonic peer transport over
//! mutual TLS) that replicates any [`StateMachine`].
//!
//! Start a node with [`node::Node::start`]; everything else goes through the returned
//! [`node::NodeHandle`]. The crate knows nothing of what it replicates: the embedding service
//! implements [`StateMachine`] and adds its own peer services through the router
//! [`node::Node::start`] hands it ([`node::PeerRouter`]).

pub mod config;
pub mod group;
pub mod node;
pub mod request;
pub mod state_machine;
pub mod storage;
pub mod transport;

pub use request::RequestId;
pub use state_machine::StateMachine;

/// A node's raft id: non-zero and unique in its group.
pub type NodeId = u64;
