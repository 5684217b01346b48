use kube::discovery::ApiResource;
use serde_json::{Value, json};

use super::*;
use crate::bundle::DriftMode;
use crate::object::{BUNDLE_LABEL, MANAGED_BY_LABEL};

/// What a small cluster serves.
fn lookup(api_version: &str, kind: &str) -> Option<Kind> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let (plural, namespaced) = match (api_version, kind) {
        ("v1", "ConfigMap") => ("configmaps", true),
        ("v1", "Namespace") => ("namespaces", false),
        ("apps/v1", "Deployment") => ("deployments", true),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => ("clusterroles", false),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            ("customresourcedefinitions", false)
        }
        _ => return None,
    };
    Some(Kind {
        resource: ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            plural: plural.into(),
        },
        namespaced,
    })
}

fn revision(objects: Vec<Value>) -> BundleRevision {
    BundleRevision {
        allow: Default::default(),
        name: "web".into(),
        revision: "r1".into(),
        content_hash: "h".into(),
        namespace: "web-ns".into(),
        drift: DriftMode::Correct,
        objects,
    }
}

fn config_map(name: &str, namespace: Option<&str>) -> Value {
    let mut object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}});
    if let Some(namespace) = namespace {
        object["metadata"]["namespace"] = json!(namespace);
    }
    object
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"kind": "Widget", "plural": "widgets"},
                 "versions": [{"name": "v1", "served": true, "storage": true}]}
    })
}

#[test]
fn namespaced_objects_get_the_default_namespace_and_ownership_labels() {
    let plan = plan(
        &revision(vec![config_map("a", None), config_map("b", Some("other"))]),
        lookup,
    )
    .expect("plans");
    let a = plan
        .objects
        .iter()
        .find(|o| o.id.name == "a")
        .expect("planned");
    assert_eq!(a.id.namespace.as_deref(), Some("web-ns"));
    assert_eq!(a.body["metadata"]["namespace"], "web-ns");
    assert_eq!(a.body["metadata"]["labels"][BUNDLE_LABEL], "web");
    assert_eq!(a.body["metadata"]["labels"][MANAGED_BY_LABEL], "flotilla");
    let b = plan
        .objects
        .iter()
        .find(|o| o.id.name == "b")
        .expect("planned");
    assert_eq!(b.id.namespace.as_deref(), Some("other"));
}

#[test]
fn cluster_scoped_objects_lose_a_stray_namespace() {
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                      "metadata": {"name": "reader", "namespace": "x"}});
    let plan = plan(&revision(vec![role]), lookup).expect("plans");
    assert_eq!(plan.objects[0].id.namespace, None);
    assert!(plan.objects[0].body["metadata"].get("namespace").is_none());
}

#[test]
fn server_owned_fields_are_removed() {
    let mut object = config_map("a", None);
    object["metadata"]["resourceVersion"] = json!("12");
    object["metadata"]["uid"] = json!("u");
    object["status"] = json!({"x": 1});
    let plan = plan(&revision(vec![object]), lookup).expect("plans");
    let body = &plan.objects[0].body;
    assert!(body.get("status").is_none());
    assert!(body["metadata"].get("resourceVersion").is_none());
    assert!(body["metadata"].get("uid").is_none());
}

#[test]
fn objects_are_ordered_by_tier() {
    let deploy =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"}});
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web-ns"}});
    let plan = plan(
        &revision(vec![deploy, config_map("a", None), ns, widget_crd()]),
        lookup,
    )
    .expect("plans");
    let kinds: Vec<&str> = plan.objects.iter().map(|o| o.id.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "CustomResourceDefinition",
            "Namespace",
            "ConfigMap",
            "Deployment"
        ]
    );
}

#[test]
fn duplicates_are_an_error_naming_both_positions() {
    // The second copy lands in the same namespace through the default.
    let errors = plan(
        &revision(vec![config_map("a", Some("web-ns")), config_map("a", None)]),
        lookup,
    )
    .expect_err("duplicate");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].object, "ConfigMap web-ns/a");
    assert!(
        errors[0].message.contains("#1 and #2"),
        "{}",
        errors[0].message
    );
}

#[test]
fn every_malformed_object_is_reported() {
    let errors = plan(
        &revision(vec![
            json!("text"),
            json!({"kind": "ConfigMap", "metadata": {"name": "a"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "a-"}}),
            json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}),
        ]),
        lookup,
    )
    .expect_err("malformed");
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 4, "{text:?}");
    assert!(
        text[0].starts_with("object #1: is not a mapping"),
        "{}",
        text[0]
    );
    assert!(text[1].contains("no apiVersion"), "{}", text[1]);
    assert!(text[2].contains("generateName"), "{}", text[2]);
    assert!(
        text[3].contains("does not serve kind Gadget in example.com/v1"),
        "{}",
        text[3]
    );
}

#[test]
fn custom_resources_of_a_crd_in_the_bundle_wait_for_it() {
    let widget =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    let plan = plan(&revision(vec![widget, widget_crd()]), lookup).expect("plans");
    let widget = plan
        .objects
        .iter()
        .find(|o| o.id.kind == "Widget")
        .expect("planned");
    assert!(widget.awaits_crd);
    assert_eq!(widget.kind.resource.plural, "widgets");
    assert_eq!(widget.id.namespace.as_deref(), Some("web-ns"));
    assert_eq!(widget.tier, Tier::Rest);
    assert!(!plan.objects[0].awaits_crd);
}

#[test]
fn kinds_named_lists_each_pair_once() {
    let kinds = kinds_named(&revision(vec![
        config_map("a", None),
        config_map("b", None),
        widget_crd(),
    ]));
    assert_eq!(
        kinds,
        [
            (
                "apiextensions.k8s.io/v1".to_string(),
                "CustomResourceDefinition".to_string()
            ),
            ("v1".to_string(), "ConfigMap".to_string()),
        ]
    );
}

#[test]
fn objects_outside_the_bundles_allow_are_refused_before_anything_is_written() {
    let mut revision = revision(vec![
        config_map("ok", None),
        config_map("coredns", Some("kube-system")),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "admin-ish"}, "rules": []}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web-ns"}}),
    ]);
    revision.allow = flotilla_core::Allow {
        namespaces: Some(vec!["web-ns".into()]),
        kinds: None,
        cluster_scoped: Some(false),
    };
    let errors = plan(&revision, lookup).expect_err("refused");
    let messages: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].contains("coredns") && messages[0].contains("namespace `kube-system`"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("admin-ish") && messages[1].contains("allow.clusterScoped: false"),
        "{messages:?}"
    );

    // The same objects without a policy plan as before.
    revision.allow = flotilla_core::Allow::default();
    assert!(plan(&revision, lookup).is_ok());
}
