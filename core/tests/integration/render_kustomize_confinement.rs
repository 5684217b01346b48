//! Rendering depends on the commit alone: every kustomize field that loads a file or a URL is
//! checked before kustomize runs: a remote reference or a path leaving the repository is an
//! error with file and line. (That kustomize itself runs without network is proven by the
//! sandbox's own tests, core/src/render/sandbox/tests.rs.)

#![allow(clippy::unwrap_used)]

use crate::support::fixture;

use fixture::{Fixture, cluster, kustomize_or_skip};
use flotilla_core::render::{Kustomize, RenderError, Tools, render_bundle};

const CONFIG_MAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {a: b}\n";

/// A kustomization with one loading field, and where (line:column) its reference is written.
struct Case {
    field: &'static str,
    kustomization: &'static str,
    at: &'static str,
}

const URL: &str = "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/role";

fn cases() -> Vec<Case> {
    vec![
        Case {
            field: "configMapGenerator files key=URL",
            kustomization: "resources: [cm.yaml]\nconfigMapGenerator:\n- name: loot\n  options: {disableNameSuffixHash: true}\n  files: [\"creds=URL\"]\n",
            at: "5:",
        },
        Case {
            field: "configMapGenerator envs",
            kustomization: "resources: [cm.yaml]\nconfigMapGenerator:\n- name: loot\n  envs:\n  - URL\n",
            at: "5:",
        },
        Case {
            field: "secretGenerator files",
            kustomization: "resources: [cm.yaml]\nsecretGenerator:\n- name: loot\n  files:\n  - URL\n",
            at: "5:",
        },
        Case {
            field: "secretGenerator env",
            kustomization: "resources: [cm.yaml]\nsecretGenerator:\n- name: loot\n  env: URL\n",
            at: "4:",
        },
        Case {
            field: "patches path",
            kustomization: "resources: [cm.yaml]\npatches:\n- path: URL\n",
            at: "3:",
        },
        Case {
            field: "patchesStrategicMerge",
            kustomization: "resources: [cm.yaml]\npatchesStrategicMerge:\n- URL\n",
            at: "3:",
        },
        Case {
            field: "patchesJson6902 path",
            kustomization: "resources: [cm.yaml]\npatchesJson6902:\n- target: {version: v1, kind: ConfigMap, name: app}\n  path: URL\n",
            at: "4:",
        },
        Case {
            field: "openapi path",
            kustomization: "resources: [cm.yaml]\nopenapi:\n  path: URL\n",
            at: "3:",
        },
        Case {
            field: "crds",
            kustomization: "resources: [cm.yaml]\ncrds:\n- URL\n",
            at: "3:",
        },
        Case {
            field: "configurations",
            kustomization: "resources: [cm.yaml]\nconfigurations:\n- URL\n",
            at: "3:",
        },
        Case {
            field: "replacements path",
            kustomization: "resources: [cm.yaml]\nreplacements:\n- path: URL\n",
            at: "3:",
        },
        Case {
            field: "transformers",
            kustomization: "resources: [cm.yaml]\ntransformers:\n- URL\n",
            at: "3:",
        },
        Case {
            field: "generators",
            kustomization: "resources: [cm.yaml]\ngenerators:\n- URL\n",
            at: "3:",
        },
        Case {
            field: "validators",
            kustomization: "resources: [cm.yaml]\nvalidators:\n- URL\n",
            at: "3:",
        },
        Case {
            field: "inline transformer configuration",
            kustomization: "resources: [cm.yaml]\ntransformers:\n- |-\n  apiVersion: builtin\n  kind: PatchTransformer\n  metadata: {name: p}\n  path: URL\n",
            at: "7:",
        },
    ]
}

fn render(repo: &Fixture) -> Result<(), RenderError> {
    // The checks run before any tool is needed: a tool that does not exist proves it.
    render_bundle(
        &repo.load().unwrap(),
        "app",
        &cluster("a", &[]),
        &Tools::none().with_kustomize(Kustomize::Kubectl("/nonexistent/kubectl".into())),
    )
    .map(|_| ())
}

#[test]
fn every_loading_field_refuses_a_remote_reference_with_its_line() {
    for case in cases() {
        let repo = Fixture::new();
        repo.spec("  - name: app\n    path: app\n");
        repo.write("app/cm.yaml", CONFIG_MAP);
        repo.write(
            "app/kustomization.yaml",
            &case.kustomization.replace("URL", URL),
        );
        let error = render(&repo).expect_err(case.field);
        assert!(
            matches!(&error, RenderError::RemoteResource { resource, .. } if resource == URL),
            "{}: {error}",
            case.field
        );
        let location = error.location().unwrap().to_string();
        assert!(
            location.starts_with(&format!("app/kustomization.yaml:{}", case.at)),
            "{}: located at {location}",
            case.field
        );
        assert!(error.to_string().contains("vendor it into the repository"));
    }
}

#[test]
fn every_loading_field_refuses_a_path_leaving_the_repository() {
    for case in cases() {
        let repo = Fixture::new();
        repo.spec("  - name: app\n    path: app\n");
        repo.write("app/cm.yaml", CONFIG_MAP);
        repo.write(
            "app/kustomization.yaml",
            &case
                .kustomization
                .replace("URL", "../../../../../../etc/hostname"),
        );
        let error = render(&repo).expect_err(case.field);
        assert!(
            matches!(&error, RenderError::Escape { .. }),
            "{}: {error}",
            case.field
        );
    }
}

#[test]
fn a_plugin_configuration_file_naming_a_url_is_refused_at_its_line() {
    let repo = Fixture::new();
    repo.spec("  - name: app\n    path: app\n");
    repo.write("app/cm.yaml", CONFIG_MAP);
    repo.write(
        "app/kustomization.yaml",
        "resources: [cm.yaml]\ntransformers: [patch.yaml]\n",
    );
    repo.write(
        "app/patch.yaml",
        &format!(
            "apiVersion: builtin\nkind: PatchTransformer\nmetadata: {{name: p}}\npath: {URL}\n"
        ),
    );
    let error = render(&repo).unwrap_err();
    assert!(
        matches!(&error, RenderError::RemoteResource { .. }),
        "{error}"
    );
    assert_eq!(
        error.location().unwrap().to_string(),
        "app/patch.yaml:4:7",
        "{error}"
    );
}

#[test]
fn local_generator_files_still_render() {
    let Some(tool) = kustomize_or_skip("local_generator_files_still_render") else {
        return;
    };
    let repo = Fixture::new();
    repo.spec("  - name: app\n    path: app\n");
    repo.write("app/settings.env", "MODE=fast\n");
    repo.write("app/motd.txt", "hello\n");
    repo.write(
        "app/kustomization.yaml",
        "configMapGenerator:\n- name: settings\n  options: {disableNameSuffixHash: true}\n  envs: [settings.env]\n  files: [greeting=motd.txt]\n",
    );
    let bundle = render_bundle(&repo.load().unwrap(), "app", &cluster("a", &[]), &tool).unwrap();
    let data = &bundle.objects[0].object["data"];
    assert_eq!(data["MODE"], "fast");
    assert_eq!(data["greeting"], "hello\n");
}

#[test]
fn a_cancelled_render_stops_its_running_tool_at_once() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    let repo = Fixture::new();
    repo.spec("  - name: app\n    path: app\n");
    repo.write("app/kustomization.yaml", "resources: [cm.yaml]\n");
    repo.write("app/cm.yaml", CONFIG_MAP);
    // A tool that never finishes, as a build stuck on something would.
    let tools = tempfile::tempdir().unwrap();
    let slow = tools.path().join("kustomize");
    std::fs::write(&slow, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let limits = flotilla_core::Limits {
        render_sandbox: flotilla_core::SandboxMode::Off,
        ..flotilla_core::Limits::default()
    };
    let mut loaded = repo.load_with(limits).unwrap();
    let cancel = flotilla_core::Cancel::default();
    loaded.cancel_with(cancel.clone());
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
    });
    let started = Instant::now();
    let error = render_bundle(
        &loaded,
        "app",
        &cluster("a", &[]),
        &Tools::none().with_kustomize(Kustomize::Standalone(slow)),
    )
    .unwrap_err();
    stopper.join().unwrap();
    assert!(matches!(error, RenderError::Cancelled { .. }), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped after {:?}",
        started.elapsed()
    );
}
