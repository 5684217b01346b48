//! Jittered exponential backoff between connection attempts, with its randomness behind a
//! trait so tests can fix it.

use std::time::Duration;

/// A source of uniform randomness in `[0, 1)`.
pub trait Random: Send + Sync + 'static {
    /// A number in `[0, 1)`.
    fn unit(&self) -> f64;
}

/// The thread-local generator of the `rand` crate.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRandom;

impl Random for ThreadRandom {
    fn unit(&self) -> f64 {
        rand::random::<f64>()
    }
}

/// The same number every time (tests).
#[derive(Debug, Clone, Copy)]
pub struct FixedRandom(pub f64);

impl Random for FixedRandom {
    fn unit(&self) -> f64 {
        self.0.clamp(0.0, 0.999_999)
    }
}

/// Delays between attempts: `initial`, doubling per consecutive failure up to `max`, each
/// drawn uniformly from its upper half ("equal jitter"), so agents cut off together do not
/// reconnect together, yet none retries much sooner than planned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failure (and before the first reconnect after a disconnect).
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay after the hub refused the agent (its identity, or another agent streaming for
    /// the cluster): every node would say the same, so the longest, drawn from its upper half.
    pub fn after_refusal(&self, random: &dyn Random) -> Duration {
        let half = self.max / 2;
        half + half.mul_f64(random.unit())
    }

    /// The delay before attempt number `failures + 1`, after `failures` consecutive failures.
    pub fn delay(&self, failures: u32, random: &dyn Random) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(2u32.saturating_pow(failures.min(31)))
            .min(self.max);
        let half = ceiling / 2;
        half + half.mul_f64(random.unit())
    }
}
