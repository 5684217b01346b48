use serde_json::json;

use super::*;

fn schemas() -> Schemas {
    shipped("1.37").expect("the shipped 1.37 schemas load")
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app.kubernetes.io/name": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web",
                    "image": "nginx:1.27",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                    "livenessProbe": {"httpGet": {"path": "/", "port": "http"}}
                }]}
            }
        }
    })
}

fn messages(verdict: Verdict) -> Vec<String> {
    match verdict {
        Verdict::Invalid(violations) => violations.iter().map(ToString::to_string).collect(),
        other => panic!("expected violations, got {other:?}"),
    }
}

#[test]
fn a_valid_deployment_passes() {
    assert_eq!(
        schemas().validate(&deployment(), &CustomResources::default()),
        Verdict::Valid
    );
}

#[test]
fn wrong_types_and_unknown_fields_are_refused_with_their_paths() {
    let mut object = deployment();
    object["spec"]["replicas"] = json!("three");
    object["spec"]["replicaz"] = json!(3);
    object["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = json!("80");
    let found = messages(schemas().validate(&object, &CustomResources::default()));
    assert_eq!(
        found,
        vec![
            "spec.replicas: must be an integer, not the string \"three\"",
            "spec.replicaz: unknown field; the API server refuses it",
            "spec.template.spec.containers[0].ports[0].containerPort: must be an integer, not \
             the string \"80\"",
        ]
    );
}

#[test]
fn missing_required_fields_names_labels_quantities_and_base64() {
    let mut object = deployment();
    object["metadata"]["name"] = json!("Web_1");
    object["metadata"]["labels"]["tier"] = json!("front end");
    object["spec"].as_object_mut().unwrap().remove("selector");
    object["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    object["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] =
        json!("1 core");
    let found = messages(schemas().validate(&object, &CustomResources::default()));
    assert!(
        found
            .iter()
            .any(|m| m.starts_with("metadata.name: invalid name `Web_1`")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|m| m.starts_with("metadata.labels.tier: invalid label value `front end`")),
        "{found:?}"
    );
    assert!(
        found.contains(&"spec.selector: required field is missing".to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(
            &"spec.template.spec.containers[0].name: required field is missing".to_owned()
        ),
        "{found:?}"
    );
    assert!(
        found.iter().any(|m| m.starts_with(
            "spec.template.spec.containers[0].resources.limits.cpu: `1 core` is not a quantity"
        )),
        "{found:?}"
    );

    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"password": "not base64!"}});
    assert_eq!(
        messages(schemas().validate(&secret, &CustomResources::default())),
        vec!["data.password: must be base64-encoded (use `stringData` for plain text)"]
    );
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web_1"},
        "spec": {"ports": [{"port": 80, "targetPort": true}]}});
    let found = messages(schemas().validate(&service, &CustomResources::default()));
    assert!(
        found
            .iter()
            .any(|m| m.starts_with("metadata.name: invalid name `web_1`")),
        "{found:?}"
    );
    assert!(
        found.contains(
            &"spec.ports[0].targetPort: must be an integer or a string, not the boolean true"
                .to_owned()
        ),
        "{found:?}"
    );
}

#[test]
fn a_version_the_group_does_not_serve_names_the_one_it_does() {
    let mut object = deployment();
    object["apiVersion"] = json!("apps/v1beta1");
    assert_eq!(
        messages(schemas().validate(&object, &CustomResources::default())),
        vec![
            "apiVersion: Kubernetes 1.37 does not serve Deployment as `apps/v1beta1`; use apps/v1"
        ]
    );
    let typo = json!({"apiVersion": "v1", "kind": "ConfigMapp", "metadata": {"name": "x"}});
    assert!(
        messages(schemas().validate(&typo, &CustomResources::default()))[0]
            .starts_with("apiVersion: the group `core` has no kind ConfigMapp")
    );
}

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [
                {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "required": ["size"],
                        "properties": {
                            "size": {"type": "integer"},
                            "port": {"x-kubernetes-int-or-string": true},
                            "mode": {"type": "string", "enum": ["fast", "safe"]},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                        }
                    }}
                }}},
                {"name": "v0", "served": false, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}}
            ]
        }
    })
}

#[test]
fn custom_resources_are_checked_against_the_repositorys_definitions() {
    let definition = crd();
    assert_eq!(
        schemas().validate(&definition, &CustomResources::default()),
        Verdict::Valid,
        "the CRD itself is a valid built-in object"
    );
    let crds = CustomResources::from_objects([&definition]);
    let good = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "labels": {"a": "b"}},
        "spec": {"size": 2, "port": "http", "mode": "safe", "extra": {"anything": [1, 2]}}});
    assert_eq!(schemas().validate(&good, &crds), Verdict::Valid);
    let bad = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "labels": {"a": "b c"}},
        "spec": {"sise": 2, "port": 1.5, "mode": "quick"}, "status2": {}});
    let found = messages(schemas().validate(&bad, &crds));
    assert_eq!(
        found,
        vec![
            "metadata.labels.a: invalid label value `b c`: a valid label value must be an empty \
             string or consist of alphanumeric characters, '-', '_' or '.', and must start and \
             end with an alphanumeric character",
            "spec.mode: unsupported value \"quick\"; supported values: \"fast\", \"safe\"",
            "spec.port: must be an integer or a string, not the number 1.5",
            "spec.sise: unknown field; the API server refuses it",
            "spec.size: required field is missing",
            "status2: unknown field; the CustomResourceDefinition does not declare it",
        ]
    );
    let old = json!({"apiVersion": "example.com/v0", "kind": "Widget", "metadata": {"name": "w"}});
    assert!(messages(schemas().validate(&old, &crds))[0].contains("is not served"));
    let unknown = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "c"}});
    assert!(matches!(
        schemas().validate(&unknown, &crds),
        Verdict::Unchecked(_)
    ));
}

#[test]
fn a_crd_name_must_be_plural_dot_group() {
    let mut definition = crd();
    definition["metadata"]["name"] = json!("widget.example.com");
    assert_eq!(
        messages(schemas().validate(&definition, &CustomResources::default())),
        vec!["metadata.name: must be spec.names.plural+\".\"+spec.group: `widgets.example.com`"]
    );
}

#[test]
fn both_shipped_versions_load_and_differ() {
    for version in SHIPPED_VERSIONS {
        let schemas = shipped(version).expect("shipped schemas load");
        assert_eq!(schemas.version(), version);
        assert!(
            schemas.kinds.len() > 100,
            "{version}: {} kinds",
            schemas.kinds.len()
        );
    }
    assert!(
        shipped("1.20")
            .unwrap_err()
            .to_string()
            .contains("shipped: 1.36, 1.37")
    );
}

#[test]
fn compaction_keeps_properties_named_like_documentation() {
    let schema = json!({"description": "x", "properties": {"description": {"type": "string", "description": "y"}}});
    assert_eq!(
        strip_documentation(&schema),
        json!({"properties": {"description": {"type": "string"}}})
    );
}

#[test]
fn a_path_is_traced_back_to_its_line() {
    let text = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: a
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: three
  template:
    spec:
      containers:
        - name: web
          ports:
            - containerPort: 80
            - containerPort: \"81\"
";
    let path = |parts: &[&str]| {
        FieldPath(
            parts
                .iter()
                .map(|p| match p.parse::<usize>() {
                    Ok(index) => Segment::Index(index),
                    Err(_) => Segment::Key((*p).to_owned()),
                })
                .collect(),
        )
    };
    assert_eq!(locate(text, 6, &path(&["spec", "replicas"])), Some(11));
    assert_eq!(
        locate(
            text,
            6,
            &path(&[
                "spec",
                "template",
                "spec",
                "containers",
                "0",
                "ports",
                "1",
                "containerPort"
            ])
        ),
        Some(18)
    );
    // A field the file does not write is placed at its nearest written parent.
    assert_eq!(locate(text, 6, &path(&["spec", "selector"])), Some(10));
    assert_eq!(locate(text, 1, &path(&["metadata", "name"])), Some(4));
    assert_eq!(locate(text, 3, &path(&["spec"])), None);
}

#[test]
fn what_the_api_server_accepts_is_not_refused() {
    let schemas = schemas();
    let none = CustomResources::default();
    // Go's base64 decoder skips line breaks (base64 wraps at 76 columns).
    let wrapped = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls"},
        "data": {"tls.crt": "c2Vj\ncmV0\n"}});
    assert_eq!(schemas.validate(&wrapped, &none), Verdict::Valid);
    // Names the server judges its own way.
    let csr = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "node:csr:1"},
        "spec": {"request": "c2VjcmV0", "signerName": "example.com/signer", "usages": ["digital signature"]}});
    assert_eq!(schemas.validate(&csr, &none), Verdict::Valid);

    let mut definition = crd();
    definition["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] = json!({
        "type": "object",
        "required": ["size", "replicas", "note"],
        "properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": 10},
            "replicas": {"type": "integer", "default": 1},
            "note": {"type": "string", "nullable": true, "maxLength": 5},
            "limits": {
                "type": "object",
                "properties": {"cpu": {"type": "integer"}, "mem": {"type": "integer"}},
                "allOf": [{"properties": {"cpu": {"minimum": 0}}}]
            },
            "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}
        }
    });
    let crds = CustomResources::from_objects([&definition]);
    let good = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 1, "note": null, "limits": {"cpu": 1, "mem": 2},
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}},
            "tags": ["a"]}});
    assert_eq!(schemas.validate(&good, &crds), Verdict::Valid);
    let bad = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 11, "note": "too long", "limits": {"cpu": -1}, "tags": ["a", "b", "c"]}});
    assert_eq!(
        messages(schemas.validate(&bad, &crds)),
        vec![
            "spec.limits.cpu: -1 is below the minimum 0",
            "spec.note: has 8 characters; at most 5 are allowed",
            "spec.size: 11 is above the maximum 10",
            "spec.tags: has 3 items; at most 2 are allowed",
        ]
    );
}

#[test]
fn every_version_of_a_crd_across_renders_is_known() {
    let older = crd();
    let mut newer = crd();
    newer["spec"]["versions"] = json!([{"name": "v2", "served": true, "storage": true,
        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]);
    let crds = CustomResources::from_objects([&older, &newer]);
    let schemas = schemas();
    for version in ["v1", "v2"] {
        let widget = json!({"apiVersion": format!("example.com/{version}"), "kind": "Widget",
            "metadata": {"name": "w"}, "spec": {"size": 1}});
        assert_eq!(
            schemas.validate(&widget, &crds),
            Verdict::Valid,
            "{version}"
        );
    }
}
