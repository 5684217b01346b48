//! Flotilla's public key infrastructure.
