//! A bundle revision: the unit the agent applies, prunes and watches.

use flotilla_core::Allow;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the agent does when someone changes or deletes an object it manages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftMode {
    /// Re-apply the desired state and report the drift (the default).
    #[default]
    Correct,
    /// Only report the drift; leave the live object as it is.
    Report,
}

impl std::str::FromStr for DriftMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "correct" => Ok(DriftMode::Correct),
            "report" => Ok(DriftMode::Report),
            other => Err(format!(
                "unknown drift mode {other:?}: use \"correct\" or \"report\""
            )),
        }
    }
}

/// One revision of a bundle, as the hub (or a local source) hands it to the engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleRevision {
    /// Bundle name: a DNS label (lowercase letters, digits, `-`, at most 63 characters), because
    /// it becomes a label value and part of the inventory's name.
    pub name: String,
    /// Revision id, e.g. the Git commit the bundle was rendered from.
    pub revision: String,
    /// Content hash of the rendered objects, as computed by whoever rendered them. The agent
    /// never recomputes it: the labels it adds to objects are not part of the content.
    pub content_hash: String,
    /// Namespace given to namespaced objects that do not name one.
    pub namespace: String,
    /// What to do about drift.
    #[serde(default)]
    pub drift: DriftMode,
    /// The rendered Kubernetes objects, as JSON.
    pub objects: Vec<Value>,
    /// What the bundle may touch; the plan refuses any object outside it, so a hub that
    /// skipped its render-time check still cannot make this agent write there.
    #[serde(default, skip_serializing_if = "Allow::is_unrestricted")]
    pub allow: Allow,
}

/// What the engine holds for a bundle: its name and content hash, for the hub's hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBundle {
    /// Bundle name.
    pub name: String,
    /// Content hash of the revision held.
    pub content_hash: String,
}

/// A bundle revision that cannot be accepted as given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidBundle {
    /// The bundle name is not a DNS label.
    #[error(
        "bundle name {0:?} is not valid: use lowercase letters, digits and '-', starting and \
         ending with a letter or digit, at most 63 characters"
    )]
    Name(String),
    /// The default namespace is not a DNS label.
    #[error(
        "namespace {0:?} is not valid: use lowercase letters, digits and '-', starting and \
         ending with a letter or digit, at most 63 characters"
    )]
    Namespace(String),
    /// The content hash is empty.
    #[error("bundle {0:?} has an empty content hash")]
    ContentHash(String),
}

impl BundleRevision {
    /// Checks what can be checked without a cluster: the name, namespace and content hash.
    /// Objects are checked when the revision is planned against the cluster's API.
    pub fn validate(&self) -> Result<(), InvalidBundle> {
        if !is_dns_label(&self.name) {
            return Err(InvalidBundle::Name(self.name.clone()));
        }
        if !is_dns_label(&self.namespace) {
            return Err(InvalidBundle::Namespace(self.namespace.clone()));
        }
        if self.content_hash.is_empty() {
            return Err(InvalidBundle::ContentHash(self.name.clone()));
        }
        Ok(())
    }

    /// The name and content hash of this revision.
    pub fn held(&self) -> HeldBundle {
        HeldBundle {
            name: self.name.clone(),
            content_hash: self.content_hash.clone(),
        }
    }
}

/// Whether `s` is an RFC 1123 DNS label, the strictest name Kubernetes uses.
pub fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    bytes.len() <= 63
        && edge_ok(bytes.first())
        && edge_ok(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(name: &str, namespace: &str) -> BundleRevision {
        BundleRevision {
            allow: Default::default(),
            name: name.into(),
            revision: "r1".into(),
            content_hash: "h1".into(),
            namespace: namespace.into(),
            drift: DriftMode::Correct,
            objects: vec![],
        }
    }

    #[test]
    fn dns_labels_are_lowercase_alphanumerics_and_dashes() {
        assert!(is_dns_label("web-1"));
        assert!(!is_dns_label(""));
        assert!(!is_dns_label("-web"));
        assert!(!is_dns_label("web-"));
        assert!(!is_dns_label("Web"));
        assert!(!is_dns_label("web_1"));
        assert!(!is_dns_label("a.b"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }

    #[test]
    fn validate_names_the_offending_field() {
        assert_eq!(revision("web", "default").validate(), Ok(()));
        assert_eq!(
            revision("Web", "default").validate(),
            Err(InvalidBundle::Name("Web".into()))
        );
        assert_eq!(
            revision("web", "Bad_ns").validate(),
            Err(InvalidBundle::Namespace("Bad_ns".into()))
        );
    }

    #[test]
    fn drift_mode_parses_and_round_trips_in_json() {
        assert_eq!("report".parse::<DriftMode>(), Ok(DriftMode::Report));
        assert!("fix".parse::<DriftMode>().is_err());
        let json = serde_json::to_string(&revision("web", "default")).expect("serialises");
        assert!(json.contains("\"drift\":\"correct\""), "{json}");
    }
}
