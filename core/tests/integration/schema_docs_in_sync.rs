//! `docs/flotilla.schema.json` and `docs/clusters.schema.json` are exactly what the parser's
//! types generate. Run with `FLOTILLA_BLESS=1` to rewrite them after changing the types.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use flotilla_core::schema::{fleet_schema, inventory_schema, schema_text};

fn check(file: &str, schema: serde_json::Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(file);
    let expected = schema_text(&schema);
    if std::env::var("FLOTILLA_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &expected).unwrap();
        eprintln!("rewrote {}", path.display());
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} is out of date; run `FLOTILLA_BLESS=1 cargo nextest run -p flotilla-core --test integration schema_docs_in_sync`",
        path.display()
    );
}

#[test]
fn fleet_schema_matches_docs() {
    check("flotilla.schema.json", fleet_schema());
}

#[test]
fn inventory_schema_matches_docs() {
    check("clusters.schema.json", inventory_schema());
}

#[test]
fn fleet_schema_describes_strict_objects() {
    let schema = fleet_schema();
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["properties"]["apiVersion"]["const"],
        "flotilla.dev/v1"
    );
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(required.contains(&"stages"), "{required:?}");
    let stage = &schema["$defs"]["StageDocument"];
    assert_eq!(stage["additionalProperties"], false);
    assert!(stage["properties"]["promoteFrom"].is_object());
}
