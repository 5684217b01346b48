//! Rollouts and promotion: the rules the rollout controller, the Admin API and status share —
//! which clusters a stage holds, how a cluster stands at a revision, which revision a stage
//! moves to next and whether it may, and how far a rollout has come.
//!
//! Everything here is a pure function of the replicated state (plus the time, where a clock
//! matters), so every hub node computes the same answers and a new leader carries on where the
//! old one stopped.

pub mod health;
pub mod progress;
pub mod promotion;
