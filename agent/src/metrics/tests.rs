use std::collections::HashMap;

use super::*;
use crate::report::ObjectMessage;

fn report(bundle: &str, at_ms: i64, event: Event) -> Report {
    Report {
        bundle: bundle.into(),
        revision: "r1".into(),
        content_hash: "h".into(),
        at_ms,
        event,
    }
}

fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

#[test]
fn engine_reports_are_counted_by_what_happened() {
    let metrics = AgentMetrics::new();
    let mut applying = HashMap::new();
    let events = [
        report("web", 1_000, Event::Applying { objects: 3 }),
        report(
            "web",
            1_250,
            Event::Applied {
                applied: 3,
                pruned: 1,
            },
        ),
        report("db", 2_000, Event::Applying { objects: 1 }),
        report(
            "db",
            2_100,
            Event::ApplyFailed {
                errors: vec![ObjectMessage::bundle("spec.replicas: Invalid value")],
                nothing_written: true,
                retry_in: None,
            },
        ),
        report(
            "web",
            1_100,
            Event::Pruned {
                objects: vec!["ConfigMap web/old".into()],
                kept: Vec::new(),
                failed: Vec::new(),
            },
        ),
        report(
            "web",
            3_000,
            Event::DriftDetected {
                objects: vec![ObjectMessage::bundle("ConfigMap web/a: data.x")],
            },
        ),
        report(
            "web",
            3_100,
            Event::DriftCorrected {
                objects: vec!["ConfigMap web/a".into()],
            },
        ),
        report(
            "web",
            3_200,
            Event::HealthChanged(crate::health::BundleHealth {
                health: flotilla_core::Health::Degraded,
                unhealthy: Vec::new(),
            }),
        ),
    ];
    for event in &events {
        metrics.observe(event, &mut applying);
    }
    metrics.set_api_reachable(true);
    let text = metrics.encode().expect("encoded");
    assert_eq!(
        line(&text, "flotilla_agent_applies_total{result=\"applied\"}"),
        Some("flotilla_agent_applies_total{result=\"applied\"} 1"),
        "{text}"
    );
    assert!(line(&text, "flotilla_agent_applies_total{result=\"refused\"} 1").is_some());
    assert!(line(&text, "flotilla_agent_apply_duration_seconds_count 2").is_some());
    // 0.25 s and 0.1 s.
    assert!(
        line(&text, "flotilla_agent_apply_duration_seconds_sum 0.35").is_some(),
        "{text}"
    );
    assert!(line(&text, "flotilla_agent_objects_applied_total 3").is_some());
    assert!(line(&text, "flotilla_agent_objects_pruned_total 1").is_some());
    assert!(line(&text, "flotilla_agent_drift_detected_total 1").is_some());
    assert!(line(&text, "flotilla_agent_drift_corrections_total 1").is_some());
    assert!(
        line(
            &text,
            "flotilla_agent_bundle_health{bundle=\"web\",health=\"Degraded\"} 1"
        )
        .is_some(),
        "{text}"
    );
    assert!(
        !text.contains("flotilla_agent_bundle_health{bundle=\"web\",health=\"Healthy\"}"),
        "one series per bundle: {text}"
    );
    assert!(line(&text, "flotilla_agent_api_reachable 1").is_some());
    assert!(line(&text, "flotilla_agent_build_info{version=").is_some());
    assert!(text.ends_with("# EOF\n"), "{text}");
    if cfg!(target_os = "linux") {
        assert!(
            line(&text, "process_resident_memory_bytes ").is_some(),
            "{text}"
        );
    }
}

#[test]
fn requests_are_named_by_their_kubernetes_verb() {
    let request = |method: http::Method, uri: &str| {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .expect("a request")
    };
    assert_eq!(
        verb(&request(
            http::Method::GET,
            "/api/v1/namespaces/a/configmaps?watch=true&resourceVersion=1"
        )),
        "watch"
    );
    assert_eq!(
        verb(&request(
            http::Method::GET,
            "/api/v1/namespaces/a/configmaps"
        )),
        "get"
    );
    assert_eq!(
        verb(&request(
            http::Method::PATCH,
            "/apis/apps/v1/namespaces/a/deployments/b?fieldManager=flotilla"
        )),
        "patch"
    );
    assert_eq!(
        verb(&request(
            http::Method::DELETE,
            "/api/v1/namespaces/a/configmaps/b"
        )),
        "delete"
    );
    assert_eq!(
        verb(&request(http::Method::POST, "/api/v1/namespaces")),
        "create"
    );
}
