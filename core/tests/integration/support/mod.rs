//! Helpers shared by this crate's integration tests.

// Their items are `pub` for the test modules beside them; the binary exports nothing.
#![allow(unreachable_pub)]

pub mod fixture;
