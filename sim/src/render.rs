//! Serializing objects into responses: the version a request asked for, lists, and
//! the `Warning` headers.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// An object as served in a requested `apiVersion` (stored objects are version-agnostic,
/// so only `apiVersion` changes), optionally without `apiVersion`/`kind` as list items of
/// built-in kinds are served.
pub(crate) struct Served<'a> {
    /// The stored object.
    pub(crate) obj: &'a Value,
    /// The `apiVersion` to show.
    pub(crate) api_version: &'a str,
    /// Whether `apiVersion` and `kind` are left out.
    pub(crate) omit_type: bool,
}

impl Serialize for Served<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(map) = self.obj.as_object() else {
            return self.obj.serialize(s);
        };
        let mut m = s.serialize_map(None)?;
        for (k, v) in map {
            match k.as_str() {
                "apiVersion" | "kind" if self.omit_type => {}
                "apiVersion" => m.serialize_entry(k, self.api_version)?,
                _ => m.serialize_entry(k, v)?,
            }
        }
        m.end()
    }
}

/// A list response: `{kind, apiVersion, metadata, items}`.
pub(crate) struct ListBody<'a> {
    /// `ConfigMapList`, `PartialObjectMetadataList`, ...
    pub(crate) kind: &'a str,
    /// `apiVersion` of the list.
    pub(crate) api_version: &'a str,
    /// List metadata.
    pub(crate) metadata: Value,
    /// Items, already rendered.
    pub(crate) items: Vec<Served<'a>>,
}

impl Serialize for ListBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("kind", self.kind)?;
        m.serialize_entry("apiVersion", self.api_version)?;
        m.serialize_entry("metadata", &self.metadata)?;
        m.serialize_entry("items", &self.items)?;
        m.end()
    }
}

/// A watch event line: `{"type":..,"object":..}\n`.
pub(crate) fn event_line(kind: &str, object: &Served<'_>) -> Vec<u8> {
    struct Event<'a, 'b> {
        kind: &'a str,
        object: &'a Served<'b>,
    }
    impl Serialize for Event<'_, '_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(2))?;
            m.serialize_entry("type", self.kind)?;
            m.serialize_entry("object", self.object)?;
            m.end()
        }
    }
    let mut out = serde_json::to_vec(&Event { kind, object }).unwrap_or_default();
    out.push(b'\n');
    out
}

/// A `Warning` header value for a message (code 299, agent `-`).
pub(crate) fn warning_header(message: &str) -> String {
    let escaped = message.replace('\\', "\\\\").replace('"', "\\\"");
    format!("299 - \"{escaped}\"")
}
