//! Who is calling the Admin API, and what they may do. Every handler starts with
//! [`identify`] and [`Caller::require`], so authentication and authorization live here alone.
//!
//! Until bearer tokens are checked, every caller is an anonymous admin.

use tonic::{Request, Status};

use crate::state::access::Role;

/// The identity behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who, as recorded in audit events.
    pub name: String,
    /// What they may do.
    pub role: Role,
}

/// Identifies the caller of a request.
pub fn identify<T>(_request: &Request<T>) -> Result<Caller, Status> {
    Ok(Caller {
        name: "anonymous".to_owned(),
        role: Role::Admin,
    })
}

impl Caller {
    /// Refuses an action on `stage` (promote, roll back, pause, resume, approve; view its
    /// history and rollouts) unless the caller holds `role` (or a stronger one) for it. Roles
    /// are not scoped to stages until tokens are checked; per-stage bindings go here.
    pub fn require_for_stage(&self, role: Role, _stage: &str) -> Result<(), Status> {
        self.require(role)
    }

    /// Refuses the call unless the caller holds `role` (or a stronger one).
    pub fn require(&self, role: Role) -> Result<(), Status> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{} may not do this: it needs the {role:?} role",
                self.name
            )))
        }
    }
}
