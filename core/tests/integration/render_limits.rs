//! Limits against hostile or runaway repositories: each breach is a clear error, never a
//! truncated render.

#![allow(clippy::unwrap_used)]

use crate::support::fixture;

use fixture::{Fixture, cluster};
use flotilla_core::render::{RenderError, Tools, render_bundle};
use flotilla_core::{Limits, SpecError};

fn config_maps(count: usize) -> String {
    (0..count)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\n"))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn render_with(
    repo: &Fixture,
    limits: Limits,
) -> Result<flotilla_core::RenderedBundle, RenderError> {
    let loaded = repo.load_with(limits).expect("the spec is valid");
    render_bundle(&loaded, "app", &cluster("a", &[]), &Tools::none())
}

fn app_repo() -> Fixture {
    let repo = Fixture::new();
    repo.spec("  - name: app\n    path: app\n");
    repo
}

#[test]
fn oversized_manifest_file_is_refused() {
    let repo = app_repo();
    repo.write("app/big.yaml", &config_maps(50));
    let limits = Limits {
        max_file_bytes: 1_000,
        ..Limits::default()
    };
    let error = render_with(&repo, limits).unwrap_err();
    assert!(
        matches!(&error, RenderError::Spec(SpecError::TooLarge { location, .. }) if location.file == "app/big.yaml"),
        "{error}"
    );
}

#[test]
fn too_many_files_is_refused() {
    let repo = app_repo();
    for i in 0..4 {
        repo.write(
            &format!("app/{i}.yaml"),
            &config_maps(1).replace("cm-0", &format!("f{i}")),
        );
    }
    let error = render_with(
        &repo,
        Limits {
            max_files_per_bundle: 3,
            ..Limits::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(error, RenderError::TooManyFiles { limit: 3, .. }),
        "{error}"
    );
}

#[test]
fn too_many_objects_is_refused() {
    let repo = app_repo();
    repo.write("app/many.yaml", &config_maps(11));
    let error = render_with(
        &repo,
        Limits {
            max_objects_per_bundle: 10,
            ..Limits::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(error, RenderError::TooManyObjects { limit: 10, .. }),
        "{error}"
    );
}

#[test]
fn rendered_size_over_the_limit_is_refused() {
    let repo = app_repo();
    repo.write("app/many.yaml", &config_maps(20));
    let error = render_with(
        &repo,
        Limits {
            max_rendered_bytes: 500,
            ..Limits::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(error, RenderError::TooLarge { limit: 500, .. }),
        "{error}"
    );
}

#[test]
fn variable_amplification_is_bounded() {
    let repo = Fixture::new();
    let big = "x".repeat(10_000);
    repo.spec(&format!(
        "  - name: app\n    path: app\n    variables:\n      big: {big}\n"
    ));
    let uses = "${big}".repeat(200);
    repo.write(
        "app/cm.yaml",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\ndata: {{a: {uses}}}\n"),
    );
    let error = render_with(
        &repo,
        Limits {
            max_rendered_bytes: 100_000,
            ..Limits::default()
        },
    )
    .unwrap_err();
    assert!(matches!(error, RenderError::TooLarge { .. }), "{error}");
}

#[test]
fn deep_nesting_is_refused() {
    let repo = app_repo();
    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\ndata: {}1{}\n",
        "[".repeat(80),
        "]".repeat(80)
    );
    repo.write("app/deep.yaml", &deep);
    let error = render_with(&repo, Limits::default()).unwrap_err();
    assert!(
        matches!(&error, RenderError::Yaml { location, .. } if location.file == "app/deep.yaml"),
        "{error}"
    );
}

#[test]
fn alias_bomb_is_refused() {
    let repo = app_repo();
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nx0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for level in 1..9 {
        let prev = level - 1;
        bomb.push_str(&format!(
            "x{level}: &a{level} [{}]\n",
            vec![format!("*a{prev}"); 9].join(", ")
        ));
    }
    repo.write("app/bomb.yaml", &bomb);
    let error = render_with(&repo, Limits::default()).unwrap_err();
    assert!(
        matches!(&error, RenderError::Yaml { location, .. } if location.file == "app/bomb.yaml"),
        "{error}"
    );
}

#[test]
fn oversized_spec_and_too_many_repository_entries_are_refused() {
    let repo = app_repo();
    repo.write("app/cm.yaml", &config_maps(1));
    let errors = repo
        .load_with(Limits {
            max_file_bytes: 10,
            ..Limits::default()
        })
        .unwrap_err()
        .errors;
    assert!(
        matches!(&errors[0], SpecError::TooLarge { location, .. } if location.file == "flotilla.yaml"),
        "{}",
        errors[0]
    );
    for i in 0..10 {
        repo.write(&format!("docs/{i}.md"), "x");
    }
    let errors = repo
        .load_with(Limits {
            max_repo_entries: 5,
            ..Limits::default()
        })
        .unwrap_err()
        .errors;
    assert!(
        matches!(errors[0], SpecError::TooManyEntries { limit: 5, .. }),
        "{}",
        errors[0]
    );
}
