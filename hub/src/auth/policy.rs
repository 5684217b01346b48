//! The role check: what each Admin API action needs, and whether a token's bindings grant it
//! for a stage.
//!
//! Roles are ordered viewer < deployer < admin, and a binding grants its role and every lesser
//! one. A binding with stages grants them only for those stages; one without stages grants them
//! for every stage. Fleet-wide actions (clusters, tokens, group membership) belong to no stage,
//! so they need an admin binding without stages: an admin of `dev` deploys to `dev` but cannot
//! add clusters or mint tokens.

use std::fmt;

use crate::state::access::{Role, RoleBinding};

/// Something an Admin API caller asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read status, clusters, revisions, rollouts, the audit log.
    View,
    /// Promote a revision into a stage, or approve a waiting rollout.
    Promote,
    /// Promote a revision the upstream stage has not passed (`--force`).
    ForcePromote,
    /// Roll a stage back to an earlier revision.
    Rollback,
    /// Pause or resume a stage's rollout.
    Pause,
    /// Add, relabel or remove clusters; issue bootstrap tokens.
    ManageClusters,
    /// Create, list or revoke API tokens.
    ManageTokens,
    /// Change the hub group's members or sources.
    ManageHub,
    /// Ask the hub to fetch its repository now, as a webhook does.
    RequestFetch,
}

impl Action {
    /// The least role that may do it.
    pub fn role(self) -> Role {
        match self {
            Action::View => Role::Viewer,
            Action::Promote | Action::Rollback | Action::Pause | Action::RequestFetch => {
                Role::Deployer
            }
            Action::ForcePromote
            | Action::ManageClusters
            | Action::ManageTokens
            | Action::ManageHub => Role::Admin,
        }
    }

    /// Whether it concerns the whole fleet rather than one stage.
    pub fn fleet_wide(self) -> bool {
        matches!(
            self,
            Action::ManageClusters | Action::ManageTokens | Action::ManageHub
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::View => "view",
            Action::Promote => "promote",
            Action::ForcePromote => "force a promotion",
            Action::Rollback => "roll back",
            Action::Pause => "pause or resume",
            Action::ManageClusters => "manage clusters",
            Action::ManageTokens => "manage tokens",
            Action::ManageHub => "manage the hub",
            Action::RequestFetch => "request a fetch",
        })
    }
}

/// A refusal, saying what was needed and what the token holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// What was asked.
    pub action: Action,
    /// The stage it concerned, if any.
    pub stage: Option<String>,
    /// The bindings the caller holds.
    pub granted: Vec<RoleBinding>,
}

impl std::error::Error for Denied {}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "may not {}", self.action)?;
        if let Some(stage) = &self.stage {
            write!(f, " on stage `{stage}`")?;
        }
        write!(f, ": it needs the {} role", role_name(self.action.role()))?;
        match (&self.stage, self.action.fleet_wide()) {
            (_, true) => f.write_str(" for every stage")?,
            (Some(stage), false) => write!(f, " for `{stage}`")?,
            (None, false) => {}
        }
        f.write_str("; the token grants ")?;
        if self.granted.is_empty() {
            return f.write_str("no role");
        }
        for (index, binding) in self.granted.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} on ", role_name(binding.role))?;
            if binding.stages.is_empty() {
                f.write_str("every stage")?;
            } else {
                f.write_str(&binding.stages.join(", "))?;
            }
        }
        Ok(())
    }
}

/// A role's name as operators write it.
fn role_name(role: Role) -> &'static str {
    role.name()
}

/// Whether `bindings` allow `action` on `stage`. `stage` is the stage the call acts on; for
/// `View` it may be `None` (fleet-wide reads need any binding at all), and `RequestFetch` has
/// none (a fetch changes no stage by itself, so a deployer of any stage may ask for one, as a
/// push would). Any other stage-scoped action without a stage is allowed only by a binding for
/// every stage.
pub fn authorize(
    bindings: &[RoleBinding],
    action: Action,
    stage: Option<&str>,
) -> Result<(), Denied> {
    let needed = action.role();
    let covers = |binding: &RoleBinding| {
        if binding.role < needed {
            return false;
        }
        if binding.stages.is_empty() {
            return true;
        }
        if action.fleet_wide() {
            return false;
        }
        match (action, stage) {
            (_, Some(stage)) => binding.stages.iter().any(|s| s == stage),
            (Action::View | Action::RequestFetch, None) => true,
            (_, None) => false,
        }
    };
    if bindings.iter().any(covers) {
        return Ok(());
    }
    Err(Denied {
        action,
        stage: stage.map(str::to_owned),
        granted: bindings.to_vec(),
    })
}
