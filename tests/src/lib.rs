//! Support for Flotilla's end-to-end tests and benchmarks.
