//! A bundle's manifests rendered for a cluster, from arbitrary text: substitution, multi-document
//! YAML under the parser's budgets, `List` flattening, overlay merging, namespaces and the
//! object and size limits. The input is the bundle's base manifest file; after a NUL byte
//! comes the overlay's manifest file. Every input must render or fail with an error.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use flotilla_core::render::Tools;
use flotilla_core::{Cluster, Limits, Repository, render_bundle};
use libfuzzer_sys::fuzz_target;

const FLEET: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: prod
    track: {branch: main}
bundles:
  - name: web
    path: web
    namespace: web
    variables: {replicas: 1, image: nginx}
    overlays:
      - name: eu
        clusterSelector: {matchLabels: {region: eu}}
        path: overlays/eu
        variables: {replicas: 3}
";

struct Fixture {
    _dir: tempfile::TempDir,
    repo: Repository,
    base: PathBuf,
    overlay: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = dir.path().join("web/manifest.yaml");
        let overlay = dir.path().join("web/overlays/eu/manifest.yaml");
        std::fs::create_dir_all(overlay.parent().expect("parent")).expect("bundle dirs");
        std::fs::write(dir.path().join("flotilla.yaml"), FLEET).expect("flotilla.yaml");
        std::fs::write(&base, "").expect("base");
        std::fs::write(&overlay, "").expect("overlay");
        let repo = Repository::load(dir.path(), Limits::default()).expect("fixture repository");
        Fixture {
            _dir: dir,
            repo,
            base,
            overlay,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let (base, overlay) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    std::fs::write(&fixture.base, base).expect("write base");
    std::fs::write(&fixture.overlay, overlay).expect("write overlay");
    // No kustomize or helm: the fixture has no kustomization or chart, and none may be run.
    let tools = Tools::none();
    let eu = Cluster::new("prod-eu-1", [("region", "eu"), ("env", "prod")]);
    let us = Cluster::new("prod-us-1", [("region", "us")]);
    for cluster in [&eu, &us] {
        if let Ok(bundle) = render_bundle(&fixture.repo, "web", cluster, &tools) {
            let blob = bundle.to_blob();
            assert!(blob.len() <= Limits::default().max_rendered_bytes);
        }
    }
});
