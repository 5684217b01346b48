//! Where in a repository something was found, for error messages.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A file of the repository (path relative to its root, `/`-separated) and, when known, a
/// 1-based line and column. Displays as `file:line:column`, the form editors and CI parse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceLocation {
    /// Path relative to the repository root.
    pub file: String,
    /// 1-based line, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
}

impl SourceLocation {
    /// A whole file, without a position.
    pub fn file(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: None,
            column: None,
        }
    }

    /// A position in a file.
    pub fn at(file: impl Into<String>, line: u32, column: u32) -> Self {
        Self {
            file: file.into(),
            line: Some(line),
            column: Some(column),
        }
    }

    /// The location of a YAML node, from serde-saphyr's location (line 0 means unknown).
    pub(crate) fn from_yaml(file: &str, location: serde_saphyr::Location) -> Self {
        let line = u32::try_from(location.line()).unwrap_or(u32::MAX);
        let column = u32::try_from(location.column()).unwrap_or(u32::MAX);
        Self {
            file: file.to_owned(),
            line: (line > 0).then_some(line),
            column: (line > 0 && column > 0).then_some(column),
        }
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}
