//! What a bundle may touch (`allow`: namespaces, kinds, cluster-scoped objects; per bundle, with
//! stage defaults) is checked at render with the object's file and line, and carried in the
//! blob for the agent to check again; an object two bundles of one cluster render is refused
//! at render, not left for the agents to fight over.

#![allow(clippy::unwrap_used)]

use crate::support::fixture;

use fixture::{Fixture, cluster};
use flotilla_core::render::{RenderError, RenderedBundle, Tools, render_bundle, render_fleet};

const CONFIG: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n";

fn repo(bundles: &str, stage_extra: &str) -> Fixture {
    let repo = Fixture::new();
    repo.write(
        "flotilla.yaml",
        &format!(
            "apiVersion: flotilla.dev/v1\nkind: Fleet\nstages:\n  - name: all\n    track: {{branch: main}}\n{stage_extra}bundles:\n{bundles}"
        ),
    );
    repo
}

fn render(repo: &Fixture, bundle: &str) -> Result<RenderedBundle, RenderError> {
    render_bundle(
        &repo.load().unwrap(),
        bundle,
        &cluster("c1", &[]),
        &Tools::none(),
    )
}

#[test]
fn an_object_in_a_namespace_outside_allow_is_refused_at_its_line() {
    let repo = repo(
        "  - name: web\n    path: web\n    namespace: web\n    allow: {namespaces: [web]}\n",
        "",
    );
    repo.write(
        "web/objects.yaml",
        &format!(
            "{CONFIG}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: coredns, namespace: kube-system}}\n"
        ),
    );
    let error = render(&repo, "web").unwrap_err();
    assert!(matches!(error, RenderError::NotAllowed { .. }), "{error}");
    assert_eq!(
        error.location().unwrap().to_string(),
        "web/objects.yaml:6",
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("namespace `kube-system`"), "{message}");
    assert!(message.contains("allow.namespaces (web)"), "{message}");
}

#[test]
fn cluster_scoped_objects_and_unlisted_kinds_are_refused_but_own_namespaces_are_not() {
    let bundles = "  - name: web\n    path: web\n    namespace: web\n    allow: {namespaces: [web], kinds: [ConfigMap, Namespace, apps/*], clusterScoped: false}\n";
    let repo = repo(bundles, "");
    repo.write(
        "web/objects.yaml",
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: web}}\n---\n{CONFIG}"),
    );
    let rendered = render(&repo, "web").unwrap();
    assert_eq!(rendered.objects.len(), 2, "its own Namespace is allowed");
    assert_eq!(
        rendered.allow.namespaces.as_deref(),
        Some(&["web".to_owned()][..])
    );

    repo.write(
        "web/admin.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: pwn}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: ServiceAccount, name: default, namespace: web}]\n",
    );
    let error = render(&repo, "web").unwrap_err();
    assert!(
        error.to_string().contains(
            "kind `rbac.authorization.k8s.io/ClusterRoleBinding` is not in the bundle's allow.kinds"
        ),
        "{error}"
    );
    repo.remove_file("web/admin.yaml");

    repo.write(
        "web/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n",
    );
    let error = render(&repo, "web").unwrap_err();
    assert!(error.to_string().contains("kind `Secret`"), "{error}");
    assert_eq!(error.location().unwrap().to_string(), "web/secret.yaml:1");
    repo.remove_file("web/secret.yaml");

    // clusterScoped: false alone refuses a cluster-scoped kind the kinds list would allow.
    let repo = self::repo(
        "  - name: web\n    path: web\n    allow: {clusterScoped: false}\n",
        "",
    );
    repo.write(
        "web/role.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\nrules: []\n",
    );
    let error = render(&repo, "web").unwrap_err();
    assert!(
        error.to_string().contains("allow.clusterScoped: false"),
        "{error}"
    );
}

#[test]
fn a_stage_gives_defaults_that_a_bundle_overrides_field_by_field() {
    let repo = repo(
        "  - name: web\n    path: web\n  - name: infra\n    path: infra\n    allow: {namespaces: [kube-system]}\n",
        "    allow: {namespaces: [web], clusterScoped: false}\n",
    );
    repo.write(
        "web/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: kube-system}\n",
    );
    repo.write(
        "infra/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: kube-system}\n",
    );
    let error = render(&repo, "web").unwrap_err();
    assert!(
        error.to_string().contains("allow.namespaces (web)"),
        "{error}"
    );
    let infra = render(&repo, "infra").unwrap();
    assert_eq!(infra.allow.cluster_scoped, Some(false), "from the stage");
    assert_eq!(
        infra.allow.namespaces.as_deref(),
        Some(&["kube-system".to_owned()][..])
    );
}

#[test]
fn the_blob_carries_the_policy_and_an_unrestricted_one_changes_nothing() {
    let repo = repo(
        "  - name: open\n    path: open\n  - name: closed\n    path: closed\n    allow: {namespaces: ['*'], clusterScoped: false}\n",
        "",
    );
    repo.write("open/cm.yaml", CONFIG);
    repo.write("closed/cm.yaml", CONFIG);
    let open = render(&repo, "open").unwrap();
    assert!(
        !String::from_utf8(open.to_blob())
            .unwrap()
            .contains("\"allow\""),
        "no policy, no field: hashes of existing bundles stay as they were"
    );
    let closed = render(&repo, "closed").unwrap();
    let blob = closed.to_blob();
    let decoded = RenderedBundle::from_blob(&blob, &closed.hash()).unwrap();
    assert_eq!(decoded.allow, closed.allow);
    assert_eq!(decoded.allow.cluster_scoped, Some(false));
}

#[test]
fn an_object_two_bundles_render_for_one_cluster_is_refused_naming_both() {
    let repo = repo(
        "  - name: first\n    path: first\n  - name: second\n    path: second\n    namespace: default\n",
        "",
    );
    repo.write(
        "first/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared, namespace: default}\n",
    );
    repo.write(
        "second/other.yaml",
        &format!("{CONFIG}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: shared}}\n"),
    );
    let loaded = repo.load().unwrap();
    let fleet = render_fleet(
        &loaded,
        &[cluster("c1", &[]), cluster("c2", &[])],
        &Tools::none(),
    );
    for name in ["c1", "c2"] {
        let bundles = &fleet.clusters[name];
        assert!(bundles["first"].is_ok(), "the first owner keeps it");
        let error = bundles["second"].as_ref().unwrap_err();
        assert!(matches!(error, RenderError::OwnedTwice { .. }), "{error}");
        let message = error.to_string();
        assert!(message.starts_with("second/other.yaml:6"), "{message}");
        assert!(
            message.contains("bundle `first` (first/cm.yaml:1)"),
            "{message}"
        );
        assert!(message.contains(&format!("cluster `{name}`")), "{message}");
    }
}

#[test]
fn an_allow_kind_that_is_not_a_kind_is_a_spec_error_naming_the_field() {
    let repo = repo(
        "  - name: web\n    path: web\n    allow: {kinds: [deployments]}\n",
        "",
    );
    repo.write("web/cm.yaml", CONFIG);
    let errors = repo.load().unwrap_err();
    let shown = errors.to_string();
    assert!(shown.contains("bundles[0].allow.kinds[0]"), "{shown}");
    assert!(shown.contains("not a kind"), "{shown}");
}
