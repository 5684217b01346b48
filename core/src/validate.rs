//! Rendered objects checked offline against what the API server would accept: built-in kinds
//! against the Kubernetes OpenAPI v3 schemas of a stated version, custom resources against the
//! CustomResourceDefinitions the repository itself carries.
//!
//! The checks are those that decoding with strict field validation and the API server's
//! generic validation make before any admission: a value of the wrong type, a field no schema
//! declares, a missing required field, a value outside an enum, a malformed quantity or base64
//! value, an invalid name, namespace, label key or value, or annotation key; an apiVersion a
//! built-in group does not serve. Kind-specific semantic rules (a selector matching its
//! template, port ranges, CEL rules of a CRD, admission webhooks) are not checked here: the
//! agent's server-side dry run refuses those before any write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde_json::{Map, Value};

mod locate;
mod names;
mod walk;

pub use locate::locate;

use names::NameRule;
use walk::{Mode, Walker};

/// One step of a path into an object: a map key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Segment {
    /// A map key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// A path into an object, such as `spec.template.spec.containers[0].ports[1].containerPort`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    fn push(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    fn pop(&mut self) {
        self.0.pop();
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key)
                    if key.is_empty()
                        || key.contains(|c: char| {
                            !(c.is_ascii_alphanumeric() || c == '_' || c == '-')
                        }) =>
                {
                    write!(f, "[{}]", Value::String(key.clone()))?;
                }
                Segment::Key(key) if position == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
            }
        }
        Ok(())
    }
}

/// Something the API server would refuse, at a path of the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where in the object.
    pub path: FieldPath,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.0.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The verdict on one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Checked, and nothing found.
    Valid,
    /// Checked, with what the API server would refuse.
    Invalid(Vec<Violation>),
    /// Not checked: no schema describes the kind (a custom resource whose definition is not in
    /// the repository, or an aggregated API). The text says which and how to get it checked.
    Unchecked(String),
}

/// The OpenAPI v3 schemas of one Kubernetes version: every named type, and which one
/// describes each served group, version and kind.
#[derive(Debug, Clone)]
pub struct Schemas {
    version: String,
    definitions: HashMap<String, Value>,
    kinds: HashMap<(String, String, String), String>,
    versions_by_group: BTreeMap<String, BTreeSet<String>>,
}

/// Why a schema set could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(String);

/// The Kubernetes versions whose schemas ship with Flotilla, oldest first; the last is the
/// default. Each is `core/schemas/kubernetes-VERSION.json`, written by `scripts/kube-schemas`.
pub const SHIPPED_VERSIONS: [&str; 2] = ["1.36", "1.37"];

/// The shipped schemas of a Kubernetes version (`1.37`), or why not.
pub fn shipped(version: &str) -> Result<Schemas, SchemaError> {
    let text = match version {
        "1.36" => include_str!("../schemas/kubernetes-1.36.json"),
        "1.37" => include_str!("../schemas/kubernetes-1.37.json"),
        other => {
            return Err(SchemaError(format!(
                "no schemas ship for Kubernetes {other}; shipped: {} (or give --schemas DIR \
                 with your cluster's OpenAPI v3 documents)",
                SHIPPED_VERSIONS.join(", ")
            )));
        }
    };
    let document: Value = serde_json::from_str(text).map_err(|e| {
        SchemaError(format!(
            "the shipped schemas of {version} do not parse: {e}"
        ))
    })?;
    Schemas::from_documents(version, [document])
}

/// Keywords a check never reads: left out of the shipped schemas to keep them small.
const DOCUMENTATION: [&str; 5] = ["description", "default", "example", "externalDocs", "title"];

impl Schemas {
    /// Reads OpenAPI v3 documents, as `kubectl get --raw /openapi/v3/apis/apps/v1` answers or
    /// as Kubernetes' `api/openapi-spec/v3/*.json` are, or one compact document written by
    /// [`Schemas::to_compact`], merging the schemas of all.
    pub fn from_documents(
        version: &str,
        documents: impl IntoIterator<Item = Value>,
    ) -> Result<Schemas, SchemaError> {
        let mut definitions = HashMap::new();
        for document in documents {
            let schemas = document
                .pointer("/components/schemas")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    SchemaError(
                        "not an OpenAPI v3 document: it has no `components.schemas`".to_owned(),
                    )
                })?;
            for (name, schema) in schemas {
                definitions.insert(name.clone(), schema.clone());
            }
        }
        if definitions.is_empty() {
            return Err(SchemaError("the documents define no schema".to_owned()));
        }
        let mut kinds = HashMap::new();
        let mut versions_by_group: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, schema) in &definitions {
            let Some(served) = schema
                .get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array)
            else {
                continue;
            };
            for gvk in served {
                let field = |key: &str| {
                    gvk.get(key)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                let (group, version, kind) = (field("group"), field("version"), field("kind"));
                // Every type can be wrapped in a WatchEvent and DeleteOptions is accepted by
                // every group: neither says which groups exist.
                if kind == "WatchEvent" || kind == "DeleteOptions" || kind.ends_with("List") {
                    continue;
                }
                versions_by_group
                    .entry(group.clone())
                    .or_default()
                    .insert(version.clone());
                kinds.insert((group, version, kind), name.clone());
            }
        }
        Ok(Schemas {
            version: version.to_owned(),
            definitions,
            kinds,
            versions_by_group,
        })
    }

    /// The Kubernetes version these schemas are of, as given when loading.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// One document holding every schema without its documentation: what the project ships.
    pub fn to_compact(&self) -> Value {
        let schemas: BTreeMap<&String, Value> = self
            .definitions
            .iter()
            .map(|(name, schema)| (name, strip_documentation(schema)))
            .collect();
        serde_json::json!({
            "info": { "title": "Kubernetes", "version": self.version },
            "components": { "schemas": schemas },
        })
    }

    /// Judges one object. `crds` are the custom resource definitions known to the repository.
    pub fn validate(&self, object: &Value, crds: &CustomResources) -> Verdict {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        let key = (group.to_owned(), version.to_owned(), kind.to_owned());
        let mut path = FieldPath::default();
        if let Some(name) = self.kinds.get(&key) {
            let mut walker = Walker::new(&self.definitions, Mode::BuiltIn);
            walker.check_definition(name, object, &mut path);
            if let Some(meta) = object.get("metadata") {
                walker.check_identity(NameRule::of(group, kind), meta, &mut path);
            }
            if group == "apiextensions.k8s.io" && kind == "CustomResourceDefinition" {
                check_crd_name(object, &mut walker.violations);
            }
            return verdict(walker.violations);
        }
        if let Some(custom) = crds.kinds.get(&(group.to_owned(), kind.to_owned())) {
            return match custom.versions.get(version) {
                Some(Some(schema)) => self.validate_custom(object, group, kind, schema),
                Some(None) => Verdict::Invalid(vec![Violation {
                    path: FieldPath(vec![Segment::Key("apiVersion".to_owned())]),
                    message: format!(
                        "version `{version}` of {kind} is not served by its \
                         CustomResourceDefinition `{}`; served: {}",
                        custom.crd,
                        custom.served().join(", ")
                    ),
                }]),
                None => Verdict::Invalid(vec![Violation {
                    path: FieldPath(vec![Segment::Key("apiVersion".to_owned())]),
                    message: format!(
                        "{kind} has no version `{version}` in its CustomResourceDefinition \
                         `{}`; served: {}",
                        custom.crd,
                        custom.served().join(", ")
                    ),
                }]),
            };
        }
        if let Some(served) = self.versions_by_group.get(group) {
            let kinds_here: Vec<&str> = self
                .kinds
                .keys()
                .filter(|(g, _, k)| g == group && k == kind)
                .map(|(_, v, _)| v.as_str())
                .collect();
            let hint = if kinds_here.is_empty() {
                format!(
                    "the group `{}` has no kind {kind} in Kubernetes {} (its versions: {})",
                    display_group(group),
                    self.version,
                    served.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            } else {
                let mut versions: Vec<String> = kinds_here
                    .iter()
                    .map(|v| {
                        if group.is_empty() {
                            (*v).to_owned()
                        } else {
                            format!("{group}/{v}")
                        }
                    })
                    .collect();
                versions.sort();
                format!(
                    "Kubernetes {} does not serve {kind} as `{api_version}`; use {}",
                    self.version,
                    versions.join(" or ")
                )
            };
            return Verdict::Invalid(vec![Violation {
                path: FieldPath(vec![Segment::Key("apiVersion".to_owned())]),
                message: hint,
            }]);
        }
        Verdict::Unchecked(format!(
            "no schema for {api_version} {kind}: add its CustomResourceDefinition to the \
             repository to have it checked"
        ))
    }

    fn validate_custom(&self, object: &Value, group: &str, kind: &str, schema: &Value) -> Verdict {
        let mut path = FieldPath::default();
        let mut builtin = Walker::new(&self.definitions, Mode::BuiltIn);
        let mut custom = Walker::new(&self.definitions, Mode::Custom);
        let empty = Map::new();
        let map = object.as_object().unwrap_or(&empty);
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, value) in map {
            path.push(Segment::Key(key.clone()));
            match key.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => builtin.check_definition(
                    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                    value,
                    &mut path,
                ),
                _ => match properties.and_then(|p| p.get(key)) {
                    Some(property) => custom.check(property, value, &mut path),
                    None if schema
                        .get("x-kubernetes-preserve-unknown-fields")
                        .and_then(Value::as_bool)
                        == Some(true) => {}
                    None => custom.violations.push(Violation {
                        path: path.clone(),
                        message: "unknown field; the CustomResourceDefinition does not declare it"
                            .to_owned(),
                    }),
                },
            }
            path.pop();
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for field in required.iter().filter_map(Value::as_str) {
                if map.get(field).is_none_or(Value::is_null) {
                    custom.violations.push(Violation {
                        path: FieldPath(vec![Segment::Key(field.to_owned())]),
                        message: "required field is missing".to_owned(),
                    });
                }
            }
        }
        if let Some(meta) = object.get("metadata") {
            builtin.check_identity(NameRule::of(group, kind), meta, &mut path);
        }
        let mut violations = builtin.violations;
        violations.extend(custom.violations);
        verdict(violations)
    }
}

fn verdict(mut violations: Vec<Violation>) -> Verdict {
    if violations.is_empty() {
        return Verdict::Valid;
    }
    violations.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.message.cmp(&b.message)));
    violations.dedup();
    Verdict::Invalid(violations)
}

fn display_group(group: &str) -> &str {
    if group.is_empty() { "core" } else { group }
}

/// A CRD's name must be `<plural>.<group>`.
fn check_crd_name(crd: &Value, violations: &mut Vec<Violation>) {
    let name = crd.pointer("/metadata/name").and_then(Value::as_str);
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str);
    let group = crd.pointer("/spec/group").and_then(Value::as_str);
    if let (Some(name), Some(plural), Some(group)) = (name, plural, group)
        && name != format!("{plural}.{group}")
    {
        violations.push(Violation {
            path: FieldPath(vec![
                Segment::Key("metadata".to_owned()),
                Segment::Key("name".to_owned()),
            ]),
            message: format!("must be spec.names.plural+\".\"+spec.group: `{plural}.{group}`"),
        });
    }
}

/// Removes documentation keywords from a schema, leaving property names alone (a property may
/// be called `description`).
fn strip_documentation(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        if DOCUMENTATION.contains(&key.as_str()) {
            continue;
        }
        let kept = match key.as_str() {
            "properties" | "patternProperties" | "definitions" => match value {
                Value::Object(named) => Value::Object(
                    named
                        .iter()
                        .map(|(name, s)| (name.clone(), strip_documentation(s)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "additionalProperties" | "not" | "additionalItems" => {
                strip_documentation(value)
            }
            "allOf" | "anyOf" | "oneOf" => match value {
                Value::Array(parts) => {
                    Value::Array(parts.iter().map(strip_documentation).collect())
                }
                other => other.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), kept);
    }
    Value::Object(out)
}

/// One custom kind as the repository's CRDs define it.
#[derive(Debug, Clone)]
struct CustomKind {
    /// The CRD's name, for messages.
    crd: String,
    /// Per version: its schema when served (`{}` when it declares none), `None` when not.
    versions: BTreeMap<String, Option<Value>>,
}

impl CustomKind {
    fn served(&self) -> Vec<String> {
        self.versions
            .iter()
            .filter(|(_, schema)| schema.is_some())
            .map(|(version, _)| version.clone())
            .collect()
    }
}

/// The custom kinds the repository's CustomResourceDefinitions declare.
#[derive(Debug, Clone, Default)]
pub struct CustomResources {
    kinds: HashMap<(String, String), CustomKind>,
}

impl CustomResources {
    /// Collects every `apiextensions.k8s.io/v1` CustomResourceDefinition among `objects`.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Value>) -> CustomResources {
        let mut kinds: HashMap<(String, String), CustomKind> = HashMap::new();
        for crd in objects {
            if crd.get("apiVersion").and_then(Value::as_str) != Some("apiextensions.k8s.io/v1")
                || crd.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition")
            {
                continue;
            }
            let text = |pointer: &str| crd.pointer(pointer).and_then(Value::as_str);
            let (Some(group), Some(kind)) = (text("/spec/group"), text("/spec/names/kind")) else {
                continue;
            };
            let mut versions = BTreeMap::new();
            for version in crd
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(name) = version.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let served = version.get("served").and_then(Value::as_bool) != Some(false);
                let schema = version
                    .pointer("/schema/openAPIV3Schema")
                    .cloned()
                    // A version without a schema keeps whatever it is given.
                    .unwrap_or_else(
                        || serde_json::json!({"x-kubernetes-preserve-unknown-fields": true}),
                    );
                versions.insert(name.to_owned(), served.then_some(schema));
            }
            // Renders for different clusters may carry different revisions of one CRD (an
            // overlay, a staged upgrade): every version any of them serves is known.
            let known = kinds
                .entry((group.to_owned(), kind.to_owned()))
                .or_insert_with(|| CustomKind {
                    crd: text("/metadata/name").unwrap_or(kind).to_owned(),
                    versions: BTreeMap::new(),
                });
            for (version, schema) in versions {
                match known.versions.get(&version) {
                    Some(Some(_)) => {}
                    _ => {
                        known.versions.insert(version, schema);
                    }
                }
            }
        }
        CustomResources { kinds }
    }
}

#[cfg(test)]
mod tests;
