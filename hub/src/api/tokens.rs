//! API tokens through the Admin API: `flotilla token create|list|revoke`. Only admins of every
//! stage manage tokens; the secret leaves the hub once, in the create reply, and only its hash
//! is replicated.

use std::time::Duration;

use flotilla_proto::v1::{
    AdminCreateTokenReply, AdminCreateTokenRequest, AdminRevokeTokenRequest, AdminToken,
};
use tonic::Status;

use super::caller::Caller;
use super::{propose_status, read_status};
use crate::auth::NewToken;
use crate::context::HubContext;
use crate::node::ProposeError;
use crate::state::access::{Role, RoleBinding, Token, valid_token_name};
use crate::state::{Command, CommandError, Timestamp};

/// Most stages one token may name.
const MAX_STAGES: usize = 64;

/// Longest stage name a token may name.
const MAX_STAGE_NAME_BYTES: usize = 253;

pub use crate::auth::token::INITIAL_ADMIN;

/// A token as the API shows it: never its secret or hash.
pub(super) fn to_proto(id: &str, token: &Token) -> AdminToken {
    let binding = token.bindings.first();
    AdminToken {
        name: token.name.clone(),
        id: id.to_owned(),
        role: binding
            .map(|b| b.role.name())
            .unwrap_or_default()
            .to_owned(),
        stages: binding.map(|b| b.stages.clone()).unwrap_or_default(),
        expires_at_ms: token.expires.map_or(0, |t| t.0 as i64),
        created_by: token.created_by.clone(),
        created_at_ms: token.created_at.0 as i64,
        revoked_at_ms: token.revoked_at.map_or(0, |t| t.0 as i64),
    }
}

/// The command creating a token from a request, and the token (to reveal once), or what is
/// wrong with the request.
pub(super) fn plan_create(
    request: &AdminCreateTokenRequest,
    by: &str,
    now: Timestamp,
) -> Result<(Command, NewToken), Status> {
    let name = request.name.trim();
    if !valid_token_name(name) {
        return Err(Status::invalid_argument(format!(
            "token name `{name}`: use 1 to 63 of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
        )));
    }
    let role = Role::parse(&request.role).ok_or_else(|| {
        Status::invalid_argument(format!(
            "--role `{}`: must be viewer, deployer or admin",
            request.role
        ))
    })?;
    if let Some(stage) = request
        .stages
        .iter()
        .find(|s| s.trim().is_empty() || s.len() > MAX_STAGE_NAME_BYTES)
    {
        return Err(Status::invalid_argument(format!(
            "--stage `{stage}`: a stage name is 1 to {MAX_STAGE_NAME_BYTES} characters"
        )));
    }
    if request.stages.len() > MAX_STAGES {
        return Err(Status::invalid_argument(format!(
            "{} stages given; a token may name at most {MAX_STAGES} (none means every stage)",
            request.stages.len()
        )));
    }
    if request.expires_in_ms < 0 {
        return Err(Status::invalid_argument(
            "--expires must be a positive duration, like 30d",
        ));
    }
    let expires =
        (request.expires_in_ms > 0).then(|| {
            Timestamp(now.0.saturating_add(
                Duration::from_millis(request.expires_in_ms as u64).as_millis() as u64,
            ))
        });
    let token = NewToken::generate(&mut rand::rng());
    let mut stages = request.stages.clone();
    stages.sort();
    stages.dedup();
    let command = Command::CreateToken {
        name: name.to_owned(),
        id: token.id.clone(),
        secret_hash: token.secret_hash.clone(),
        bindings: vec![RoleBinding { role, stages }],
        expires,
        by: by.to_owned(),
        at: now,
    };
    Ok((command, token))
}

/// `CreateToken`: proposes the token and returns it with its secret.
pub(super) async fn create(
    hub: &HubContext,
    caller: &Caller,
    request: &AdminCreateTokenRequest,
) -> Result<AdminCreateTokenReply, Status> {
    let (command, token) = plan_create(request, &caller.name, hub.clock.now())?;
    hub.node.propose(&command).await.map_err(propose_status)?;
    let state = hub.node.state();
    let record = state
        .access
        .tokens
        .get(&token.id)
        .ok_or_else(|| Status::internal("the token was created but is not in the state"))?;
    Ok(AdminCreateTokenReply {
        token: Some(to_proto(&token.id, record)),
        secret: token.reveal().to_owned(),
    })
}

/// `RevokeToken`: revokes the unrevoked token of that name.
pub(super) async fn revoke(
    hub: &HubContext,
    request: &AdminRevokeTokenRequest,
) -> Result<AdminToken, Status> {
    let name = request.name.trim();
    let not_found = || {
        Status::not_found(format!(
            "no unrevoked token is named `{name}`; `flotilla token list` shows the tokens"
        ))
    };
    // The name is resolved on a state at least as new as every acknowledged write (a replica
    // behind the leader may not know of a token created or revoked elsewhere), and the revoke
    // is refused as it applies if the token was revoked in between.
    let id = hub
        .node
        .linearizable(|state| state.access.token_named(name).map(|(id, _)| id.to_owned()))
        .await
        .map_err(read_status)?
        .ok_or_else(not_found)?;
    let revoked = hub
        .node
        .propose(&Command::RevokeToken {
            id: id.clone(),
            at: hub.clock.now(),
        })
        .await;
    match revoked {
        Err(ProposeError::Rejected {
            error: CommandError::UnknownToken(_),
            ..
        }) => return Err(not_found()),
        other => other.map_err(propose_status)?,
    };
    let state = hub.node.state();
    let token = state
        .access
        .tokens
        .get(&id)
        .ok_or_else(|| Status::internal("the token was revoked but is not in the state"))?;
    Ok(to_proto(&id, token))
}
