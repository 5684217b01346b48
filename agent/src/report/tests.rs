use std::time::Duration;

use flotilla_proto::v1::report::Event as Wire;

use super::*;
use crate::health::ObjectHealth;

fn report(event: Event) -> Report {
    Report {
        bundle: "web".into(),
        revision: "0123456789abcdef".into(),
        content_hash: "h".into(),
        at_ms: 7,
        event,
    }
}

fn deployment() -> ObjectRef {
    ObjectRef {
        group: "apps".into(),
        kind: "Deployment".into(),
        namespace: Some("web".into()),
        name: "api".into(),
    }
}

#[test]
fn failed_apply_lists_each_object_on_its_own_line() {
    let line = report(Event::ApplyFailed {
        errors: vec![ObjectMessage::new(
            &deployment(),
            "spec.replicas: Invalid value",
        )],
        nothing_written: true,
        retry_in: None,
    })
    .to_string();
    assert_eq!(
        line,
        "web @0123456789ab: apply failed, nothing written; waiting for a new revision\n  \
         apps/Deployment web/api: spec.replicas: Invalid value"
    );
    let line = report(Event::ApplyFailed {
        errors: vec![ObjectMessage::bundle("cluster unreachable")],
        nothing_written: true,
        retry_in: Some(Duration::from_millis(1500)),
    })
    .to_string();
    assert!(
        line.contains("retrying in 1.5s\n  cluster unreachable"),
        "{line}"
    );
}

#[test]
fn health_lines_name_unhealthy_objects() {
    let health = BundleHealth {
        health: Health::Degraded,
        unhealthy: vec![(
            deployment(),
            ObjectHealth::new(Health::Degraded, "exceeded its progress deadline"),
        )],
    };
    assert_eq!(
        report(Event::HealthChanged(health)).to_string(),
        "web @0123456789ab: health Degraded\n  apps/Deployment web/api: Degraded: exceeded its progress deadline"
    );
}

#[test]
fn protocol_messages_carry_results_health_and_drift() {
    let applied = report(Event::Applied {
        applied: 3,
        pruned: 1,
    })
    .to_proto();
    let Some(Wire::Apply(result)) = applied.and_then(|r| r.event) else {
        panic!("an applied report is an apply result");
    };
    assert!(result.ok);
    assert_eq!((result.applied, result.pruned), (3, 1));

    let drift = report(Event::DriftCorrected {
        objects: vec![deployment().to_string()],
    })
    .to_proto();
    let Some(Wire::Drift(drift)) = drift.and_then(|r| r.event) else {
        panic!("a drift report is a drift report");
    };
    assert!(drift.corrected);
    assert_eq!(drift.objects[0].object, "apps/Deployment web/api");

    assert!(report(Event::Applying { objects: 1 }).to_proto().is_none());
}
