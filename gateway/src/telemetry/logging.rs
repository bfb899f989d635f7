//! Log output: one event per line on stderr, human-readable or JSON.
//!
//! Events carry their facts as fields (`pe_id=7 pool="web"`), not prose, so the
//! JSON form is queryable and the human form stays greppable. Under systemd,
//! stderr goes to the journal.

use std::io::IsTerminal;

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable single lines (colours only on a terminal).
    Human,
    /// One JSON object per line, fields at the top level.
    Json,
}

/// Errors setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    /// The level/filter text is not understood.
    #[error(
        "invalid log level `{text}`: {reason} (write e.g. info, debug, or poolgate=debug,warn)"
    )]
    BadFilter {
        /// What was given.
        text: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A global subscriber was already installed.
    #[error("logging is already initialised")]
    AlreadyInitialised,
}

/// Install the global log subscriber. `level` is an `EnvFilter` directive such as
/// `info` or `poolgate=debug,warn`.
pub fn init(format: LogFormat, level: &str) -> Result<(), LogInitError> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(level).map_err(|e| LogInitError::BadFilter {
            text: level.to_string(),
            reason: e.to_string(),
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(true)
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|_| LogInitError::AlreadyInitialised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filter_is_rejected_with_its_text() {
        let err = init(LogFormat::Human, "info,=[").unwrap_err();
        assert!(err.to_string().contains("info,=["), "{err}");
    }
}
