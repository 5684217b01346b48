use serde_json::json;

use super::{FieldSet, Scope, get_at, path_string, remove_at};
use crate::catalog::builtins;

fn deployments() -> std::sync::Arc<crate::catalog::ResourceType> {
    builtins()
        .into_iter()
        .find(|rt| rt.plural == "deployments")
        .unwrap_or_else(|| panic!("deployments are built in"))
}

#[test]
fn merge_keyed_items_use_k_elements_with_a_dot() {
    let rt = deployments();
    let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "x", "uid": "u", "labels": {"a": "b"}},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "i",
            "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}},
        "status": {"replicas": 1}});
    let set = FieldSet::of_object(&obj, &rt, Scope::Main);
    let v = set.to_json();
    let c = &v["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert_eq!(c["."], json!({}));
    assert_eq!(c["f:image"], json!({}));
    assert_eq!(
        c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]["f:protocol"],
        json!({})
    );
    assert_eq!(
        v["f:metadata"],
        json!({"f:labels": {"f:a": {}}}),
        "server-owned metadata is not tracked"
    );
    assert!(
        v.get("f:status").is_none(),
        "status is a subresource of deployments"
    );
    assert!(v.get("f:apiVersion").is_none());
}

#[test]
fn paths_read_remove_and_print_like_structured_merge_diff() {
    let mut obj =
        json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}});
    let path: Vec<String> = ["f:spec", "f:containers", "k:{\"name\":\"b\"}", "f:image"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(get_at(&obj, &path), Some(&json!("2")));
    assert_eq!(path_string(&path), ".spec.containers[name=\"b\"].image");
    let item: Vec<String> = ["f:spec", "f:containers", "k:{\"name\":\"a\"}", "."]
        .iter()
        .map(|s| s.to_string())
        .collect();
    remove_at(&mut obj, &item);
    assert_eq!(
        obj,
        json!({"spec": {"containers": [{"name": "b", "image": "2"}]}})
    );
}

#[test]
fn removing_the_last_member_prunes_its_parents() {
    let mut set = FieldSet::from_json(
        &json!({"f:spec": {"f:replicas": {}}, "f:metadata": {"f:labels": {"f:a": {}}}}),
    );
    let p: Vec<String> = vec!["f:spec".into(), "f:replicas".into()];
    assert!(set.contains(&p));
    set.remove(&p);
    assert!(!set.touches(&["f:spec".to_string()]));
    assert_eq!(
        set.leaves(),
        vec![vec![
            "f:metadata".to_string(),
            "f:labels".to_string(),
            "f:a".to_string()
        ]]
    );
}
