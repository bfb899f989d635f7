//! Diagnostics: where a configuration value came from and what is wrong with it.
//!
//! Every error names its source (file, line and column; environment variable; or
//! `--set` argument), the key path and the reason, so an operator can fix all of
//! them in one pass instead of one per restart.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a layer of configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The built-in defaults: the shipped file of that name, embedded at build time.
    Builtin(&'static str),
    /// A configuration file given with `--config`.
    File(PathBuf),
    /// An environment variable (`POOLGATE_<SECTION>__<KEY>`).
    Env(String),
    /// A command-line override (`--set key.path=value`).
    Set(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builtin(name) => write!(f, "{name} (built-in defaults)"),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Env(name) => write!(f, "environment variable {name}"),
            Source::Set(arg) => write!(f, "--set {arg}"),
        }
    }
}

/// A position inside a source: line and column are 1-based and known for files only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The source of the value.
    pub source: Arc<Source>,
    /// 1-based line and column, when the source is a file.
    pub line_col: Option<(usize, usize)>,
}

impl Location {
    /// A location without line information (environment, `--set`).
    pub fn whole(source: Arc<Source>) -> Self {
        Self {
            source,
            line_col: None,
        }
    }

    /// A location at byte `offset` of `text`, converted to line and column.
    pub fn at_offset(source: Arc<Source>, text: &str, offset: usize) -> Self {
        Self {
            source,
            line_col: Some(line_col(text, offset)),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_col {
            Some((line, col)) => write!(f, "{}:{line}:{col}", self.source),
            None => write!(f, "{}", self.source),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The configuration is usable but probably not what the operator wants.
    Warning,
    /// The configuration cannot be used.
    Error,
}

/// One finding about the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where the offending value was written, when known.
    pub location: Option<Location>,
    /// Dotted key path, e.g. `ppu.listener[1].bind` (empty for whole-file problems).
    pub key: String,
    /// What is wrong, in operator language.
    pub message: String,
}

impl Diagnostic {
    /// An error.
    pub fn error(
        location: Option<Location>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Error,
            location,
            key: key.into(),
            message: message.into(),
        }
    }

    /// A warning.
    pub fn warning(
        location: Option<Location>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(location, key, message)
        }
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match &self.location {
            Some(loc) => write!(f, "{level}: {loc}: ")?,
            None => write!(f, "{level}: ")?,
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "key `{}`: {}", self.key, self.message)
        }
    }
}

/// Whether any diagnostic in `diags` is an error.
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(Diagnostic::is_error)
}

/// Sort diagnostics for display: by source order of appearance, then line and column.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        let ka = a.location.as_ref().and_then(|l| l.line_col);
        let kb = b.location.as_ref().and_then(|l| l.line_col);
        let sa = a.location.as_ref().map(|l| l.source.to_string());
        let sb = b.location.as_ref().map(|l| l.source.to_string());
        sa.cmp(&sb).then(ka.cmp(&kb))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 4), (1, 5));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'é' is two bytes; the '=' after it is the 4th character.
        let eq = text.find("= 2").unwrap();
        assert_eq!(line_col(text, eq), (2, 4));
        // Offsets past the end or inside a character are clamped, never panic.
        assert_eq!(line_col(text, 1000), (3, 1));
        assert_eq!(line_col(text, 8), (2, 2));
    }

    #[test]
    fn display_names_file_line_key_and_reason() {
        let src = Arc::new(Source::File(PathBuf::from("/etc/poolgate/ppu.toml")));
        let d = Diagnostic::error(
            Some(Location::at_offset(src, "x\ny = 1", 2)),
            "ppu.y",
            "bad",
        );
        assert_eq!(
            d.to_string(),
            "error: /etc/poolgate/ppu.toml:2:1: key `ppu.y`: bad"
        );
        let w = Diagnostic::warning(None, "", "whole");
        assert_eq!(w.to_string(), "warning: whole");
    }
}
