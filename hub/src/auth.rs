//! Who may call the hub and what they may do: API bearer tokens (generated here, stored in the
//! replicated state as hashes only), one-time agent bootstrap tokens, and the role check that
//! scopes viewers, deployers and admins per stage.
//!
//! Everything here is pure: the Admin API's caller check reads the state, calls
//! [`token::authenticate`] with the presented bearer token and then [`policy::authorize`]
//! with the action and stage of the call.

pub mod policy;
pub mod token;

#[cfg(test)]
mod tests;

pub use policy::{Action, Denied, authorize};
pub use token::{
    AuthError, BootstrapRefused, NewBootstrapToken, NewToken, TokenError, authenticate,
    bearer_token, bootstrap_token_hash, check_bootstrap,
};
