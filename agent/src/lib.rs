//! The Flotilla agent: applies, prunes and watches desired state in one cluster.
