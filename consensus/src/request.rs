//! Request ids: what makes a write apply at most once however often it is sent.
//!
//! [`crate::node::NodeHandle::propose`] draws a random id per call and carries it, unchanged,
//! through every forward to the leader and every retry after a transport error or an election;
//! the leader appends it as the entry's context. The state machine sees it as each entry applies
//! and remembers the outcome of recent ids ([`crate::StateMachine::apply_command`]): an entry
//! whose id already applied changes nothing and answers the first outcome. So a caller whose
//! forward failed after the leader had appended it, and who sent it again, learns the real
//! outcome of its one write instead of, say, "already exists" for its own write.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One client write's id: 128 random bits, the same in every copy of the write.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub [u8; 16]);

impl RequestId {
    /// A fresh random id.
    pub fn random() -> Self {
        RequestId(rand::random())
    }

    /// The id an entry's context carries, if it carries one (entries written before ids, and
    /// membership changes, carry none).
    pub fn from_context(context: &[u8]) -> Option<Self> {
        context.try_into().ok().map(RequestId)
    }

    /// The bytes an entry's context holds.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}
