//! API tokens with their role bindings, and one-time agent bootstrap tokens. Only hashes of
//! secrets are replicated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CommandError, State, Timestamp};

/// Everything about who may do what.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Access {
    /// API tokens by id.
    pub tokens: BTreeMap<String, Token>,
    /// Bootstrap tokens by hash.
    pub bootstrap: BTreeMap<String, BootstrapToken>,
}

/// An API bearer token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// The name operators give it (`flotilla token create NAME`), unique among unrevoked
    /// tokens; audit events name the caller by it.
    pub name: String,
    /// Hash of the secret, hex.
    pub secret_hash: String,
    /// Roles granted.
    pub bindings: Vec<RoleBinding>,
    /// Expiry, if any.
    pub expires: Option<Timestamp>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// A role, granted for some stages or all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoleBinding {
    /// The role.
    pub role: Role,
    /// Stages it applies to; empty means every stage.
    pub stages: Vec<String>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Promote, roll back, pause and resume.
    Deployer,
    /// Everything.
    Admin,
}

impl Role {
    /// The role's name as operators write it: `viewer`, `deployer` or `admin`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }

    /// The role named `name` (as [`Role::name`] writes it).
    pub fn parse(name: &str) -> Option<Role> {
        [Role::Viewer, Role::Deployer, Role::Admin]
            .into_iter()
            .find(|role| role.name() == name.trim().to_ascii_lowercase())
    }
}

/// A one-time token an agent registers with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapToken {
    /// Cluster it registers.
    pub cluster: String,
    /// Expiry.
    pub expires: Timestamp,
    /// When it was used, if it was.
    pub used_at: Option<Timestamp>,
    /// The registration request that used it (blake3 of its CSR, hex): the same request sent
    /// again — its answer was lost, or another node was asked after a timeout — gets a
    /// certificate again; any other is refused.
    #[serde(default)]
    pub used_by: Option<String>,
}

/// Longest token name.
pub const TOKEN_NAME_MAX: usize = 63;

/// Whether `name` may name a token: 1 to 63 of `a-z`, `0-9`, `-`, `_`, `.`, starting with a letter
/// or digit, so it reads safely in audit events and command lines.
pub fn valid_token_name(name: &str) -> bool {
    (1..=TOKEN_NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

impl Access {
    /// The unrevoked token called `name`, with its id.
    pub fn token_named(&self, name: &str) -> Option<(&str, &Token)> {
        self.tokens
            .iter()
            .find(|(_, t)| t.name == name && t.revoked_at.is_none())
            .map(|(id, t)| (id.as_str(), t))
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn create_token(
    state: &mut State,
    name: &str,
    id: &str,
    secret_hash: &str,
    bindings: &[RoleBinding],
    expires: Option<Timestamp>,
    by: &str,
    at: Timestamp,
) -> Result<(), CommandError> {
    if id.is_empty() || secret_hash.is_empty() {
        return Err(CommandError::Invalid(
            "token id and secret hash are required".into(),
        ));
    }
    if !valid_token_name(name) {
        return Err(CommandError::Invalid(format!(
            "token name `{name}` must be 1 to {TOKEN_NAME_MAX} of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
        )));
    }
    if state.access.tokens.contains_key(id) || state.access.token_named(name).is_some() {
        return Err(CommandError::TokenExists(name.to_owned()));
    }
    state.access.tokens.insert(
        id.to_owned(),
        Token {
            name: name.to_owned(),
            secret_hash: secret_hash.to_owned(),
            bindings: bindings.to_vec(),
            expires,
            created_by: by.to_owned(),
            created_at: at,
            revoked_at: None,
        },
    );
    Ok(())
}

/// Revokes a token once: a second revoke of the same token is refused, so of two concurrent
/// revokes exactly one is told it revoked it.
pub(super) fn revoke_token(state: &mut State, id: &str, at: Timestamp) -> Result<(), CommandError> {
    let token = state
        .access
        .tokens
        .get_mut(id)
        .filter(|t| t.revoked_at.is_none())
        .ok_or_else(|| CommandError::UnknownToken(id.to_owned()))?;
    token.revoked_at = Some(at);
    Ok(())
}

pub(super) fn issue_bootstrap(
    state: &mut State,
    cluster: &str,
    token_hash: &str,
    expires: Timestamp,
    _at: Timestamp,
) -> Result<(), CommandError> {
    if !state.clusters.contains_key(cluster) {
        return Err(CommandError::UnknownCluster(cluster.to_owned()));
    }
    if token_hash.is_empty() {
        return Err(CommandError::Invalid(
            "bootstrap token hash is empty".into(),
        ));
    }
    state.access.bootstrap.insert(
        token_hash.to_owned(),
        BootstrapToken {
            cluster: cluster.to_owned(),
            expires,
            used_at: None,
            used_by: None,
        },
    );
    Ok(())
}

pub(super) fn consume_bootstrap(
    state: &mut State,
    token_hash: &str,
    request: &str,
    at: Timestamp,
) -> Result<(), CommandError> {
    let token = state
        .access
        .bootstrap
        .get_mut(token_hash)
        .ok_or(CommandError::BootstrapTokenRefused("unknown".into()))?;
    let again = !request.is_empty() && token.used_by.as_deref() == Some(request);
    if token.used_at.is_some() && !again {
        return Err(CommandError::BootstrapTokenRefused("already used".into()));
    }
    if at >= token.expires {
        return Err(CommandError::BootstrapTokenRefused("expired".into()));
    }
    if !again {
        token.used_at = Some(at);
        token.used_by = Some(request.to_owned()).filter(|r| !r.is_empty());
    }
    Ok(())
}
