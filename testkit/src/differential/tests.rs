use std::collections::BTreeMap;

use serde_json::json;

use super::compare::{Accepted, compare};
use super::normalise::{normalise, select};
use super::{Step, Transcript};

fn values() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("ns".to_owned(), "d7-t1-0".to_owned()),
        ("group".to_owned(), "d7-t1-0.example.com".to_owned()),
    ])
}

fn transcript(body: serde_json::Value) -> Transcript {
    Transcript {
        scenario: "s".into(),
        steps: vec![json!({"status": 200, "body": body})],
        broken: None,
    }
}

#[test]
fn what_servers_choose_themselves_is_masked_and_the_rest_kept() {
    let mut object = json!({
        "metadata": {
            "name": "gen-x7k2p", "generateName": "gen-", "namespace": "d7-t1-0",
            "uid": "1b4e", "resourceVersion": "812", "creationTimestamp": "2026-01-01T00:00:00Z",
            "selfLink": "/x", "managedFields": [
                {"manager": "b", "operation": "Update", "time": "2026-01-01T00:00:01Z"},
                {"manager": "a", "operation": "Update", "time": "2026-01-01T00:00:02Z"},
            ],
        },
        "spec": {"clusterIP": "10.96.3.4", "group": "d7-t1-0.example.com", "replicas": 2},
        "message": "too old resource version: 5 (812)",
    });
    normalise(&mut object, &values());
    assert_eq!(
        object,
        json!({
            "metadata": {
                "name": "gen-<random>", "generateName": "gen-", "namespace": "{ns}",
                "uid": "<uid>", "resourceVersion": "<rv>", "creationTimestamp": "<time>",
                "managedFields": [
                    {"manager": "a", "operation": "Update", "time": "<time>"},
                    {"manager": "b", "operation": "Update", "time": "<time>"},
                ],
            },
            "spec": {"clusterIP": "<ip>", "group": "{group}", "replicas": 2},
            "message": "too old resource version: N (N)",
        })
    );
}

#[test]
fn a_selector_segment_picks_a_list_item_by_key() {
    let list = json!({"resources": [{"name": "pods", "verbs": ["get"]}, {"name": "configmaps"}]});
    assert_eq!(
        select(&list, "/resources/[name=pods]/verbs/0"),
        Some(&json!("get"))
    );
    assert_eq!(select(&list, "/resources/[name=secrets]"), None);
}

#[test]
fn differences_are_reported_by_path_unless_accepted() {
    let sim = transcript(json!({"spec": {"a": 1, "hash": "x"}}));
    let real = transcript(json!({"spec": {"a": 2, "hash": "y"}, "extra": true}));
    let accepted = vec![Accepted {
        scenario: "*".into(),
        path: "/body/*/hash".into(),
        step: None,
        why: "hashes differ".into(),
    }];
    let outcome = compare("area", &sim, &real, &accepted);
    let paths: Vec<(&str, bool)> = outcome
        .differences
        .iter()
        .map(|d| (d.path.as_str(), d.accepted.is_some()))
        .collect();
    assert_eq!(
        paths,
        [
            ("/body/extra", false),
            ("/body/spec/a", false),
            ("/body/spec/hash", true)
        ]
    );
    assert_eq!(outcome.unaccepted().count(), 2);
    assert!(!outcome.identical());
}

#[test]
fn a_whole_step_can_be_accepted_and_only_that_step() {
    let sim = Transcript {
        steps: vec![json!({"status": 200}), json!({"status": 404})],
        ..transcript(json!(null))
    };
    let real = Transcript {
        steps: vec![json!({"status": 201}), json!({"status": 200})],
        ..transcript(json!(null))
    };
    let accepted = vec![Accepted {
        scenario: "s".into(),
        path: "/".into(),
        step: Some(1),
        why: "timing".into(),
    }];
    let outcome = compare("area", &sim, &real, &accepted);
    let unaccepted: Vec<Option<usize>> = outcome.unaccepted().map(|d| d.step).collect();
    assert_eq!(unaccepted, [Some(0)]);
}

#[test]
fn a_step_that_could_not_run_is_a_difference_no_entry_accepts() {
    let sim = transcript(json!({}));
    let real = Transcript {
        broken: Some("no answer".into()),
        ..transcript(json!({}))
    };
    let everything = vec![Accepted {
        scenario: "*".into(),
        path: "/".into(),
        step: None,
        why: "all".into(),
    }];
    let outcome = compare("area", &sim, &real, &everything);
    assert_eq!(outcome.unaccepted().count(), 1);
}

#[test]
fn steps_parse_with_their_defaults() -> anyhow::Result<()> {
    let step: Step = serde_saphyr::from_str("path: /api\n")?;
    assert_eq!(step.method, "GET");
    assert!(!step.setup && step.only.is_empty() && step.until_status.is_none());
    Ok(())
}
