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

/// A Deployment as a real API server (v1.37) returns it after Flotilla applied it, the
/// Deployment controller reported on it, and `kubectl patch` added a port and an env var.
fn deployment_with_others_fields() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "t", "labels": {"app": "web"},
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "managedFields": [
                {"apiVersion": "apps/v1", "fieldsType": "FieldsV1", "manager": "flotilla",
                 "operation": "Apply", "time": "2026-12-06T16:40:53Z",
                 "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:selector": {}, "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                            ".": {}, "f:image": {}, "f:name": {},
                            "f:ports": {"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {
                                ".": {}, "f:containerPort": {}}}}}}}}}},
                {"apiVersion": "apps/v1", "fieldsType": "FieldsV1",
                 "manager": "kube-controller-manager", "operation": "Update",
                 "subresource": "status", "time": "2026-12-06T16:40:54Z",
                 "fieldsV1": {
                    "f:metadata": {"f:annotations": {
                        ".": {}, "f:deployment.kubernetes.io/revision": {}}},
                    "f:status": {"f:replicas": {}, "f:observedGeneration": {}}}},
                {"apiVersion": "apps/v1", "fieldsType": "FieldsV1", "manager": "kubectl-patch",
                 "operation": "Update", "time": "2026-12-06T16:40:54Z",
                 "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {
                        "f:env": {".": {}, "k:{\"name\":\"X\"}": {
                            ".": {}, "f:name": {}, "f:value": {}}},
                        "f:ports": {"k:{\"containerPort\":9090,\"protocol\":\"TCP\"}": {
                            ".": {}, "f:containerPort": {}, "f:protocol": {}}}}}}}}}},
                {"apiVersion": "apps/v1", "fieldsType": "FieldsV1", "manager": "kubectl",
                 "operation": "Update", "subresource": "scale", "time": "2026-12-06T16:41:00Z",
                 "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                {"apiVersion": "apps/v1", "fieldsType": "FieldsV1", "manager": "kubectl-label",
                 "operation": "Update", "time": "2026-12-06T16:41:01Z",
                 "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:team": {}}}}}
            ]
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web", "image": "nginx",
                    "env": [{"name": "X", "value": "1"}],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"},
                              {"containerPort": 9090, "protocol": "TCP"}]
                }]}
            }
        },
        "status": {"replicas": 3}
    })
}

fn desired_web() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "t", "labels": {"app": "web"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "web", "image": "nginx", "ports": [{"containerPort": 8080}]}
                ]}
            }
        }
    })
}

#[test]
fn fields_other_managers_added_are_found_with_their_manager() {
    let added = added_fields(&desired_web(), &deployment_with_others_fields());
    let found: Vec<(&str, &str)> = added
        .iter()
        .map(|a| (a.path.as_str(), a.manager.as_str()))
        .collect();
    // Not reported: the controller's revision annotation and status, the replica count
    // `kubectl scale` wrote while the bundle leaves it to an autoscaler, the port the bundle
    // sets (its `protocol` defaulted), and Flotilla's own fields.
    assert_eq!(
        found,
        [
            ("metadata.labels.team", "kubectl-label"),
            (
                "spec.template.spec.containers[name=web].env[name=X]",
                "kubectl-patch"
            ),
            (
                "spec.template.spec.containers[name=web].ports[containerPort=9090]",
                "kubectl-patch"
            ),
        ]
    );
    assert_eq!(
        describe_added(&added),
        "metadata.labels.team added by kubectl-label; \
         spec.template.spec.containers[name=web].env[name=X], \
         spec.template.spec.containers[name=web].ports[containerPort=9090] added by kubectl-patch; \
         not in Git and not removed by Flotilla — remove them or add them to the bundle"
    );
}

#[test]
fn an_added_field_the_bundle_starts_setting_is_no_longer_added() {
    let mut desired = desired_web();
    desired["metadata"]["labels"]["team"] = json!("payments");
    desired["spec"]["template"]["spec"]["containers"][0]["ports"] =
        json!([{"containerPort": 8080}, {"containerPort": 9090}]);
    desired["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "X", "value": "2"}]);
    assert_eq!(
        added_fields(&desired, &deployment_with_others_fields()),
        Vec::<AddedField>::new()
    );
}

#[test]
fn a_single_added_label_is_named_with_its_manager() {
    let live = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "web",
            "labels": {"team": "payments"}, "annotations": {"note": "x"},
            "managedFields": [
                {"manager": "flotilla", "operation": "Apply", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:data": {"f:a": {}}}},
                {"manager": "kubectl-label", "operation": "Update", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:team": {}}}}}
            ]},
        "data": {"a": "1"}
    });
    let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "web"}, "data": {"a": "1"}});
    let added = added_fields(&desired, &live);
    assert_eq!(
        describe_added(&added),
        "metadata.labels.team added by kubectl-label; \
         not in Git and not removed by Flotilla — remove it or add it to the bundle"
    );
    assert_eq!(describe_added(&[]), "");
}

#[test]
fn finalizers_and_owner_references_controllers_add_are_not_drift() {
    let desired = json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer"}});
    let live = json!({
        "metadata": {
            "name": "web",
            "finalizers": ["service.k8s.aws/resources"],
            "ownerReferences": [{"uid": "1"}],
            "managedFields": [
                {"manager": "aws-load-balancer-controller", "operation": "Update",
                 "fieldsV1": {"f:metadata": {
                    "f:finalizers": {".": {}, "v:\"service.k8s.aws/resources\"": {}},
                    "f:ownerReferences": {".": {}, "k:{\"uid\":\"1\"}": {}},
                    "f:labels": {"f:extra": {}}}}},
                {"manager": "k3s", "operation": "Update",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}}}
            ]
        },
        "spec": {"type": "LoadBalancer"}
    });
    let added = added_fields(&desired, &live);
    assert_eq!(
        added,
        vec![AddedField {
            path: "metadata.labels.extra".into(),
            manager: "aws-load-balancer-controller".into()
        }]
    );
}
