//! The integration tests of this crate, built as one test binary: one link instead of one
//! per file keeps the build's disk use and link time down. Each module is one former test file;
//! a new test file must be declared here.

mod tls_grpc_peer_identity;
mod tls_handshake_trust;
mod tls_http_listener;
