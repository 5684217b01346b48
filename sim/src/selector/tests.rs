use serde_json::json;

use super::LabelSelector;

fn labels(l: serde_json::Value) -> serde_json::Value {
    json!({"metadata": {"labels": l}})
}

#[test]
fn equality_and_set_based_requirements_combine() {
    let s =
        LabelSelector::parse("app=web, env in (prod, staging),!legacy,tier").unwrap_or_default();
    assert!(s.matches(&labels(json!({"app": "web", "env": "prod", "tier": "fe"}))));
    assert!(!s.matches(&labels(json!({"app": "web", "env": "dev", "tier": "fe"}))));
    assert!(!s.matches(&labels(
        json!({"app": "web", "env": "prod", "tier": "fe", "legacy": "1"})
    )));
    assert!(!s.matches(&labels(json!({"app": "web", "env": "prod"}))));
}

#[test]
fn not_equal_and_notin_match_absent_labels() {
    let s = LabelSelector::parse("env!=prod,zone notin (a)").unwrap_or_default();
    assert!(s.matches(&labels(json!({}))));
    assert!(!s.matches(&labels(json!({"env": "prod"}))));
    assert!(!s.matches(&labels(json!({"zone": "a"}))));
}

#[test]
fn empty_selector_matches_everything() {
    let s = LabelSelector::parse("").unwrap_or_default();
    assert!(s.is_empty());
    assert!(s.matches(&json!({"metadata": {}})));
}

#[test]
fn malformed_requirement_is_refused() {
    let err = LabelSelector::parse("app in web")
        .err()
        .map(|e| e.message)
        .unwrap_or_default();
    assert!(err.starts_with("unable to parse requirement"), "{err}");
}
