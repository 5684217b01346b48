use serde_json::json;

use super::*;

fn desired() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "web", "labels": {"app": "api"}},
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [
                {"name": "api", "image": "api:1", "resources": {"requests": {"cpu": "0.5"}}}
            ]}}
        }
    })
}

/// What the API server returns from applying `desired`: normalised values, defaults, status.
fn applied() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "api", "namespace": "web", "labels": {"app": "api"},
            "resourceVersion": "7", "generation": 1, "uid": "u1",
            "managedFields": [{"manager": "flotilla"}]
        },
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate"},
            "template": {"spec": {"containers": [
                {"name": "api", "image": "api:1", "imagePullPolicy": "IfNotPresent",
                 "resources": {"requests": {"cpu": "500m"}}}
            ]}}
        },
        "status": {"replicas": 0}
    })
}

#[test]
fn server_defaults_and_status_changes_are_not_drift() {
    let reference = project(&desired(), &applied());
    let mut live = applied();
    live["status"] = json!({"replicas": 2, "readyReplicas": 2});
    live["metadata"]["resourceVersion"] = json!("9");
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = json!("/dev");
    live["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "1"});
    assert_eq!(
        changed_fields(&reference, &project(&desired(), &live)),
        Vec::<String>::new()
    );
}

#[test]
fn a_live_object_without_its_type_fields_is_not_drift() {
    // List and watch items may come without apiVersion and kind.
    let reference = project(&desired(), &applied());
    let mut live = applied();
    if let Some(map) = live.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    assert!(changed_fields(&reference, &project(&desired(), &live)).is_empty());
}

#[test]
fn normalised_values_are_compared_with_what_the_server_returned() {
    // The desired "0.5" and the applied "500m" are the same quantity: no drift.
    let reference = project(&desired(), &applied());
    assert_eq!(
        reference["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "500m"
    );
    assert!(changed_fields(&reference, &project(&desired(), &applied())).is_empty());
}

#[test]
fn a_changed_managed_field_is_drift_with_its_path() {
    let reference = project(&desired(), &applied());
    let mut live = applied();
    live["spec"]["replicas"] = json!(5);
    live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("api:evil");
    assert_eq!(
        changed_fields(&reference, &project(&desired(), &live)),
        vec![
            "spec.replicas changed".to_string(),
            "spec.template.spec.containers[name=api].image changed".to_string(),
        ]
    );
}

#[test]
fn a_removed_managed_label_is_drift() {
    let reference = project(&desired(), &applied());
    let mut live = applied();
    live["metadata"]["labels"] = json!({});
    assert_eq!(
        changed_fields(&reference, &project(&desired(), &live)),
        vec!["metadata.labels.app removed".to_string()]
    );
}

#[test]
fn list_items_are_matched_by_key_not_position() {
    let reference = project(&desired(), &applied());
    let mut live = applied();
    // Another manager injects a sidecar before ours: not a field Flotilla manages.
    live["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "sidecar", "image": "proxy:1"},
        {"name": "api", "image": "api:1", "imagePullPolicy": "IfNotPresent",
         "resources": {"requests": {"cpu": "500m"}}}
    ]);
    assert!(changed_fields(&reference, &project(&desired(), &live)).is_empty());
}

#[test]
fn a_deleted_list_item_is_drift() {
    let reference = project(&desired(), &applied());
    let mut live = applied();
    live["spec"]["template"]["spec"]["containers"] = json!([]);
    assert_eq!(
        changed_fields(&reference, &project(&desired(), &live)),
        vec!["spec.template.spec.containers changed".to_string()]
    );
}

#[test]
fn scalar_lists_are_compared_whole() {
    let desired = json!({"spec": {"args": ["a", "b"]}});
    let reference = project(&desired, &json!({"spec": {"args": ["a", "b"]}}));
    let live = project(&desired, &json!({"spec": {"args": ["a", "b", "c"]}}));
    assert_eq!(
        changed_fields(&reference, &live),
        vec!["spec.args changed".to_string()]
    );
}

#[test]
fn unkeyed_list_items_are_matched_by_position() {
    let desired = json!({"rules": [{"verbs": ["get"]}, {"verbs": ["list"]}]});
    let actual = json!({"rules": [{"verbs": ["get"], "x": 1}, {"verbs": ["list"]}]});
    let reference = project(&desired, &actual);
    let changed = json!({"rules": [{"verbs": ["get"]}, {"verbs": ["delete"]}]});
    assert_eq!(
        changed_fields(&reference, &project(&desired, &changed)),
        vec!["rules[1].verbs changed".to_string()]
    );
}
