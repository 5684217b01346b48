//! A Kubernetes API simulator: many virtual clusters behind one process.
