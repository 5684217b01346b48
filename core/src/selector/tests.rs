use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn empty_selector_matches_everything() {
    assert!(LabelSelector::everything().matches(&labels(&[])));
    assert!(LabelSelector::everything().matches(&labels(&[("env", "prod")])));
}

#[test]
fn match_labels_and_expressions_must_all_hold() {
    let selector = LabelSelector::parse("env=prod,tier in (web,api),!legacy").unwrap();
    assert!(selector.matches(&labels(&[("env", "prod"), ("tier", "web")])));
    assert!(!selector.matches(&labels(&[("env", "prod"), ("tier", "db")])));
    assert!(!selector.matches(&labels(&[("env", "prod"), ("tier", "web"), ("legacy", "")])));
    assert!(!selector.matches(&labels(&[("env", "dev"), ("tier", "web")])));
}

#[test]
fn not_in_matches_clusters_without_the_label() {
    let selector = LabelSelector::parse("region notin (ap)").unwrap();
    assert!(selector.matches(&labels(&[])));
    assert!(selector.matches(&labels(&[("region", "eu")])));
    assert!(!selector.matches(&labels(&[("region", "ap")])));
    let not_equal = LabelSelector::parse("region!=ap").unwrap();
    assert!(not_equal.matches(&labels(&[])));
    assert!(!not_equal.matches(&labels(&[("region", "ap")])));
}

#[test]
fn exists_and_does_not_exist() {
    let exists = LabelSelector::parse("canary").unwrap();
    assert!(exists.matches(&labels(&[("canary", "")])));
    assert!(!exists.matches(&labels(&[])));
    let absent = LabelSelector::parse("!canary").unwrap();
    assert!(absent.matches(&labels(&[])));
}

#[test]
fn string_form_round_trips_through_display() {
    let text = "env=prod,tier in (a,b),region notin (ap),canary,!legacy";
    let selector = LabelSelector::parse(text).unwrap();
    assert_eq!(selector.to_string(), text);
    assert_eq!(
        LabelSelector::parse(&selector.to_string()).unwrap(),
        selector
    );
}

#[test]
fn double_equals_and_spaces_are_accepted() {
    let selector = LabelSelector::parse(" env == prod , app.kubernetes.io/name = web ").unwrap();
    assert_eq!(
        selector.match_labels.get("env").map(String::as_str),
        Some("prod")
    );
    assert_eq!(
        selector
            .match_labels
            .get("app.kubernetes.io/name")
            .map(String::as_str),
        Some("web")
    );
}

#[test]
fn malformed_string_selectors_are_rejected_with_a_reason() {
    for bad in [
        "env=prod,,tier=a",
        "tier in (a,b",
        "tier in a,b",
        "tier between (a)",
        "tier in ()",
        "bad key=1",
        "env=not valid",
        "-env=x",
    ] {
        let err = LabelSelector::parse(bad).unwrap_err();
        assert!(!err.reason.is_empty(), "{bad}");
    }
}

#[test]
fn validation_reports_operator_arity_and_bad_keys() {
    let selector = LabelSelector {
        match_labels: BTreeMap::from([("Bad Key".to_owned(), "x".to_owned())]),
        match_expressions: vec![
            LabelSelectorRequirement {
                key: "tier".to_owned(),
                operator: SelectorOperator::In,
                values: vec![],
            },
            LabelSelectorRequirement {
                key: "canary".to_owned(),
                operator: SelectorOperator::Exists,
                values: vec!["yes".to_owned()],
            },
        ],
    };
    let problems = selector.validate();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[1].contains("needs at least one value"));
    assert!(problems[2].contains("takes no values"));
}
