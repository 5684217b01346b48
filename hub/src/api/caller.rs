//! Who is calling the Admin API, and what they may do. Every handler starts with [`identify`]
//! and then asks [`Caller::allow`] (or [`Caller::can`] to filter what it shows), so
//! authentication and authorization live here alone.
//!
//! A caller presents `authorization: Bearer flt_<id>_<secret>`; the token is checked against the
//! node's replica (hash, revocation, expiry) and its role bindings decide per stage. On a hub
//! started with `--insecure` there is no authentication: every caller is an anonymous admin, and
//! audit events say so.

use tonic::{Request, Status};

use crate::auth::{self, Action, AuthError};
use crate::context::HubContext;
use crate::state::access::{Role, RoleBinding};

/// Who audit events name when the hub checks no tokens.
pub const INSECURE_ACTOR: &str = "anonymous (insecure hub)";

/// The identity behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who, as recorded in audit events: `token:NAME`, or [`INSECURE_ACTOR`].
    pub name: String,
    grants: Grants,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Grants {
    /// An insecure hub: everything.
    Everything,
    /// A token's role bindings.
    Bindings(Vec<RoleBinding>),
}

/// A request the caller may not make: unauthenticated, or without the role it needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No usable token.
    #[error("{0}")]
    Unauthenticated(String),
    /// The token lacks the role.
    #[error("{name} {denied}")]
    Denied {
        /// The caller.
        name: String,
        /// What was needed and what it holds.
        denied: auth::Denied,
    },
}

impl From<Refused> for Status {
    fn from(refused: Refused) -> Status {
        match &refused {
            Refused::Unauthenticated(_) => Status::unauthenticated(refused.to_string()),
            Refused::Denied { .. } => Status::permission_denied(refused.to_string()),
        }
    }
}

/// Identifies the caller of a request from its bearer token, checked against this node's replica
/// at the hub's clock.
pub fn identify<T>(hub: &HubContext, request: &Request<T>) -> Result<Caller, Refused> {
    let header = request
        .metadata()
        .get("authorization")
        .map(|value| value.to_str().unwrap_or_default());
    identify_token(hub, header.and_then(auth::bearer_token))
}

/// Identifies the holder of a presented API token (none: unauthenticated), checked against this
/// node's replica at the hub's clock. On an insecure hub everyone is an anonymous admin.
pub fn identify_token(hub: &HubContext, token: Option<&str>) -> Result<Caller, Refused> {
    if hub.insecure {
        return Ok(Caller::insecure());
    }
    let Some(token) = token else {
        return Err(Refused::Unauthenticated(AuthError::Missing.to_string()));
    };
    let state = hub.node.state();
    let (_, record) = auth::authenticate(&state.access, token, hub.clock.now())
        .map_err(|e| Refused::Unauthenticated(unauthenticated_message(&e)))?;
    Ok(Caller {
        name: format!("token:{}", record.name),
        grants: Grants::Bindings(record.bindings.clone()),
    })
}

/// What an unauthenticated caller is told: what is wrong with the token and what to do.
fn unauthenticated_message(error: &AuthError) -> String {
    match error {
        AuthError::Missing | AuthError::Malformed(_) | AuthError::Expired(_) => error.to_string(),
        AuthError::Unknown(_) | AuthError::WrongSecret(_) => format!(
            "{error}; check --token / FLOTILLA_TOKEN (`flotilla token list` shows the tokens)"
        ),
        AuthError::Revoked(_) => {
            format!("{error}; ask an admin for a new one (`flotilla token create`)")
        }
    }
}

impl Caller {
    /// The caller on a hub that checks no tokens.
    pub fn insecure() -> Caller {
        Caller {
            name: INSECURE_ACTOR.to_owned(),
            grants: Grants::Everything,
        }
    }

    /// A caller holding `bindings`, named `token:NAME`.
    pub fn with_bindings(token_name: &str, bindings: Vec<RoleBinding>) -> Caller {
        Caller {
            name: format!("token:{token_name}"),
            grants: Grants::Bindings(bindings),
        }
    }

    /// Refuses `action` (on `stage`, for stage actions and stage reads) unless the caller's
    /// bindings allow it; the refusal says what was needed and what the token grants.
    pub fn allow(&self, action: Action, stage: Option<&str>) -> Result<(), Refused> {
        match &self.grants {
            Grants::Everything => Ok(()),
            Grants::Bindings(bindings) => {
                auth::authorize(bindings, action, stage).map_err(|denied| Refused::Denied {
                    name: self.name.clone(),
                    denied,
                })
            }
        }
    }

    /// Whether [`Caller::allow`] would allow `action` on `stage`.
    pub fn can(&self, action: Action, stage: Option<&str>) -> bool {
        self.allow(action, stage).is_ok()
    }

    /// Whether the caller may view what belongs to `stage` (none: a cluster no stage selects,
    /// which only a viewer of every stage sees, as in the fleet status).
    pub fn may_view(&self, stage: Option<&str>) -> bool {
        self.sees_everything()
            || stage.is_some_and(|s| self.can(crate::auth::Action::View, Some(s)))
    }

    /// Whether the caller may read everything: a viewer (or more) of every stage.
    pub fn sees_everything(&self) -> bool {
        match &self.grants {
            Grants::Everything => true,
            Grants::Bindings(bindings) => bindings
                .iter()
                .any(|b| b.stages.is_empty() && b.role >= Role::Viewer),
        }
    }
}

#[cfg(test)]
mod tests;
