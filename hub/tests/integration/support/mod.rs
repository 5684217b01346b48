//! Helpers shared by this crate's integration tests.

// Their items are `pub` for the test modules beside them; the binary exports nothing.
#![allow(unreachable_pub)]

pub mod admin;
pub mod fleet;
pub mod group;
pub mod hub_processes;
pub mod log;
pub use flotilla_testkit::ports;
pub mod process;
pub mod rollout;
pub mod secure;
pub use flotilla_testkit::protocol as sync;
