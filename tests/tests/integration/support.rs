//! What several test files of this binary share.

pub(crate) mod engine;
