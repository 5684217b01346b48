use serde_json::json;

use super::{find_word, merge_values, refuse_lookup, tidy};
use crate::render::RenderError;

#[test]
fn values_merge_as_helm_merges_its_values_files() {
    let mut values = json!({
        "image": {"repository": "nginx", "tag": "1.27"},
        "ports": [80, 443],
        "replicas": 1,
        "debug": true,
    });
    merge_values(
        &mut values,
        json!({
            "image": {"tag": "1.28"},
            "ports": [8080],
            "replicas": null,
            "extra": {"a": 1},
        }),
    );
    assert_eq!(
        values,
        json!({
            "image": {"repository": "nginx", "tag": "1.28"},
            "ports": [8080],
            "replicas": null,
            "debug": true,
            "extra": {"a": 1},
        })
    );
}

#[test]
fn a_mapping_replaces_a_scalar_and_a_scalar_a_mapping() {
    let mut values = json!({"a": 1, "b": {"c": 2}});
    merge_values(&mut values, json!({"a": {"x": 1}, "b": "flat"}));
    assert_eq!(values, json!({"a": {"x": 1}, "b": "flat"}));
}

#[test]
fn lookup_in_an_action_is_refused_at_its_line_and_column() {
    let template = "apiVersion: v1\nkind: Secret\ndata:\n  {{- $old := (lookup \"v1\" \"Secret\" .Release.Namespace \"x\") }}\n";
    let error = refuse_lookup(template, "charts/app/templates/secret.yaml").unwrap_err();
    let RenderError::Chart { location, message } = error else {
        panic!("not a chart error: {error:?}");
    };
    assert_eq!(
        location.to_string(),
        "charts/app/templates/secret.yaml:4:16"
    );
    assert!(message.contains("`lookup`"), "{message}");
}

#[test]
fn lookup_outside_actions_or_as_part_of_a_name_is_not_a_call() {
    let template = "# lookup tables\nkind: ConfigMap\ndata:\n  mode: lookup\n  a: {{ .Values.lookup }}\n  b: {{ $lookupTable }}\n  c: {{ include \"lookupName\" . }}\n";
    refuse_lookup(template, "t.yaml").unwrap();
    assert_eq!(find_word("(lookup \"v1\")", "lookup"), Some(1));
    assert_eq!(find_word(".Values.lookup", "lookup"), None);
}

#[test]
fn helm_errors_lose_the_debug_advice() {
    let message = "Error: demo/templates/bad.yaml:6:15\n  executing \"demo/templates/bad.yaml\" at <.Values.foo.bar>:\n    nil pointer evaluating interface {}.bar\n\nUse --debug flag to render out invalid YAML";
    assert_eq!(
        tidy(message),
        "demo/templates/bad.yaml:6:15\n  executing \"demo/templates/bad.yaml\" at <.Values.foo.bar>:\n    nil pointer evaluating interface {}.bar"
    );
}
