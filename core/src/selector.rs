//! Kubernetes label selectors: `matchLabels` and `matchExpressions`, plus the string form
//! (`env=prod,tier in (a,b),!legacy`) the CLI accepts.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::labels::{Labels, validate_label_key, validate_label_value};

mod parse;
#[cfg(test)]
mod tests;

pub use parse::SelectorParseError;

/// A label selector with Kubernetes semantics: every `matchLabels` pair and every
/// expression must hold. An empty selector matches every cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key the requirement is about.
    pub key: String,
    /// How the label's value relates to `values`.
    pub operator: SelectorOperator,
    /// Values for `In` and `NotIn`; must be empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The operator of a set-based requirement, spelled as in Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SelectorOperator {
    /// The label is present and its value is one of `values`.
    In,
    /// The label is absent, or its value is none of `values`.
    NotIn,
    /// The label is present, whatever its value.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl LabelSelector {
    /// A selector matching every cluster.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the string form: comma-separated `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
    /// `k notin (a,b)`, `k` (exists) and `!k` (does not exist).
    pub fn parse(text: &str) -> Result<Self, SelectorParseError> {
        parse::parse(text)
    }

    /// True when the selector has no requirement and therefore matches everything.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// True when `labels` satisfy every requirement of the selector.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self.match_expressions.iter().all(|req| req.matches(labels))
    }

    /// Checks keys, values and operator arity with the API server's rules; one message per
    /// problem, empty when the selector is valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in &self.match_labels {
            problems.extend(
                validate_label_key(key)
                    .err()
                    .map(|e| format!("matchLabels: {e}")),
            );
            problems.extend(
                validate_label_value(value)
                    .err()
                    .map(|e| format!("matchLabels: {e}")),
            );
        }
        for (index, req) in self.match_expressions.iter().enumerate() {
            problems.extend(
                req.validate()
                    .into_iter()
                    .map(|e| format!("matchExpressions[{index}]: {e}")),
            );
        }
        problems
    }
}

impl LabelSelectorRequirement {
    /// True when `labels` satisfy this requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }

    fn validate(&self) -> Vec<String> {
        let mut problems: Vec<String> = validate_label_key(&self.key).err().into_iter().collect();
        match self.operator {
            SelectorOperator::In | SelectorOperator::NotIn => {
                if self.values.is_empty() {
                    problems.push(format!(
                        "operator {:?} on `{}` needs at least one value",
                        self.operator, self.key
                    ));
                }
                problems.extend(
                    self.values
                        .iter()
                        .filter_map(|v| validate_label_value(v).err()),
                );
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist => {
                if !self.values.is_empty() {
                    problems.push(format!(
                        "operator {:?} on `{}` takes no values; remove `values`",
                        self.operator, self.key
                    ));
                }
            }
        }
        problems
    }
}

impl fmt::Display for LabelSelector {
    /// Writes the string form that [`LabelSelector::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        parts.extend(self.match_expressions.iter().map(|req| req.to_string()));
        f.write_str(&parts.join(","))
    }
}

impl fmt::Display for LabelSelectorRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let values = self.values.join(",");
        match self.operator {
            SelectorOperator::In => write!(f, "{key} in ({values})"),
            SelectorOperator::NotIn => write!(f, "{key} notin ({values})"),
            SelectorOperator::Exists => write!(f, "{key}"),
            SelectorOperator::DoesNotExist => write!(f, "!{key}"),
        }
    }
}
