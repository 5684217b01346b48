//! Bearer tokens for the Admin API and bootstrap tokens for agent registration.
//!
//! An API token reads `flt_<id>_<secret>`: the id (16 hex digits) names it in the state, in
//! audit events and in `flotilla token revoke`; the secret (64 hex digits, 256 random bits) is
//! shown once at creation and only its hash is replicated. A bootstrap token reads
//! `fltb_<secret>` and is stored by its hash alone. The prefixes let secret scanners recognise
//! leaked tokens.
//!
//! The secrets are full-entropy random, so a fast keyed hash (blake3 in key-derivation mode,
//! one context per kind of token) is as strong as a password hash here, and the comparison of
//! hashes takes constant time (`blake3::Hash`'s equality).

use std::fmt;

use rand::{CryptoRng, RngCore};

use crate::state::Timestamp;
use crate::state::access::{Access, BootstrapToken, Token};

/// The name of the token a new group's leader creates for its first admin.
pub const INITIAL_ADMIN: &str = "initial-admin";

const API_PREFIX: &str = "flt_";
const BOOTSTRAP_PREFIX: &str = "fltb_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
const API_CONTEXT: &str = "flotilla.dev 2025-01 api token secret";
const BOOTSTRAP_CONTEXT: &str = "flotilla.dev 2025-01 agent bootstrap token";

/// Why a presented token is not even well-formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The text is not `flt_<16 hex>_<64 hex>`.
    #[error(
        "not a Flotilla API token (expected flt_<id>_<secret>, as `flotilla token create` prints it)"
    )]
    MalformedApiToken,
    /// The text is not `fltb_<64 hex>`.
    #[error(
        "not a Flotilla bootstrap token (expected fltb_<secret>, as `flotilla cluster add` prints it)"
    )]
    MalformedBootstrapToken,
}

/// Why a bearer token does not authenticate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error(
        "no bearer token; pass one with --token or FLOTILLA_TOKEN (`flotilla token create` makes one)"
    )]
    Missing,
    /// The token is not well-formed.
    #[error(transparent)]
    Malformed(#[from] TokenError),
    /// No token has this id.
    #[error("token {0} is unknown")]
    Unknown(String),
    /// The id exists but the secret does not match.
    #[error("token {0} is invalid (wrong secret)")]
    WrongSecret(String),
    /// The token was revoked.
    #[error("token {0} was revoked")]
    Revoked(String),
    /// The token expired.
    #[error("token {0} has expired; create a new one with `flotilla token create`")]
    Expired(String),
}

/// Why a bootstrap token is refused before anything is proposed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapRefused {
    /// The token is not well-formed.
    #[error(transparent)]
    Malformed(#[from] TokenError),
    /// No such token (never issued, or its cluster was removed).
    #[error("bootstrap token is unknown; `flotilla cluster add` prints a new one")]
    Unknown,
    /// Used already: bootstrap tokens work once.
    #[error("bootstrap token was already used; `flotilla cluster add` prints a new one")]
    Used,
    /// Expired.
    #[error("bootstrap token has expired; `flotilla cluster add` prints a new one")]
    Expired,
}

/// A freshly generated API token: what `CreateToken` records, and the token text to show the
/// operator once. `Debug` never prints the secret.
pub struct NewToken {
    /// The public id.
    pub id: String,
    /// The hash to store (`Token::secret_hash`), hex.
    pub secret_hash: String,
    text: String,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl NewToken {
    /// Generates a token from a cryptographic random source (`rand::rng()` in the hub).
    pub fn generate<R: CryptoRng + RngCore + ?Sized>(rng: &mut R) -> Self {
        let id = random_hex(rng, ID_BYTES);
        let secret = random_hex(rng, SECRET_BYTES);
        NewToken {
            secret_hash: hash(API_CONTEXT, &secret).to_hex().to_string(),
            text: format!("{API_PREFIX}{id}_{secret}"),
            id,
        }
    }

    /// The token as the operator passes it (`flt_<id>_<secret>`); show it once.
    pub fn reveal(&self) -> &str {
        &self.text
    }
}

/// A freshly generated bootstrap token: the hash `IssueBootstrapToken` records, and the text
/// to hand to the agent once. `Debug` never prints the secret.
pub struct NewBootstrapToken {
    /// The hash to store, hex.
    pub token_hash: String,
    text: String,
}

impl fmt::Debug for NewBootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewBootstrapToken")
            .field("token_hash", &self.token_hash)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl NewBootstrapToken {
    /// Generates a token from a cryptographic random source.
    pub fn generate<R: CryptoRng + RngCore + ?Sized>(rng: &mut R) -> Self {
        let secret = random_hex(rng, SECRET_BYTES);
        let text = format!("{BOOTSTRAP_PREFIX}{secret}");
        NewBootstrapToken {
            token_hash: hash(BOOTSTRAP_CONTEXT, &secret).to_hex().to_string(),
            text,
        }
    }

    /// The token as the agent presents it (`fltb_<secret>`); show it once.
    pub fn reveal(&self) -> &str {
        &self.text
    }
}

/// The token in an `Authorization` header value (`Bearer <token>`, scheme case-insensitive).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Checks a presented API token against the state: it must exist, match, be unrevoked and
/// unexpired at `now`. Returns the token's id and record (whose bindings go to
/// [`super::authorize`]).
pub fn authenticate<'a>(
    access: &'a Access,
    presented: &str,
    now: Timestamp,
) -> Result<(&'a str, &'a Token), AuthError> {
    let (id, secret) = parse_api_token(presented)?;
    let (id, token) = access
        .tokens
        .get_key_value(id)
        .ok_or_else(|| AuthError::Unknown(id.to_owned()))?;
    let stored = blake3::Hash::from_hex(&token.secret_hash)
        .map_err(|_| AuthError::WrongSecret(id.clone()))?;
    // blake3::Hash compares in constant time.
    if hash(API_CONTEXT, secret) != stored {
        return Err(AuthError::WrongSecret(id.clone()));
    }
    if token.revoked_at.is_some() {
        return Err(AuthError::Revoked(id.clone()));
    }
    if token.expires.is_some_and(|expires| now >= expires) {
        return Err(AuthError::Expired(id.clone()));
    }
    Ok((id, token))
}

/// The hash under which a presented bootstrap token is stored: what `ConsumeBootstrapToken`
/// takes.
pub fn bootstrap_token_hash(presented: &str) -> Result<String, TokenError> {
    let secret = presented
        .trim()
        .strip_prefix(BOOTSTRAP_PREFIX)
        .filter(|secret| is_hex(secret, SECRET_BYTES))
        .ok_or(TokenError::MalformedBootstrapToken)?;
    Ok(hash(BOOTSTRAP_CONTEXT, secret).to_hex().to_string())
}

/// Looks a presented bootstrap token up without using it, so garbage and stale tokens are
/// refused before a write is proposed. Returns the token's record: its `cluster` is the only
/// name the agent's CSR may ask for. Proposing `ConsumeBootstrapToken` remains the one-time
/// guarantee (two agents racing with one token: the second proposal is refused). A token used
/// by `request` (the hash of a registration's CSR) passes for that same request sent again.
pub fn check_bootstrap<'a>(
    access: &'a Access,
    presented: &str,
    request: &str,
    now: Timestamp,
) -> Result<(String, &'a BootstrapToken), BootstrapRefused> {
    let token_hash = bootstrap_token_hash(presented)?;
    let token = access
        .bootstrap
        .get(&token_hash)
        .ok_or(BootstrapRefused::Unknown)?;
    let again = !request.is_empty() && token.used_by.as_deref() == Some(request);
    if token.used_at.is_some() && !again {
        return Err(BootstrapRefused::Used);
    }
    if now >= token.expires {
        return Err(BootstrapRefused::Expired);
    }
    Ok((token_hash, token))
}

/// The id of an API token as the operator passes it (`flt_<id>_<secret>`), if well formed.
pub fn api_token_id(presented: &str) -> Option<&str> {
    parse_api_token(presented).ok().map(|(id, _)| id)
}

fn parse_api_token(presented: &str) -> Result<(&str, &str), TokenError> {
    presented
        .trim()
        .strip_prefix(API_PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .filter(|(id, secret)| is_hex(id, ID_BYTES) && is_hex(secret, SECRET_BYTES))
        .ok_or(TokenError::MalformedApiToken)
}

fn is_hex(text: &str, bytes: usize) -> bool {
    text.len() == bytes * 2 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn random_hex<R: CryptoRng + RngCore + ?Sized>(rng: &mut R, bytes: usize) -> String {
    let mut buffer = vec![0; bytes];
    rng.fill_bytes(&mut buffer);
    hex::encode(buffer)
}

fn hash(context: &str, secret: &str) -> blake3::Hash {
    blake3::Hasher::new_derive_key(context)
        .update(secret.as_bytes())
        .finalize()
}
