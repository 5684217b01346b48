//! JSON schemas of Flotilla's files, generated from the very types the parser uses, so a
//! schema-aware editor and `flotilla lint` agree. `docs/*.schema.json` are these, written out.

/// The JSON schema of `flotilla.yaml`.
pub fn fleet_schema() -> serde_json::Value {
    schemars::schema_for!(crate::spec::FleetDocumentSchema).to_value()
}

/// The JSON schema of a cluster inventory file (`clusters.yaml`).
pub fn inventory_schema() -> serde_json::Value {
    schemars::schema_for!(crate::inventory::InventoryDocument).to_value()
}

/// A schema as the pretty-printed text kept in `docs/`, ending with a newline.
pub fn schema_text(schema: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}
