//! What makes a rendered object: identity fields are required, an object appears once per
//! bundle, lists are flattened, and cluster-scoped kinds never carry a namespace.

#![allow(clippy::unwrap_used)]

use crate::support::fixture;

use fixture::{Fixture, cluster};
use flotilla_core::render::{RenderError, RenderedBundle, Tools, render_bundle};

fn render(files: &[(&str, &str)]) -> Result<RenderedBundle, RenderError> {
    let repo = Fixture::new();
    repo.spec("  - name: app\n    path: app\n    namespace: app\n");
    for (name, text) in files {
        repo.write(&format!("app/{name}"), text);
    }
    render_bundle(
        &repo.load().unwrap(),
        "app",
        &cluster("c", &[]),
        &Tools::none(),
    )
}

#[test]
fn object_without_kind_is_an_error_at_its_document() {
    let error = render(&[("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nmetadata: {name: b}\n")])
        .unwrap_err();
    assert!(
        matches!(error, RenderError::InvalidObject { .. }),
        "{error}"
    );
    assert_eq!(error.to_string(), "app/a.yaml:5: `kind` is missing");
}

#[test]
fn generate_name_is_refused_with_the_reason() {
    let error = render(&[(
        "a.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: run-}\n",
    )])
    .unwrap_err();
    assert!(
        error.to_string().contains("generateName` is not supported"),
        "{error}"
    );
}

#[test]
fn the_same_object_twice_is_an_error_naming_both_places() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
    let error = render(&[("one.yaml", cm), ("two.yaml", &format!("# again\n{cm}"))]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "app/two.yaml:2: v1 ConfigMap app/a is already defined at app/one.yaml:1; an object may appear once per bundle"
    );
}

#[test]
fn lists_are_flattened_and_cluster_scoped_objects_lose_their_namespace() {
    let list = "apiVersion: v1\nkind: List\nitems:\n  - {apiVersion: v1, kind: Namespace, metadata: {name: app, namespace: stray}}\n  - {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: reader}}\n  - {apiVersion: v1, kind: ServiceAccount, metadata: {name: reader}}\n";
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec:\n  group: example.com\n  scope: Cluster\n  names: {kind: Widget, plural: widgets}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\napiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\n";
    let bundle = render(&[("list.yaml", list), ("crd.yaml", crd)]).unwrap();
    let ids: Vec<String> = bundle.objects.iter().map(|o| o.id.to_string()).collect();
    assert_eq!(
        ids,
        [
            "v1 Namespace app",
            "v1 ServiceAccount app/reader",
            "apiextensions.k8s.io/v1 CustomResourceDefinition widgets.example.com",
            "example.com/v1 Gadget app/g",
            "example.com/v1 Widget w",
            "rbac.authorization.k8s.io/v1 ClusterRole reader",
        ]
    );
    assert!(
        bundle.objects[0].object["metadata"]
            .get("namespace")
            .is_none()
    );
}
