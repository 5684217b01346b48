//! The string form of label selectors, as `kubectl get -l` reads it.

use super::{LabelSelector, LabelSelectorRequirement, SelectorOperator};

/// A string selector that could not be parsed or holds an invalid key or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector `{input}`: {reason}")]
pub struct SelectorParseError {
    /// The selector text as given.
    pub input: String,
    /// What is wrong and, where possible, what would be right.
    pub reason: String,
}

pub(super) fn parse(text: &str) -> Result<LabelSelector, SelectorParseError> {
    let fail = |reason: String| SelectorParseError {
        input: text.to_owned(),
        reason,
    };
    let mut selector = LabelSelector::default();
    if text.trim().is_empty() {
        return Ok(selector);
    }
    for clause in split_clauses(text).map_err(fail)? {
        let clause = clause.trim();
        if clause.is_empty() {
            return Err(fail("empty requirement between commas".to_owned()));
        }
        match parse_clause(clause).map_err(fail)? {
            Clause::Equals(key, value) if !selector.match_labels.contains_key(&key) => {
                selector.match_labels.insert(key, value);
            }
            Clause::Equals(key, value) => {
                selector.match_expressions.push(LabelSelectorRequirement {
                    key,
                    operator: SelectorOperator::In,
                    values: vec![value],
                });
            }
            Clause::Requirement(req) => selector.match_expressions.push(req),
        }
    }
    let problems = selector.validate();
    if problems.is_empty() {
        Ok(selector)
    } else {
        Err(fail(problems.join("; ")))
    }
}

enum Clause {
    Equals(String, String),
    Requirement(LabelSelectorRequirement),
}

/// Splits on commas outside parentheses, so `tier in (a,b)` stays one clause.
fn split_clauses(text: &str) -> Result<Vec<&str>, String> {
    let mut clauses = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, c) in text.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err("nested parentheses are not allowed".to_owned()),
            ')' if depth == 1 => depth = 0,
            ')' => return Err("`)` without a matching `(`".to_owned()),
            ',' if depth == 0 => {
                clauses.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("`(` without a matching `)`".to_owned());
    }
    clauses.push(&text[start..]);
    Ok(clauses)
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

fn parse_clause(clause: &str) -> Result<Clause, String> {
    if let Some(key) = clause.strip_prefix('!') {
        let key = key.trim();
        if key.is_empty() || !key.chars().all(is_key_char) {
            return Err(format!("`{clause}`: expected a label key after `!`"));
        }
        return Ok(requirement(key, SelectorOperator::DoesNotExist, Vec::new()));
    }
    let key_end = clause
        .find(|c: char| !is_key_char(c))
        .unwrap_or(clause.len());
    let (key, rest) = clause.split_at(key_end);
    if key.is_empty() {
        return Err(format!("`{clause}`: expected a label key"));
    }
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Ok(requirement(key, SelectorOperator::Exists, Vec::new()));
    }
    if let Some(value) = rest.strip_prefix("!=") {
        return Ok(requirement(
            key,
            SelectorOperator::NotIn,
            vec![value.trim().to_owned()],
        ));
    }
    if let Some(value) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
        return Ok(Clause::Equals(key.to_owned(), value.trim().to_owned()));
    }
    let word_end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let (word, set) = rest.split_at(word_end);
    let operator = match word {
        "in" => SelectorOperator::In,
        "notin" => SelectorOperator::NotIn,
        _ => {
            return Err(format!(
                "`{clause}`: expected `=`, `==`, `!=`, `in (...)` or `notin (...)` after `{key}`"
            ));
        }
    };
    let values = parse_set(set.trim())
        .ok_or_else(|| format!("`{clause}`: expected a parenthesised list like `(a,b)`"))?;
    Ok(requirement(key, operator, values))
}

fn parse_set(set: &str) -> Option<Vec<String>> {
    let inner = set.strip_prefix('(')?.strip_suffix(')')?;
    if inner.trim().is_empty() {
        return Some(Vec::new());
    }
    Some(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

fn requirement(key: &str, operator: SelectorOperator, values: Vec<String>) -> Clause {
    Clause::Requirement(LabelSelectorRequirement {
        key: key.to_owned(),
        operator,
        values,
    })
}
