//! kubectl with CustomResourceDefinitions: the CRD registers its resource, and a custom
//! resource can then be applied, listed and fetched.

use crate::support::harness as support;

use support::{Kubectl, kubectl_or_skip, start};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              color: {type: string}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_crd_then_custom_resource() {
    if !kubectl_or_skip("kubectl_crd_then_custom_resource") {
        return;
    }
    let sim = start(1).await;
    let k = Kubectl::new(&sim);
    let crd = k.file("crd.yaml", CRD);
    k.ok(
        "sim-0",
        &[
            "apply",
            "--server-side",
            "-f",
            crd.to_str().unwrap_or_default(),
        ],
    )
    .await;
    let out = k
        .ok(
            "sim-0",
            &[
                "wait",
                "--for=condition=Established",
                "crd/widgets.example.com",
                "--timeout=10s",
            ],
        )
        .await;
    assert!(out.contains("condition met"), "{out}");

    let cr = k.file("w.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3, color: red}\n");
    k.ok(
        "sim-0",
        &[
            "apply",
            "--server-side",
            "-f",
            cr.to_str().unwrap_or_default(),
        ],
    )
    .await;
    let obj = k
        .json("sim-0", &["get", "widget", "w1", "-o", "json"])
        .await;
    assert_eq!(obj["apiVersion"], "example.com/v1");
    assert_eq!(obj["kind"], "Widget");
    assert_eq!(obj["spec"]["size"], 3);
    let table = k.ok("sim-0", &["get", "wd"]).await;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, vec!["NAME", "SIZE", "COLOR"], "{table}");
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(row, vec!["w1", "3", "red"], "{table}");
    let resources = k
        .ok("sim-0", &["api-resources", "--api-group=example.com"])
        .await;
    assert!(
        resources.contains("widgets") && resources.contains("Widget"),
        "{resources}"
    );

    k.ok("sim-0", &["delete", "crd", "widgets.example.com"])
        .await;
    let out = k.run("sim-0", &["get", "widgets.example.com"]).await;
    assert!(
        !out.status.success(),
        "widgets still served after the CRD was deleted"
    );
    sim.shutdown().await;
}
