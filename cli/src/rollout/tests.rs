use flotilla_proto::v1::AdminRolloutProgress;

use super::RolloutView;

fn view(status: &str, paused_by: &str) -> RolloutView {
    RolloutView::of(AdminRolloutProgress {
        id: 3,
        stage: "prod".into(),
        to_revision: "0123456789abcdef".into(),
        status: status.into(),
        paused_by: paused_by.into(),
        ..AdminRolloutProgress::default()
    })
}

#[test]
fn a_watch_ends_on_a_failed_health_gate_but_not_on_an_operators_pause() {
    let failed_gate = view("paused", "controller:rollout");
    assert!(failed_gate.ended(), "a CI job watching it must not hang");
    assert!(failed_gate.failed(), "and it exits non-zero");

    let operator = view("paused", "token:alice");
    assert!(!operator.ended(), "an operator's pause is watched on");

    for (status, failed) in [
        ("completed", false),
        ("superseded", false),
        ("rolledBack", true),
        ("abandoned", true),
    ] {
        let view = view(status, "");
        assert!(view.ended(), "{status}");
        assert_eq!(view.failed(), failed, "{status}");
    }
    assert!(!view("running", "").ended());
    assert!(!view("awaitingApproval", "").ended());
}
