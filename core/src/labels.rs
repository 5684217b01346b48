//! Kubernetes naming rules for label keys, label values and resource names.
//!
//! Flotilla applies the API server's own rules, so a selector or inventory that lints clean
//! is one the Kubernetes API would accept too.

use std::collections::BTreeMap;

/// A cluster's labels, ordered by key so every iteration is deterministic.
pub type Labels = BTreeMap<String, String>;

const MAX_NAME_SEGMENT: usize = 63;
const MAX_PREFIX: usize = 253;

/// Checks a label key: an optional DNS-1123 subdomain prefix and `/`, then a name of at most
/// 63 characters made of alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(format!("label key `{key}` has an empty prefix before `/`"));
        }
        validate_dns1123_subdomain(prefix)
            .map_err(|why| format!("label key `{key}` has an invalid prefix: {why}"))?;
    }
    if name.is_empty() {
        return Err(format!("label key `{key}` has an empty name"));
    }
    validate_qualified_segment(name).map_err(|why| format!("label key `{key}`: {why}"))
}

/// Checks a label value: empty, or at most 63 characters made of alphanumerics, `-`, `_`
/// and `.`, starting and ending alphanumeric.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    validate_qualified_segment(value).map_err(|why| format!("label value `{value}`: {why}"))
}

/// Checks a DNS-1123 label (at most 63 lowercase alphanumerics or `-`, alphanumeric at both
/// ends), the rule for namespaces and the names Flotilla gives stages, bundles and clusters.
pub fn validate_dns1123_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > MAX_NAME_SEGMENT {
        return Err(format!(
            "`{name}` is longer than {MAX_NAME_SEGMENT} characters"
        ));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let ok_end = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !name.chars().all(ok_char) || !name.starts_with(ok_end) || !name.ends_with(ok_end) {
        return Err(format!(
            "`{name}` must consist of lower-case letters, digits and `-`, \
             and start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks a DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
pub fn validate_dns1123_subdomain(name: &str) -> Result<(), String> {
    if name.len() > MAX_PREFIX {
        return Err(format!("`{name}` is longer than {MAX_PREFIX} characters"));
    }
    name.split('.')
        .try_for_each(validate_dns1123_label)
        .map_err(|_| {
            format!(
                "`{name}` must be lower-case letters, digits, `-` and `.`, \
                 each dot-separated part starting and ending with a letter or digit"
            )
        })
}

fn validate_qualified_segment(segment: &str) -> Result<(), String> {
    if segment.len() > MAX_NAME_SEGMENT {
        return Err(format!("longer than {MAX_NAME_SEGMENT} characters"));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let ok_end = |c: char| c.is_ascii_alphanumeric();
    if !segment.chars().all(ok_char) || !segment.starts_with(ok_end) || !segment.ends_with(ok_end) {
        return Err(
            "must consist of alphanumerics, `-`, `_` or `.`, and start and end with an \
             alphanumeric character"
                .to_owned(),
        );
    }
    Ok(())
}

/// Checks every key and value of a label map, returning one message per problem.
pub fn validate_labels(labels: &Labels) -> Vec<String> {
    labels
        .iter()
        .flat_map(|(key, value)| {
            [
                validate_label_key(key).err(),
                validate_label_value(value).err(),
            ]
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_follow_kubernetes_rules() {
        for good in [
            "env",
            "app.kubernetes.io/name",
            "topology.kubernetes.io/region",
            "a_b.c-d",
        ] {
            assert!(validate_label_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-env",
            "env-",
            "a/b/c",
            "/name",
            "UPPER.example/x",
            &"x".repeat(64),
        ] {
            assert!(validate_label_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_values_may_be_empty_but_not_malformed() {
        assert!(validate_label_value("").is_ok());
        assert!(validate_label_value("eu-west_1.a").is_ok());
        assert!(validate_label_value("has space").is_err());
        assert!(validate_label_value("x.").is_err());
        assert!(validate_label_value(&"v".repeat(64)).is_err());
    }

    #[test]
    fn dns_labels_reject_upper_case_and_dots() {
        assert!(validate_dns1123_label("prod-eu-1").is_ok());
        assert!(validate_dns1123_label("Prod").is_err());
        assert!(validate_dns1123_label("a.b").is_err());
        assert!(validate_dns1123_label("").is_err());
    }
}
