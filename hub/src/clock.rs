//! Wall-clock time for the commands a node proposes. Applying never reads a clock (timestamps
//! travel in commands); proposers read one through [`Clock`], so tests can control it. The
//! clock is core's, shared with the agent.

pub use flotilla_core::clock::{Clock, ManualClock, SystemClock, system};
