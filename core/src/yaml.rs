//! Budgeted YAML parsing: every YAML byte Flotilla reads goes through here.

use serde::de::DeserializeOwned;
use serde_saphyr::{DefaultMessageFormatter, MessageFormatter, Spanned};

use crate::limits::Limits;
use crate::location::SourceLocation;

/// A YAML (or JSON) document that failed to parse, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlProblem {
    pub(crate) location: SourceLocation,
    pub(crate) message: String,
}

/// Parser options enforcing `limits`. Octal and YAML 1.1 booleans follow kubectl (go-yaml),
/// so `defaultMode: 0644` means what its author expects.
pub(crate) fn options(limits: &Limits) -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: limits.max_yaml_depth,
            max_aliases: limits.max_yaml_aliases,
            max_documents: limits.max_documents_per_file,
            max_reader_input_bytes: usize::try_from(limits.max_file_bytes).ok(),
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: limits.max_alias_expansion_events,
        },
        legacy_octal_numbers: true,
    }
}

/// Parses a single-document YAML file into `T`.
pub(crate) fn parse_one<T: DeserializeOwned>(
    text: &str,
    file: &str,
    limits: &Limits,
) -> Result<T, YamlProblem> {
    serde_saphyr::from_str_with_options(text, options(limits)).map_err(|e| problem(&e, file, 0))
}

/// Parses a multi-document YAML text into its non-empty documents, each with the line it
/// starts on. `line_offset` shifts reported lines when `text` is part of a larger output.
pub(crate) fn parse_documents(
    text: &str,
    file: &str,
    line_offset: u32,
    limits: &Limits,
) -> Result<Vec<(u32, serde_json::Value)>, YamlProblem> {
    let documents: Vec<Spanned<serde_json::Value>> =
        serde_saphyr::from_multiple_with_options(text, options(limits))
            .map_err(|e| problem(&e, file, line_offset))?;
    Ok(documents
        .into_iter()
        .filter(|doc| !doc.value.is_null())
        .map(|doc| {
            let line = u32::try_from(doc.referenced.line()).unwrap_or(u32::MAX);
            (line.saturating_add(line_offset), doc.value)
        })
        .collect())
}

/// Parses a JSON manifest file, applying the same depth bound as YAML.
pub(crate) fn parse_json(
    text: &str,
    file: &str,
    limits: &Limits,
) -> Result<serde_json::Value, YamlProblem> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| YamlProblem {
        location: SourceLocation::at(
            file,
            u32::try_from(e.line()).unwrap_or(u32::MAX),
            u32::try_from(e.column()).unwrap_or(u32::MAX),
        ),
        message: strip_serde_json_position(&e.to_string()),
    })?;
    if depth(&value) > limits.max_yaml_depth {
        return Err(YamlProblem {
            location: SourceLocation::file(file),
            message: format!(
                "nesting deeper than the limit of {} levels",
                limits.max_yaml_depth
            ),
        });
    }
    Ok(value)
}

/// The location and message of a serde-saphyr error, without its rendered snippet.
pub(crate) fn problem(error: &serde_saphyr::Error, file: &str, line_offset: u32) -> YamlProblem {
    let mut location = error
        .location()
        .map(|l| SourceLocation::from_yaml(file, l))
        .unwrap_or_else(|| SourceLocation::file(file));
    location.line = location.line.map(|line| line.saturating_add(line_offset));
    if let Some(message) = budget_message(error.without_snippet()) {
        return YamlProblem { location, message };
    }
    let message = DefaultMessageFormatter
        .format_message(error.without_snippet())
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "")
        .replace("expected sequence start", "expected a list here")
        .replace(
            "expected mapping start",
            "expected a mapping (`key: value` pairs) here",
        )
        .replace(|c: char| c.is_control(), " ");
    YamlProblem { location, message }
}

/// What a breached parsing budget means for the author, rather than the parser's internals:
/// these bounds are what stops a hostile file (an alias bomb, absurd nesting) from exhausting
/// the hub.
fn budget_message(mut error: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::budget::BudgetBreach;
    while let serde_saphyr::Error::AliasError { error: inner, .. }
    | serde_saphyr::Error::WithSnippet { error: inner, .. } = error
    {
        error = inner;
    }
    Some(match error {
        serde_saphyr::Error::AliasReplayLimitExceeded {
            max_total_replayed_events,
            ..
        } => format!(
            "aliases (`*name`) expand to more than {max_total_replayed_events} YAML events, as an alias bomb (\"billion laughs\") does; write the values out or use fewer aliases"
        ),
        serde_saphyr::Error::AliasExpansionLimitExceeded {
            max_expansions_per_anchor,
            ..
        } => format!(
            "an anchor is expanded more than {max_expansions_per_anchor} times by aliases (`*name`); write the values out"
        ),
        serde_saphyr::Error::AliasReplayStackDepthExceeded { max_depth, .. } => {
            format!("aliases (`*name`) nest more than {max_depth} deep; write the values out")
        }
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            BudgetBreach::Depth { depth } => format!(
                "nesting deeper than the limit ({} levels reached); flatten the document",
                depth.saturating_sub(1)
            ),
            BudgetBreach::Aliases { aliases } => format!(
                "more than {} aliases (`*name`) in one file; write the values out",
                aliases.saturating_sub(1)
            ),
            BudgetBreach::Documents { documents } => format!(
                "more than {} YAML documents in one file; split the file",
                documents.saturating_sub(1)
            ),
            other => format!("the file exceeds a parsing limit ({other:?}); simplify or split it"),
        },
        _ => return None,
    })
}

fn strip_serde_json_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_their_start_line_and_empty_ones_are_dropped() {
        let text = "a: 1\n---\n---\n# only a comment\n---\nb: 0644\n";
        let docs = parse_documents(text, "x.yaml", 0, &Limits::default()).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].0, 1);
        assert_eq!(docs[1].0, 6);
        assert_eq!(docs[1].1["b"], 420, "0644 is octal, as kubectl reads it");
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let err = parse_documents("a: 1\nb: [1, 2\nc: 3\n", "m.yaml", 10, &Limits::default())
            .unwrap_err();
        assert_eq!(err.location.file, "m.yaml");
        assert!(err.location.line.unwrap() > 10);
    }

    #[test]
    fn alias_bombs_are_refused() {
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n\
                    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n\
                    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n\
                    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
        let limits = Limits {
            max_alias_expansion_events: 10_000,
            ..Limits::default()
        };
        let err = parse_documents(bomb, "bomb.yaml", 0, &limits).unwrap_err();
        assert!(
            err.message.contains("alias bomb") && err.message.contains("10000"),
            "{}",
            err.message
        );
    }

    #[test]
    fn structural_mismatches_say_what_was_expected_in_plain_words() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Doc {
            items: Vec<String>,
        }
        let err = parse_one::<Doc>("items: {a: b}\n", "x.yaml", &Limits::default()).unwrap_err();
        assert!(err.message.contains("expected a list"), "{}", err.message);
        assert_eq!(err.location.line, Some(1));
    }

    #[test]
    fn deep_yaml_is_refused_in_plain_words() {
        let text = format!("a: {}1{}\n", "[".repeat(100), "]".repeat(100));
        let err = parse_documents(&text, "deep.yaml", 0, &Limits::default()).unwrap_err();
        assert!(
            err.message.starts_with("nesting deeper than the limit"),
            "{}",
            err.message
        );
        assert_eq!(err.location.file, "deep.yaml");
    }

    #[test]
    fn deep_json_is_refused() {
        let deep = format!("{}{}", "[".repeat(70), "]".repeat(70));
        let err = parse_json(&deep, "deep.json", &Limits::default()).unwrap_err();
        assert!(err.message.contains("nesting"), "{}", err.message);
    }
}
