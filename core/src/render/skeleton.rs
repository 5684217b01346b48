//! A manifest parsed once for every cluster: when its references stand only in scalars' text
//! and a cluster's values are plain words, substituting into the parsed documents gives what
//! substituting into the text and parsing would, without parsing again.
//!
//! Each distinct reference of a file becomes one placeholder character from Unicode's
//! supplementary private use area, and the file is parsed once with them. A cluster's
//! documents are that parse with every placeholder replaced by the cluster's value — used
//! only when nothing in the values could have parsed differently: every value is a word of
//! letters, digits, `.`, `_`, `-` and `/` starting with a letter or digit (no quote, space,
//! colon, `#` or line break can end a scalar or start a comment), every scalar it lands in
//! still reads as a string (not a number, boolean or null), no two keys of a mapping become
//! equal, and no line with a reference grows past 1,000 characters (an implicit key must end
//! within 1,024). Anything else — and a file where a reference follows `#` on its line, or
//! shares its line with `&`, `*`, `!` or `%`, so it may sit in a comment, an anchor, an
//! alias, a tag or a directive — is substituted as text and parsed, as before.
//! `skeleton_matches_text_substitution` in the tests compares both ways over references in
//! every position a manifest can put them.

use serde_json::{Map, Value};

use super::substitute::{Piece, Reference, substitute};
use crate::limits::Limits;
use crate::yaml::parse_documents;

/// The first placeholder; slot `i` is `PLACEHOLDER + i`.
const PLACEHOLDER: u32 = 0xF_0000;
/// The last code point of the supplementary private use area A usable as a placeholder.
const LAST_PLACEHOLDER: u32 = 0xF_FFFD;

/// A file's documents parsed with placeholders, and the reference behind each placeholder.
pub(crate) struct Skeleton {
    documents: Vec<(u32, Value)>,
    slots: Vec<Reference>,
    /// The text's length without its references, and how often each slot's reference occurs:
    /// what the substituted text's length is derived from.
    literal: usize,
    uses: Vec<usize>,
    /// Per line holding placeholders: its other characters and the slots on it, so a fill
    /// can tell how long the line would be as text.
    lines: Vec<(usize, Vec<usize>)>,
}

/// The longest line a placeholder may stand on once filled: the parser looks at most 1,024
/// characters ahead for the `:` ending an implicit key, so a longer key fails as text while
/// its one-character placeholder parsed. Kept below with a margin.
const MAX_FILLED_LINE: usize = 1_000;

impl Skeleton {
    /// Parses `text` with its references as placeholders; `None` when a reference may stand
    /// outside a scalar's text, the text already holds placeholder characters, or the
    /// placeholder text does not parse.
    pub(crate) fn parse(
        text: &str,
        pieces: &[Piece],
        file: &str,
        limits: &Limits,
    ) -> Option<Skeleton> {
        if text.chars().any(is_placeholder) {
            return None;
        }
        let mut slots: Vec<Reference> = Vec::new();
        let mut uses: Vec<usize> = Vec::new();
        let placed = substitute(text, pieces, |reference, _, _| {
            let slot = match slots.iter().position(|known| known == reference) {
                Some(slot) => slot,
                None => {
                    slots.push(reference.clone());
                    uses.push(0);
                    slots.len() - 1
                }
            };
            uses[slot] += 1;
            let code = u32::try_from(slot).ok().map(|slot| PLACEHOLDER + slot);
            code.filter(|&code| code <= LAST_PLACEHOLDER)
                .and_then(char::from_u32)
                .map(String::from)
                .ok_or(())
        })
        .ok()?;
        if slots.is_empty() || !only_in_scalars(&placed) {
            return None;
        }
        let lines = placed
            .lines()
            .filter(|line| line.chars().any(is_placeholder))
            .map(|line| {
                let others = line.chars().filter(|c| !is_placeholder(*c)).count();
                let on_it = line.chars().filter_map(slot_of).collect();
                (others, on_it)
            })
            .collect();
        let literal = pieces
            .iter()
            .map(|piece| match piece {
                Piece::Text(range) => range.len(),
                Piece::Reference(..) => 0,
            })
            .sum();
        let documents = parse_documents(&placed, file, 0, limits).ok()?;
        Some(Skeleton {
            documents,
            slots,
            literal,
            uses,
            lines,
        })
    }

    /// The references, in slot order: `fill` takes their values in the same order.
    pub(crate) fn slots(&self) -> &[Reference] {
        &self.slots
    }

    /// The length in bytes of the text substituted with `values` (in slot order).
    pub(crate) fn text_length(&self, values: &[&str]) -> usize {
        let references: usize = self
            .uses
            .iter()
            .zip(values)
            .map(|(uses, value)| uses * value.len())
            .sum();
        self.literal + references
    }

    /// The documents with each slot's value in place of its placeholder, or `None` when a
    /// value might parse differently as text (the caller substitutes and parses instead).
    pub(crate) fn fill(&self, values: &[&str]) -> Option<Vec<(u32, Value)>> {
        if values.len() != self.slots.len() || !values.iter().all(|value| is_word(value)) {
            return None;
        }
        let too_long = self.lines.iter().any(|(others, on_it)| {
            let filled: usize = on_it
                .iter()
                .map(|&slot| values.get(slot).map_or(usize::MAX / 2, |value| value.len()))
                .sum();
            others + filled > MAX_FILLED_LINE
        });
        if too_long {
            return None;
        }
        self.documents
            .iter()
            .map(|(line, document)| Some((*line, fill_value(document, values)?)))
            .collect()
    }
}

fn is_placeholder(c: char) -> bool {
    (PLACEHOLDER..=LAST_PLACEHOLDER).contains(&u32::from(c))
}

fn slot_of(c: char) -> Option<usize> {
    is_placeholder(c)
        .then(|| usize::try_from(u32::from(c) - PLACEHOLDER).ok())
        .flatten()
}

/// Whether every line with a placeholder is free of what could make one part of a comment
/// (a `#` before it), or of an anchor, an alias, a tag or a directive (`&`, `*`, `!`, `%`
/// anywhere on the line: an anchor named after a placeholder could be redefined by a value).
fn only_in_scalars(placed: &str) -> bool {
    placed.lines().all(|line| {
        let Some(first) = line.find(is_placeholder) else {
            return true;
        };
        !line[..first].contains('#') && !line.contains(['&', '*', '!', '%'])
    })
}

/// A value that cannot end a scalar, start a comment or change its line structure.
fn is_word(value: &str) -> bool {
    let mut chars = value.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
}

/// Whether a plain scalar with this text could resolve to something other than a string: a
/// number, a boolean (YAML 1.1's too, as kubectl reads them) or null. Conservative: a quoted
/// scalar that would stay a string is also refused, and goes the slow way.
fn may_not_be_string(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return true;
    };
    if first.is_ascii_digit() || matches!(first, '+' | '-' | '.' | '~') {
        return true;
    }
    matches!(
        text.to_ascii_lowercase().as_str(),
        "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    )
}

fn fill_str(text: &str, values: &[&str]) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match slot_of(c) {
            Some(slot) => out.push_str(values.get(slot)?),
            None => out.push(c),
        }
    }
    (!may_not_be_string(&out)).then_some(out)
}

fn fill_value(value: &Value, values: &[&str]) -> Option<Value> {
    Some(match value {
        Value::String(text) if text.chars().any(is_placeholder) => {
            Value::String(fill_str(text, values)?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| fill_value(item, values))
                .collect::<Option<_>>()?,
        ),
        Value::Object(map) => {
            let mut filled = Map::with_capacity(map.len());
            for (key, item) in map {
                let key = if key.chars().any(is_placeholder) {
                    fill_str(key, values)?
                } else {
                    key.clone()
                };
                if filled.insert(key, fill_value(item, values)?).is_some() {
                    return None; // Two keys became one: the text would not parse.
                }
            }
            Value::Object(filled)
        }
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::substitute::tokenize;

    /// Every position a reference can take in a manifest, with values that keep and values
    /// that change how the text parses: the skeleton must give what text substitution and a
    /// parse give, or decline.
    #[test]
    fn skeleton_matches_text_substitution() {
        let templates = [
            "a: ${x}\n",
            "a: ${x}-${y}\n",
            "a: \"${x}\"\n",
            "a: '${x} and ${y}'\n",
            "${x}: 1\n${y}: 2\n",
            "a:\n  - ${x}\n  - [${x}, ${y}]\n  - {k: ${y}}\n",
            "a: |\n  line ${x}\n  next ${y}\n",
            "a: >\n  folded ${x}\n  text\n",
            "a: ${x} # a comment ${y}\n",
            "# ${x}\na: 1\n",
            "a: &anchor${x} 1\nb: *anchor${y}\n",
            "a: !!str ${x}\n",
            "a: !!int ${x}\n",
            "a: 0${x}\n",
            "${x}\n",
            "a: ${x}\n---\nb: ${y}\n",
            "a: \"\\${x}\"\n",
            "a: plain ${x}\n  continued ${y}\n",
            "--${x}\n",
            "a: [${x}${y}]\n",
            "a: {${x}: 1, ${y}: 2}\n",
            "a: ${x}:${y}\n",
            "a: &n one\n${x}: &${y} two\nb: *n\n",
            "a: b\n${x}: v\n",
            "a: b\n\"${x}\": v\n",
            "{${x}: 1}\n",
        ];
        let values = [
            "eu",
            "prod-eu-1",
            "3",
            "0x1F",
            "yes",
            "No",
            "null",
            "~",
            "",
            "a b",
            "a: b",
            "a:",
            "#x",
            "-",
            "---",
            "x41",
            ".inf",
            "1e3",
            "a/b.c_d",
            "true",
            "y",
            "quote\"",
            "'",
            "a,b",
            "{",
            "[",
            "*x",
            "&x",
            "!x",
            "multi\nline",
            "%x",
            "n",
            "k",
        ];
        let long = "k".repeat(1_025);
        let values: Vec<&str> = values.into_iter().chain([long.as_str()]).collect();
        let limits = Limits::default();
        let mut filled = 0;
        for template in templates {
            let pieces = tokenize(template).expect("template tokenizes");
            let skeleton = Skeleton::parse(template, &pieces, "t.yaml", &limits);
            for &x in &values {
                for &y in &values {
                    let value = |reference: &Reference| match reference {
                        Reference::Variable(name) if name == "x" => x.to_owned(),
                        _ => y.to_owned(),
                    };
                    let text =
                        substitute(template, &pieces, |r, _, _| Ok::<_, ()>(value(r))).unwrap();
                    let parsed = parse_documents(&text, "t.yaml", 0, &limits).ok();
                    let Some(skeleton) = &skeleton else { continue };
                    let slot_values: Vec<String> = skeleton.slots().iter().map(value).collect();
                    let slot_values: Vec<&str> = slot_values.iter().map(String::as_str).collect();
                    if let Some(documents) = skeleton.fill(&slot_values) {
                        filled += 1;
                        assert_eq!(
                            Some(documents),
                            parsed,
                            "template {template:?} with x={x:?} y={y:?}"
                        );
                    }
                }
            }
        }
        assert!(filled > 1_000, "the skeleton filled only {filled} cases");
    }

    #[test]
    fn references_after_comment_anchor_or_tag_characters_are_not_skeletons() {
        let limits = Limits::default();
        for template in [
            "a: 1 # ${x}\n",
            "a: &${x} 1\n",
            "a: *${x}\n",
            "a: !${x} 1\n",
            "%${x}\n---\na: 1\n",
            "a: \u{F0000} ${x}\n",
            "a: 1\n",
            "${x}: &anchor 1\n",
            "a: ${x} *b\n",
        ] {
            let pieces = tokenize(template).expect("template tokenizes");
            assert!(
                Skeleton::parse(template, &pieces, "t.yaml", &limits).is_none(),
                "{template:?}"
            );
        }
    }
}
