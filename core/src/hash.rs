//! Content hashes: blake3 over a canonical serialization, so equal content has one name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A blake3 digest naming a rendered bundle. Displays (and serializes) as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A hash from its raw 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The first 12 hex digits, enough to tell revisions apart in a table.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

/// Text that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid content hash `{0}`: expected 64 hexadecimal digits")]
pub struct InvalidContentHash(pub String);

impl FromStr for ContentHash {
    type Err = InvalidContentHash;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| InvalidContentHash(text.to_owned()))?;
        Ok(Self(bytes))
    }
}

/// Hex text in human-readable formats (JSON, YAML); the 32 raw bytes in binary ones (the hub's
/// log entries and snapshots), half the size.
impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            Ok(Self(<[u8; 32]>::deserialize(deserializer)?))
        }
    }
}

/// Returns `value` with every object's keys sorted, recursively. Serializing the result with
/// `serde_json` gives one byte sequence per content, whatever order the author wrote keys in.
pub fn canonical_json(mut value: serde_json::Value) -> serde_json::Value {
    // In place: every map's keys sorted, nothing copied.
    value.sort_all_objects();
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trips_through_text_and_serde() {
        let hash = ContentHash::of(b"bundle");
        assert_eq!(hash.to_string().len(), 64);
        assert_eq!(hash.to_string().parse::<ContentHash>().unwrap(), hash);
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(serde_json::from_str::<ContentHash>(&json).unwrap(), hash);
        assert!("xyz".parse::<ContentHash>().is_err());
        assert_eq!(hash.short().len(), 12);
    }

    #[test]
    fn canonical_json_ignores_key_order() {
        let a = serde_json::json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": null}});
        let b = serde_json::json!({"a": {"c": null, "d": [1, {"y": 1, "z": 0}]}, "b": 1});
        let bytes_a = serde_json::to_vec(&canonical_json(a)).unwrap();
        let bytes_b = serde_json::to_vec(&canonical_json(b)).unwrap();
        assert_eq!(bytes_a, bytes_b);
        assert_eq!(ContentHash::of(&bytes_a), ContentHash::of(&bytes_b));
    }
}
