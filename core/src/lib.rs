//! Flotilla's domain model, shared by the hub and the CLI.
