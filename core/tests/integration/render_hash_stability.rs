//! The content hash depends on content only: not on key order, formatting, comments or file
//! layout; it changes when content changes; and its value is pinned, so the hub and agents
//! of different builds agree on it.

#![allow(clippy::unwrap_used)]

use crate::support::fixture;

use fixture::{Fixture, cluster};
use flotilla_core::ContentHash;
use flotilla_core::render::{BlobError, RenderedBundle, Tools, render_bundle};

fn hash_of(files: &[(&str, &str)]) -> (ContentHash, RenderedBundle) {
    let repo = Fixture::new();
    repo.spec("  - name: app\n    path: app\n    namespace: app\n");
    for (name, text) in files {
        repo.write(&format!("app/{name}"), text);
    }
    let bundle = render_bundle(
        &repo.load().unwrap(),
        "app",
        &cluster("c", &[]),
        &Tools::none(),
    )
    .unwrap();
    (bundle.hash(), bundle)
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n";
const SERVICE: &str =
    "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n";

#[test]
fn hash_ignores_key_order_formatting_comments_and_file_layout() {
    let (a, _) = hash_of(&[("deployment.yaml", DEPLOYMENT), ("service.yaml", SERVICE)]);
    let reordered = "# the web service\nkind: Service\nspec:\n  ports:\n    - port: 80\nmetadata: {name: web, namespace: app}\napiVersion: v1\n";
    let (b, _) = hash_of(&[("all.yaml", &format!("{reordered}---\n{DEPLOYMENT}"))]);
    let json = r#"{"spec":{"selector":{"matchLabels":{"app":"web"}},"replicas":2},"metadata":{"name":"web"},"kind":"Deployment","apiVersion":"apps/v1"}"#;
    let (c, _) = hash_of(&[("z-service.yml", SERVICE), ("a/deployment.json", json)]);
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn hash_changes_with_content() {
    let (a, _) = hash_of(&[("deployment.yaml", DEPLOYMENT)]);
    let (b, _) = hash_of(&[(
        "deployment.yaml",
        &DEPLOYMENT.replace("replicas: 2", "replicas: 3"),
    )]);
    assert_ne!(a, b);
}

#[test]
fn hash_value_is_pinned() {
    let (hash, bundle) = hash_of(&[("deployment.yaml", DEPLOYMENT), ("service.yaml", SERVICE)]);
    let blob = String::from_utf8(bundle.to_blob()).unwrap();
    assert_eq!(
        blob,
        concat!(
            r#"{"apiVersion":"flotilla.dev/v1","kind":"RenderedBundle","bundle":"app","drift":"correct","dependsOn":[],"objects":["#,
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"app"},"spec":{"ports":[{"port":80}]}},"#,
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"app"},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}}}}"#,
            "]}"
        )
    );
    assert_eq!(hash, ContentHash::of(blob.as_bytes()));
    // Changing this value changes every revision's name: hub and agents of different
    // versions would then disagree on what a cluster holds.
    assert_eq!(
        hash.to_string(),
        "d567ce29eaaf10a3c8f9c2c291dd202285c14f292aa118952ba12d31711625de"
    );
}

#[test]
fn blob_round_trips_and_a_tampered_blob_is_refused() {
    let (hash, bundle) = hash_of(&[("deployment.yaml", DEPLOYMENT), ("service.yaml", SERVICE)]);
    let blob = bundle.to_blob();
    let decoded = RenderedBundle::from_blob(&blob, &hash).unwrap();
    assert_eq!(decoded, bundle);
    let mut tampered = blob.clone();
    let index = tampered.iter().position(|b| *b == b'2').unwrap();
    tampered[index] = b'9';
    assert!(matches!(
        RenderedBundle::from_blob(&tampered, &hash),
        Err(BlobError::HashMismatch { .. })
    ));
}
