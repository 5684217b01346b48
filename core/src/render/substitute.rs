//! `${...}` references in manifest text: `${cluster.name}`, `${cluster.labels.KEY}` and
//! declared variables, with `$${` writing a literal `${`.
//!
//! Substitution is textual and happens before YAML parsing, so `replicas: ${replicas}`
//! becomes a number, as with Flux's post-build substitution.

use std::ops::Range;

use crate::labels::validate_label_key;

/// Something a manifest refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Reference {
    /// `${cluster.name}`.
    ClusterName,
    /// `${cluster.labels.KEY}`.
    ClusterLabel(String),
    /// `${NAME}`, a declared variable.
    Variable(String),
}

/// A piece of tokenized text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Text copied as is.
    Text(Range<usize>),
    /// A reference and its 1-based line and column.
    Reference(Reference, u32, u32),
}

/// A malformed reference, with its 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxProblem {
    pub(crate) line: u32,
    pub(crate) column: u32,
    pub(crate) message: String,
}

/// Splits `text` into literal text and references.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Piece>, SyntaxProblem> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let mut literal_start = 0;
    let mut line = 1u32;
    let mut line_start = 0usize;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\n' => {
                line += 1;
                line_start = index + 1;
                index += 1;
            }
            b'$' if bytes[index + 1..].starts_with(b"${") => {
                // `$${` is an escape: drop one `$`, keep `${` as text.
                pieces.push(Piece::Text(literal_start..index));
                literal_start = index + 1;
                index += 3;
            }
            b'$' if bytes.get(index + 1) == Some(&b'{') => {
                let column = column_of(text, line_start, index);
                let rest = &text[index + 2..];
                let end = rest
                    .find(['}', '\n'])
                    .filter(|&end| rest.as_bytes()[end] == b'}');
                let Some(end) = end else {
                    return Err(SyntaxProblem {
                        line,
                        column,
                        message: "`${` without a closing `}` on the same line; write `$${` for a literal `${`".to_owned(),
                    });
                };
                let reference = parse_reference(&rest[..end]).map_err(|message| SyntaxProblem {
                    line,
                    column,
                    message,
                })?;
                pieces.push(Piece::Text(literal_start..index));
                pieces.push(Piece::Reference(reference, line, column));
                index += 2 + end + 1;
                literal_start = index;
            }
            _ => index += 1,
        }
    }
    pieces.push(Piece::Text(literal_start..bytes.len()));
    pieces.retain(|piece| !matches!(piece, Piece::Text(range) if range.is_empty()));
    Ok(pieces)
}

fn column_of(text: &str, line_start: usize, index: usize) -> u32 {
    u32::try_from(text[line_start..index].chars().count() + 1).unwrap_or(u32::MAX)
}

fn parse_reference(inner: &str) -> Result<Reference, String> {
    if inner == "cluster.name" {
        return Ok(Reference::ClusterName);
    }
    if let Some(key) = inner.strip_prefix("cluster.labels.") {
        validate_label_key(key).map_err(|why| format!("`${{{inner}}}`: {why}"))?;
        return Ok(Reference::ClusterLabel(key.to_owned()));
    }
    if inner.starts_with("cluster.") || inner == "cluster" {
        return Err(format!(
            "`${{{inner}}}`: a cluster has `${{cluster.name}}` and `${{cluster.labels.KEY}}`"
        ));
    }
    let mut chars = inner.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(Reference::Variable(inner.to_owned()))
    } else {
        Err(format!(
            "`${{{inner}}}` is not a variable reference; names are letters, digits and `_` \
             (write `$${{` for a literal `${{`)"
        ))
    }
}

/// Builds the substituted text; `resolve` gives each reference's value or, when it has
/// none, the error to report at the reference's line and column.
pub(crate) fn substitute<E>(
    text: &str,
    pieces: &[Piece],
    mut resolve: impl FnMut(&Reference, u32, u32) -> Result<String, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(text.len());
    for piece in pieces {
        match piece {
            Piece::Text(range) => out.push_str(&text[range.clone()]),
            Piece::Reference(reference, line, column) => {
                out.push_str(&resolve(reference, *line, *column)?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str) -> Result<String, String> {
        let pieces =
            tokenize(text).map_err(|p| format!("{}:{} {}", p.line, p.column, p.message))?;
        substitute(text, &pieces, |reference, line, column| match reference {
            Reference::ClusterName => Ok("prod-eu-1".to_owned()),
            Reference::ClusterLabel(key) if key == "region" => Ok("eu".to_owned()),
            Reference::Variable(name) if name == "replicas" => Ok("3".to_owned()),
            other => Err(format!("{line}:{column} undefined {other:?}")),
        })
    }

    #[test]
    fn references_are_replaced() {
        assert_eq!(
            render(
                "name: ${cluster.name}\nregion: ${cluster.labels.region}\nreplicas: ${replicas}\n"
            )
            .unwrap(),
            "name: prod-eu-1\nregion: eu\nreplicas: 3\n"
        );
    }

    #[test]
    fn double_dollar_escapes_a_reference() {
        assert_eq!(
            render("cmd: echo $${HOME} $HOME $$ ${replicas}").unwrap(),
            "cmd: echo ${HOME} $HOME $$ 3"
        );
    }

    #[test]
    fn undefined_references_report_line_and_column() {
        assert_eq!(
            render("a: 1\nb: x-${tier}\n").unwrap_err(),
            "2:6 undefined Variable(\"tier\")"
        );
    }

    #[test]
    fn malformed_references_are_syntax_errors() {
        for bad in [
            "a: ${}",
            "a: ${cluster.nmae}",
            "a: ${not valid}",
            "a: ${open\n}",
            "a: ${cluster.labels.-x}",
        ] {
            assert!(tokenize(bad).is_err(), "{bad}");
        }
        let problem = tokenize("x: 1\n  y: ${bad-name}").unwrap_err();
        assert_eq!((problem.line, problem.column), (2, 6));
    }

    #[test]
    fn multibyte_text_keeps_columns_in_characters() {
        let problem = tokenize("ä: ${?}").unwrap_err();
        assert_eq!(problem.column, 4);
        assert_eq!(render("ä: ${cluster.name} ü").unwrap(), "ä: prod-eu-1 ü");
    }
}
