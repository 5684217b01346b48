//! `flotilla-agent`: applies bundles of Kubernetes objects to one cluster.

fn main() {}
