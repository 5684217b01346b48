#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::state::access::{Role, RoleBinding};
use crate::state::{Command, CommandError, Labels, State, Timestamp};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn binding(role: Role, stages: &[&str]) -> RoleBinding {
    RoleBinding {
        role,
        stages: stages.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// A state holding one token created through the state machine, as `flotilla token create`
/// would.
fn state_with(token: &NewToken, expires: Option<Timestamp>) -> State {
    let mut state = State::bootstrap(BTreeMap::new());
    state
        .apply(&Command::CreateToken {
            name: "ci".into(),
            id: token.id.clone(),
            secret_hash: token.secret_hash.clone(),
            bindings: vec![binding(Role::Deployer, &["staging"])],
            expires,
            by: "admin".into(),
            at: Timestamp(1_000),
        })
        .unwrap();
    state
}

#[test]
fn a_created_token_authenticates_with_its_bindings() {
    let token = NewToken::generate(&mut rng(1));
    let state = state_with(&token, None);
    let (id, record) = authenticate(&state.access, token.reveal(), Timestamp(2_000)).unwrap();
    assert_eq!(id, token.id);
    assert_eq!(record.bindings, [binding(Role::Deployer, &["staging"])]);
}

#[test]
fn a_token_reads_prefix_id_and_secret_and_only_its_hash_is_stored() {
    let token = NewToken::generate(&mut rng(1));
    let text = token.reveal();
    let rest = text.strip_prefix("flt_").unwrap();
    let (id, secret) = rest.split_once('_').unwrap();
    assert_eq!(id, token.id);
    assert_eq!((id.len(), secret.len()), (16, 64));
    assert!(!token.secret_hash.contains(secret));
    let state = state_with(&token, None);
    let stored = postcard::to_allocvec(&state).unwrap();
    assert!(
        !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret reached the replicated state"
    );
}

#[test]
fn tokens_come_from_the_random_source() {
    let a = NewToken::generate(&mut rng(1));
    let again = NewToken::generate(&mut rng(1));
    let b = NewToken::generate(&mut rng(2));
    assert_eq!(a.reveal(), again.reveal());
    assert_ne!(a.reveal(), b.reveal());
    assert_ne!(a.id, b.id);
}

#[test]
fn a_wrong_secret_is_refused() {
    let token = NewToken::generate(&mut rng(1));
    let state = state_with(&token, None);
    let other = NewToken::generate(&mut rng(2));
    let forged = format!("flt_{}_{}", token.id, &other.reveal()[21..]);
    assert_eq!(
        authenticate(&state.access, &forged, Timestamp(2_000)),
        Err(AuthError::WrongSecret(token.id.clone()))
    );
    assert_eq!(
        authenticate(&state.access, other.reveal(), Timestamp(2_000)),
        Err(AuthError::Unknown(other.id.clone()))
    );
}

#[test]
fn a_revoked_token_is_refused() {
    let token = NewToken::generate(&mut rng(1));
    let mut state = state_with(&token, None);
    state
        .apply(&Command::RevokeToken {
            id: token.id.clone(),
            at: Timestamp(1_500),
        })
        .unwrap();
    assert_eq!(
        authenticate(&state.access, token.reveal(), Timestamp(2_000)),
        Err(AuthError::Revoked(token.id.clone()))
    );
}

#[test]
fn a_token_stops_working_when_it_expires() {
    let token = NewToken::generate(&mut rng(1));
    let state = state_with(&token, Some(Timestamp(5_000)));
    assert!(authenticate(&state.access, token.reveal(), Timestamp(4_999)).is_ok());
    assert_eq!(
        authenticate(&state.access, token.reveal(), Timestamp(5_000)),
        Err(AuthError::Expired(token.id.clone()))
    );
}

#[test]
fn malformed_tokens_are_refused_before_any_lookup() {
    let token = NewToken::generate(&mut rng(1));
    let state = state_with(&token, None);
    let upper = token.reveal().to_uppercase().replacen("FLT_", "flt_", 1);
    let bootstrap = NewBootstrapToken::generate(&mut rng(3));
    for bad in [
        "",
        "flt_",
        "flt_0123_abcd",
        "hello",
        upper.as_str(),
        bootstrap.reveal(),
        &token.reveal()[..token.reveal().len() - 1],
    ] {
        assert_eq!(
            authenticate(&state.access, bad, Timestamp(2_000)),
            Err(AuthError::Malformed(TokenError::MalformedApiToken)),
            "{bad}"
        );
    }
}

#[test]
fn bearer_headers_are_read_case_insensitively() {
    assert_eq!(bearer_token("Bearer flt_x"), Some("flt_x"));
    assert_eq!(bearer_token("bearer   flt_x "), Some("flt_x"));
    assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
    assert_eq!(bearer_token("Bearer "), None);
    assert_eq!(bearer_token("flt_x"), None);
}

#[test]
fn debug_output_never_shows_secrets() {
    let token = NewToken::generate(&mut rng(1));
    let secret = &token.reveal()[21..];
    assert!(!format!("{token:?}").contains(secret));
    let bootstrap = NewBootstrapToken::generate(&mut rng(1));
    assert!(!format!("{bootstrap:?}").contains(&bootstrap.reveal()[5..]));
}

fn state_with_bootstrap(token: &NewBootstrapToken) -> State {
    let mut state = State::bootstrap(BTreeMap::new());
    state
        .apply(&Command::RegisterCluster {
            name: "edge-1".into(),
            labels: Labels::default(),
            at: Timestamp(1_000),
        })
        .unwrap();
    state
        .apply(&Command::IssueBootstrapToken {
            cluster: "edge-1".into(),
            token_hash: token.token_hash.clone(),
            expires: Timestamp(10_000),
            at: Timestamp(1_000),
        })
        .unwrap();
    state
}

#[test]
fn a_bootstrap_token_names_its_cluster_and_works_once() {
    let token = NewBootstrapToken::generate(&mut rng(7));
    assert!(token.reveal().starts_with("fltb_"));
    let mut state = state_with_bootstrap(&token);
    let (hash, record) =
        check_bootstrap(&state.access, token.reveal(), "csr-1", Timestamp(2_000)).unwrap();
    assert_eq!(record.cluster, "edge-1");
    assert_eq!(hash, token.token_hash);
    assert_eq!(
        bootstrap_token_hash(token.reveal()).unwrap(),
        token.token_hash
    );

    let consume = |request: &str| Command::ConsumeBootstrapToken {
        token_hash: hash.clone(),
        request: request.into(),
        at: Timestamp(2_000),
    };
    state.apply(&consume("csr-1")).unwrap();
    // Another request (another key): refused by the state machine and by the pre-check alike.
    assert_eq!(
        state.apply(&consume("csr-2")),
        Err(CommandError::BootstrapTokenRefused("already used".into()))
    );
    assert_eq!(
        check_bootstrap(&state.access, token.reveal(), "csr-2", Timestamp(2_001)).map(|_| ()),
        Err(BootstrapRefused::Used)
    );
    // The same request sent again (its answer was lost) passes, and uses nothing more.
    assert!(check_bootstrap(&state.access, token.reveal(), "csr-1", Timestamp(2_001)).is_ok());
    let before = state.clone();
    state.apply(&consume("csr-1")).unwrap();
    assert_eq!(state.access, before.access);
    // A request naming none cannot be sent again.
    assert_eq!(
        check_bootstrap(&state.access, token.reveal(), "", Timestamp(2_001)).map(|_| ()),
        Err(BootstrapRefused::Used)
    );
}

#[test]
fn an_expired_or_unknown_bootstrap_token_is_refused() {
    let token = NewBootstrapToken::generate(&mut rng(7));
    let state = state_with_bootstrap(&token);
    assert_eq!(
        check_bootstrap(&state.access, token.reveal(), "csr", Timestamp(10_000)).map(|_| ()),
        Err(BootstrapRefused::Expired)
    );
    let stranger = NewBootstrapToken::generate(&mut rng(8));
    assert_eq!(
        check_bootstrap(&state.access, stranger.reveal(), "csr", Timestamp(2_000)).map(|_| ()),
        Err(BootstrapRefused::Unknown)
    );
    let api = NewToken::generate(&mut rng(9));
    assert_eq!(
        check_bootstrap(&state.access, api.reveal(), "csr", Timestamp(2_000)).map(|_| ()),
        Err(BootstrapRefused::Malformed(
            TokenError::MalformedBootstrapToken
        ))
    );
}

#[test]
fn an_api_token_hash_is_not_a_bootstrap_hash() {
    // One secret under both contexts hashes differently, so neither kind of token can stand
    // in for the other.
    let bootstrap = NewBootstrapToken::generate(&mut rng(5));
    let secret = &bootstrap.reveal()["fltb_".len()..];
    let mut state = State::bootstrap(BTreeMap::new());
    let id = "0123456789abcdef";
    state
        .apply(&Command::CreateToken {
            name: "ops".into(),
            id: id.into(),
            secret_hash: bootstrap.token_hash.clone(),
            bindings: vec![binding(Role::Admin, &[])],
            expires: None,
            by: "admin".into(),
            at: Timestamp(1),
        })
        .unwrap();
    assert_eq!(
        authenticate(&state.access, &format!("flt_{id}_{secret}"), Timestamp(2)),
        Err(AuthError::WrongSecret(id.into()))
    );
}

#[test]
fn a_deployer_of_staging_cannot_promote_prod() {
    let bindings = [binding(Role::Deployer, &["staging"])];
    assert_eq!(
        authorize(&bindings, Action::Promote, Some("staging")),
        Ok(())
    );
    let denied = authorize(&bindings, Action::Promote, Some("prod")).unwrap_err();
    assert_eq!(denied.stage.as_deref(), Some("prod"));
    assert_eq!(
        denied.to_string(),
        "may not promote on stage `prod`: it needs the deployer role for `prod`; \
         the token grants deployer on staging"
    );
}

#[test]
fn each_role_grants_the_lesser_ones() {
    let cases = [
        (Role::Viewer, Action::View, true),
        (Role::Viewer, Action::Promote, false),
        (Role::Viewer, Action::Pause, false),
        (Role::Deployer, Action::View, true),
        (Role::Deployer, Action::Rollback, true),
        (Role::Deployer, Action::Pause, true),
        (Role::Deployer, Action::ManageClusters, false),
        (Role::Admin, Action::Promote, true),
        (Role::Admin, Action::ManageClusters, true),
        (Role::Admin, Action::ManageTokens, true),
        (Role::Admin, Action::ManageHub, true),
    ];
    for (role, action, allowed) in cases {
        let stage = (!action.fleet_wide()).then_some("prod");
        let outcome = authorize(&[binding(role, &[])], action, stage);
        assert_eq!(outcome.is_ok(), allowed, "{role:?} {action}");
    }
}

#[test]
fn an_admin_of_one_stage_deploys_there_but_manages_nothing_fleet_wide() {
    let bindings = [binding(Role::Admin, &["dev"])];
    assert!(authorize(&bindings, Action::Rollback, Some("dev")).is_ok());
    assert!(authorize(&bindings, Action::Rollback, Some("prod")).is_err());
    let denied = authorize(&bindings, Action::ManageTokens, None).unwrap_err();
    assert_eq!(
        denied.to_string(),
        "may not manage tokens: it needs the admin role for every stage; \
         the token grants admin on dev"
    );
}

#[test]
fn a_stage_viewer_reads_its_stage_and_the_fleet_but_not_other_stages() {
    let bindings = [binding(Role::Viewer, &["staging"])];
    assert!(authorize(&bindings, Action::View, Some("staging")).is_ok());
    assert!(authorize(&bindings, Action::View, None).is_ok());
    assert!(authorize(&bindings, Action::View, Some("prod")).is_err());
}

#[test]
fn a_stage_action_without_stage_needs_a_binding_for_every_stage() {
    assert!(authorize(&[binding(Role::Deployer, &["dev"])], Action::Promote, None).is_err());
    assert!(authorize(&[binding(Role::Deployer, &[])], Action::Promote, None).is_ok());
}

#[test]
fn any_binding_that_covers_suffices() {
    let bindings = [
        binding(Role::Viewer, &[]),
        binding(Role::Deployer, &["staging", "prod"]),
    ];
    assert!(authorize(&bindings, Action::Promote, Some("prod")).is_ok());
    assert!(authorize(&bindings, Action::Promote, Some("dev")).is_err());
    assert!(authorize(&bindings, Action::View, Some("dev")).is_ok());
}

#[test]
fn no_bindings_grant_nothing() {
    let denied = authorize(&[], Action::View, None).unwrap_err();
    assert_eq!(
        denied.to_string(),
        "may not view: it needs the viewer role; the token grants no role"
    );
}
