use std::fs;

use super::*;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(path, text).expect("write");
    }
    dir
}

const TWO_DOCS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  mode: 0644\n---\n# nothing\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n";

#[test]
fn yaml_json_and_lists_are_read_in_path_order() {
    let dir = dir_with(&[
        ("b/two.yaml", TWO_DOCS),
        (
            "a.json",
            r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}]}"#,
        ),
        (".hidden.yaml", "not: [valid"),
        ("README.md", "# not a manifest"),
    ]);
    let objects = load_dir(dir.path(), &Limits::default()).expect("loads");
    let names: Vec<&str> = objects
        .iter()
        .filter_map(|o| o.pointer("/metadata/name")?.as_str())
        .collect();
    assert_eq!(names, ["s", "a", "b"]);
    assert_eq!(
        objects[1]["data"]["mode"], 420,
        "0644 is octal, as kubectl reads it"
    );
}

#[test]
fn syntax_errors_name_the_file_and_line() {
    let dir = dir_with(&[(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [a\n",
    )]);
    let error = load_dir(dir.path(), &Limits::default())
        .expect_err("invalid")
        .to_string();
    assert!(error.starts_with("bad.yaml:"), "{error}");
}

#[test]
fn documents_that_are_not_objects_name_where_they_start() {
    let dir = dir_with(&[(
        "x.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nmetadata:\n  name: b\n",
    )]);
    let error = load_dir(dir.path(), &Limits::default())
        .expect_err("no kind")
        .to_string();
    assert!(error.starts_with("x.yaml:6:"), "{error}");
    assert!(error.contains("no kind"), "{error}");
}

#[test]
fn alias_bombs_are_refused() {
    // Each level repeats the one before ten times: 10^12 scalars once expanded.
    let mut bomb = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..12 {
        let refs = vec![format!("*l{}", level - 1); 10].join(", ");
        bomb.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
    }
    let dir = dir_with(&[("bomb.yaml", &bomb)]);
    let error = load_dir(dir.path(), &Limits::default())
        .expect_err("refused")
        .to_string();
    assert!(error.starts_with("bomb.yaml"), "{error}");
}

#[test]
fn kustomizations_are_pointed_at_kubectl_kustomize() {
    let dir = dir_with(&[("kustomization.yaml", "resources: [a.yaml]\n")]);
    let error = load_dir(dir.path(), &Limits::default())
        .expect_err("kustomization")
        .to_string();
    assert!(error.contains("kubectl kustomize"), "{error}");
}

#[test]
fn the_content_hash_ignores_key_order_and_formatting() {
    let a = dir_with(&[(
        "m.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    )]);
    let b = dir_with(&[(
        "m.json",
        r#"{"metadata":{"name":"a"},"kind":"ConfigMap","apiVersion":"v1"}"#,
    )]);
    let ra = revision(
        "x",
        "default",
        DriftMode::Correct,
        load_dir(a.path(), &Limits::default()).expect("a"),
    );
    let rb = revision(
        "x",
        "default",
        DriftMode::Correct,
        load_dir(b.path(), &Limits::default()).expect("b"),
    );
    assert_eq!(ra.content_hash, rb.content_hash);
    assert_eq!(ra.revision.len(), 12);
    let c = dir_with(&[(
        "m.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    )]);
    let rc = revision(
        "x",
        "default",
        DriftMode::Correct,
        load_dir(c.path(), &Limits::default()).expect("c"),
    );
    assert_ne!(ra.content_hash, rc.content_hash);
}

#[test]
fn fingerprints_change_with_any_manifest_byte() {
    let dir = dir_with(&[("m.yaml", TWO_DOCS)]);
    let before = fingerprint(dir.path(), &Limits::default()).expect("fingerprint");
    assert_eq!(
        before,
        fingerprint(dir.path(), &Limits::default()).expect("again")
    );
    fs::write(dir.path().join("m.yaml"), TWO_DOCS.replace("0644", "0600")).expect("write");
    assert_ne!(
        before,
        fingerprint(dir.path(), &Limits::default()).expect("changed")
    );
}
