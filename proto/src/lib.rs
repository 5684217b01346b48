//! Flotilla's wire protocol: generated prost messages and tonic services.

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// Version 1 of the protocol (`flotilla.v1`).
pub mod v1 {
    tonic::include_proto!("flotilla.v1");
}
