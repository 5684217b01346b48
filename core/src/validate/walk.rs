//! One value walked against an OpenAPI v3 schema node, judged as the API server's decoding and
//! strict field validation judge it: wrong types, unknown fields, missing required fields,
//! values outside an enum, malformed quantities and base64, and the metadata rules (names,
//! label keys and values, annotation keys and size).

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::names::{self, NameRule};
use super::{FieldPath, Segment, Violation};

/// The schema names whose values get the metadata and quantity rules on top of their schema.
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LABEL_SELECTOR: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const REF_PREFIX: &str = "#/components/schemas/";

/// Whose schema is walked: the API server's own types refuse unknown fields only where a type
/// lists its properties (a property-less object such as `RawExtension` holds anything); a
/// custom resource's structural schema prunes — and strict validation refuses — every field it
/// does not declare unless `x-kubernetes-preserve-unknown-fields` says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    BuiltIn,
    Custom,
    /// A branch of a custom resource's `allOf`/`anyOf`/`oneOf`: a value check only — the API
    /// server prunes and refuses unknown fields against the outer schema alone.
    Branch,
}

pub(super) struct Walker<'s> {
    definitions: &'s HashMap<String, Value>,
    mode: Mode,
    pub(super) violations: Vec<Violation>,
}

impl<'s> Walker<'s> {
    pub(super) fn new(definitions: &'s HashMap<String, Value>, mode: Mode) -> Self {
        Self {
            definitions,
            mode,
            violations: Vec::new(),
        }
    }

    fn report(&mut self, path: &FieldPath, message: String) {
        self.violations.push(Violation {
            path: path.clone(),
            message,
        });
    }

    /// Walks the built-in type `name` (a schema name such as `...ObjectMeta`).
    pub(super) fn check_definition(&mut self, name: &str, value: &Value, path: &mut FieldPath) {
        match self.definitions.get(name) {
            Some(schema) => {
                self.check(schema, value, path);
                self.extra_rules(name, value, path);
            }
            None => self.report(path, format!("no schema `{name}` in the schema set")),
        }
    }

    pub(super) fn check(&mut self, schema: &Value, value: &Value, path: &mut FieldPath) {
        // The API server decodes an explicit null as the field's absence.
        if value.is_null() {
            return;
        }
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.strip_prefix(REF_PREFIX).unwrap_or(reference);
            self.check_definition(name, value, path);
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for part in all {
                if self.mode == Mode::BuiltIn {
                    // The built-in schemas reach their types through `allOf: [{$ref}]`.
                    self.check(part, value, path);
                } else {
                    let mut branch = Walker::new(self.definitions, Mode::Branch);
                    branch.check(part, value, path);
                    self.violations.extend(branch.violations);
                }
            }
        }
        if schema
            .get("x-kubernetes-int-or-string")
            .and_then(Value::as_bool)
            == Some(true)
            || schema.get("format").and_then(Value::as_str) == Some("int-or-string")
        {
            if !(is_integer(value) || value.is_string()) {
                self.report(
                    path,
                    format!("must be an integer or a string, not {}", describe(value)),
                );
            }
            return;
        }
        for keyword in ["oneOf", "anyOf"] {
            if let Some(choices) = schema.get(keyword).and_then(Value::as_array)
                && !self.any_fits(choices, value, path)
            {
                let kinds: Vec<&str> = choices
                    .iter()
                    .filter_map(|c| c.get("type").and_then(Value::as_str))
                    .collect();
                let expected = if kinds.len() == choices.len() && !kinds.is_empty() {
                    kinds.join(" or ")
                } else {
                    "one of the allowed shapes".to_owned()
                };
                self.report(path, format!("must be {expected}, not {}", describe(value)));
                return;
            }
        }
        let declared_type = schema.get("type").and_then(Value::as_str);
        let is_object_schema = declared_type == Some("object")
            || (declared_type.is_none() && schema.get("properties").is_some());
        match declared_type {
            _ if is_object_schema => match value.as_object() {
                Some(map) => self.check_object(schema, map, path),
                None => self.report(path, format!("must be a map, not {}", describe(value))),
            },
            Some("array") => match value.as_array() {
                Some(items) => {
                    if let Some(item_schema) = schema.get("items") {
                        for (index, item) in items.iter().enumerate() {
                            path.push(Segment::Index(index));
                            self.check(item_schema, item, path);
                            path.pop();
                        }
                    }
                }
                None => self.report(path, format!("must be a list, not {}", describe(value))),
            },
            Some("string") => match value.as_str() {
                Some(text) => self.check_string(schema, text, path),
                None => self.report(path, format!("must be a string, not {}", describe(value))),
            },
            Some("integer") if !is_integer(value) => {
                self.report(path, format!("must be an integer, not {}", describe(value)));
            }
            Some("number") if !value.is_number() => {
                self.report(path, format!("must be a number, not {}", describe(value)));
            }
            Some("boolean") if !value.is_boolean() => {
                self.report(
                    path,
                    format!("must be a boolean (true or false), not {}", describe(value)),
                );
            }
            _ => {}
        }
        self.check_bounds(schema, value, path);
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            let listed: Vec<String> = allowed.iter().map(Value::to_string).collect();
            self.report(
                path,
                format!(
                    "unsupported value {}; supported values: {}",
                    value,
                    listed.join(", ")
                ),
            );
        }
    }

    /// `minimum`/`maximum` (and their exclusive forms), lengths of strings and lists, and
    /// counts of map entries, as CRD schemas use them (the built-in schemas state none).
    fn check_bounds(&mut self, schema: &Value, value: &Value, path: &FieldPath) {
        let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
        let exclusive = |key: &str| schema.get(key).and_then(Value::as_bool) == Some(true);
        if let Some(number) = value.as_f64() {
            if let Some(min) = bound("minimum") {
                let below = if exclusive("exclusiveMinimum") {
                    number <= min
                } else {
                    number < min
                };
                if below {
                    self.report(path, format!("{value} is below the minimum {min}"));
                }
            }
            if let Some(max) = bound("maximum") {
                let above = if exclusive("exclusiveMaximum") {
                    number >= max
                } else {
                    number > max
                };
                if above {
                    self.report(path, format!("{value} is above the maximum {max}"));
                }
            }
        }
        let size = match value {
            Value::String(text) => {
                Some((text.chars().count(), "minLength", "maxLength", "characters"))
            }
            Value::Array(items) => Some((items.len(), "minItems", "maxItems", "items")),
            Value::Object(map) => Some((map.len(), "minProperties", "maxProperties", "entries")),
            _ => None,
        };
        if let Some((count, min_key, max_key, unit)) = size {
            let count = count as f64;
            if let Some(min) = bound(min_key).filter(|min| count < *min) {
                self.report(
                    path,
                    format!("has {count} {unit}; at least {min} are required"),
                );
            }
            if let Some(max) = bound(max_key).filter(|max| count > *max) {
                self.report(
                    path,
                    format!("has {count} {unit}; at most {max} are allowed"),
                );
            }
        }
    }

    fn any_fits(&mut self, choices: &[Value], value: &Value, path: &mut FieldPath) -> bool {
        let mode = match self.mode {
            Mode::BuiltIn => Mode::BuiltIn,
            Mode::Custom | Mode::Branch => Mode::Branch,
        };
        choices.iter().any(|choice| {
            let mut trial = Walker::new(self.definitions, mode);
            trial.check(choice, value, path);
            trial.violations.is_empty()
        })
    }

    fn check_object(&mut self, schema: &Value, map: &Map<String, Value>, path: &mut FieldPath) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let preserve = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true);
        let refuses_unknown = match self.mode {
            Mode::BuiltIn => properties.is_some_and(|p| !p.is_empty()),
            Mode::Custom => !preserve,
            Mode::Branch => false,
        };
        // An embedded resource may always carry apiVersion, kind and metadata.
        let embedded = schema
            .get("x-kubernetes-embedded-resource")
            .and_then(Value::as_bool)
            == Some(true);
        for (key, item) in map {
            path.push(Segment::Key(key.clone()));
            match (properties.and_then(|p| p.get(key)), additional) {
                (Some(property), _) => self.check(property, item, path),
                (None, Some(extra @ Value::Object(_))) => self.check(extra, item, path),
                (None, Some(Value::Bool(true))) => {}
                (None, _)
                    if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") => {}
                (None, _) if refuses_unknown && !preserve => {
                    self.report(path, "unknown field; the API server refuses it".to_owned());
                }
                (None, _) => {}
            }
            path.pop();
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for field in required.iter().filter_map(Value::as_str) {
                let declared = properties.and_then(|p| p.get(field));
                // The API server fills a defaulted field before validating; a nullable one
                // may be null.
                let defaulted = declared.is_some_and(|p| p.get("default").is_some());
                let nullable = declared
                    .is_some_and(|p| p.get("nullable").and_then(Value::as_bool) == Some(true));
                let missing = match map.get(field) {
                    None => !defaulted,
                    Some(Value::Null) => !(nullable || defaulted),
                    Some(_) => false,
                };
                if missing {
                    path.push(Segment::Key(field.to_owned()));
                    self.report(path, "required field is missing".to_owned());
                    path.pop();
                }
            }
        }
    }

    fn check_string(&mut self, schema: &Value, text: &str, path: &FieldPath) {
        // Go's decoder, which the API server uses, skips line breaks anywhere (base64 wraps
        // its output at 76 columns) and accepts non-zero trailing bits.
        const GO_STANDARD: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        if schema.get("format").and_then(Value::as_str) == Some("byte")
            && GO_STANDARD.decode(text.replace(['\n', '\r'], "")).is_err()
        {
            self.report(
                path,
                "must be base64-encoded (use `stringData` for plain text)".to_owned(),
            );
        }
    }

    /// The rules a schema cannot state, applied to the values of a few well-known types.
    fn extra_rules(&mut self, name: &str, value: &Value, path: &mut FieldPath) {
        match name {
            OBJECT_META => self.check_meta(value, path),
            LABEL_SELECTOR => {
                if let Some(labels) = value.get("matchLabels").and_then(Value::as_object) {
                    path.push(Segment::Key("matchLabels".to_owned()));
                    self.check_labels(labels, path);
                    path.pop();
                }
            }
            QUANTITY => {
                if let Some(text) = value.as_str()
                    && !names::is_quantity(text)
                {
                    self.report(
                        path,
                        format!(
                            "`{text}` is not a quantity; write a number with an optional \
                             suffix such as 500m, 128Mi or 2Gi"
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    fn check_meta(&mut self, meta: &Value, path: &mut FieldPath) {
        if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
            path.push(Segment::Key("labels".to_owned()));
            self.check_labels(labels, path);
            path.pop();
        }
        if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
            path.push(Segment::Key("annotations".to_owned()));
            let mut total = 0;
            for (key, value) in annotations {
                total += key.len() + value.as_str().map_or(0, str::len);
                if let Some(why) = names::qualified_name(key) {
                    path.push(Segment::Key(key.clone()));
                    self.report(path, format!("invalid annotation key: {why}"));
                    path.pop();
                }
            }
            if total > names::ANNOTATIONS_MAX_BYTES {
                self.report(
                    path,
                    format!(
                        "annotations hold {total} bytes; the limit is {} bytes in all",
                        names::ANNOTATIONS_MAX_BYTES
                    ),
                );
            }
            path.pop();
        }
    }

    fn check_labels(&mut self, labels: &Map<String, Value>, path: &mut FieldPath) {
        for (key, value) in labels {
            path.push(Segment::Key(key.clone()));
            if let Some(why) = names::qualified_name(key) {
                self.report(path, format!("invalid label key: {why}"));
            }
            if let Some(text) = value.as_str()
                && let Some(why) = names::label_value(text)
            {
                self.report(path, format!("invalid label value `{text}`: {why}"));
            }
            path.pop();
        }
    }

    /// The name and namespace of a top-level object.
    pub(super) fn check_identity(&mut self, rule: NameRule, meta: &Value, path: &mut FieldPath) {
        path.push(Segment::Key("metadata".to_owned()));
        match meta.get("name").and_then(Value::as_str) {
            Some(name) => {
                if let Some(why) = rule.check(name) {
                    path.push(Segment::Key("name".to_owned()));
                    self.report(path, format!("invalid name `{name}`: {why}"));
                    path.pop();
                }
            }
            None => {
                path.push(Segment::Key("name".to_owned()));
                self.report(path, "required field is missing".to_owned());
                path.pop();
            }
        }
        if let Some(namespace) = meta.get("namespace").and_then(Value::as_str)
            && let Some(why) = names::dns_label(namespace)
        {
            path.push(Segment::Key("namespace".to_owned()));
            self.report(path, format!("invalid namespace `{namespace}`: {why}"));
            path.pop();
        }
        path.pop();
    }
}

fn is_integer(value: &Value) -> bool {
    value.is_i64() || value.is_u64()
}

/// A value as an error message names it: `the string "three"`, `the number 2.5`, `a map`.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", Value::String(s.clone())),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a map".to_owned(),
    }
}
