use super::*;

fn binding(role: Role, stages: &[&str]) -> RoleBinding {
    RoleBinding {
        role,
        stages: stages.iter().map(|s| (*s).to_owned()).collect(),
    }
}

#[test]
fn an_insecure_caller_may_do_everything_and_is_named_as_such() {
    let caller = Caller::insecure();
    assert_eq!(caller.name, INSECURE_ACTOR);
    for action in [Action::ManageTokens, Action::ForcePromote, Action::Promote] {
        assert!(caller.allow(action, Some("prod")).is_ok());
    }
    assert!(caller.sees_everything());
}

#[test]
fn a_refusal_names_the_token_and_maps_to_permission_denied() {
    let caller = Caller::with_bindings("ci", vec![binding(Role::Deployer, &["staging"])]);
    let refused = caller
        .allow(Action::Promote, Some("prod"))
        .expect_err("prod is not staging");
    let status = Status::from(refused);
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status
            .message()
            .starts_with("token:ci may not promote on stage `prod`"),
        "{}",
        status.message()
    );
    assert!(caller.allow(Action::Pause, Some("staging")).is_ok());
    assert!(!caller.can(Action::ForcePromote, Some("staging")));
    assert!(caller.can(Action::RequestFetch, None));
    assert!(!caller.sees_everything());
}

#[test]
fn only_a_binding_for_every_stage_sees_everything() {
    let everywhere = Caller::with_bindings("ops", vec![binding(Role::Viewer, &[])]);
    assert!(everywhere.sees_everything());
    assert!(!everywhere.can(Action::Pause, Some("dev")));
    let unauthenticated = Refused::Unauthenticated("no bearer token".into());
    assert_eq!(
        Status::from(unauthenticated).code(),
        tonic::Code::Unauthenticated
    );
}
